"""What one request may cost: JSON values per body, events per second per key,
rollup buckets per timeseries (issue 12, "quotas and fairness")."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.collector.app import parse_batch
from services.collector.limits import MAX_NODES, RateLimiter, json_nodes
from services.report.stats import MAX_BUCKETS, check_buckets, intervals, zone
from shared.http import ApiError
from shared.timebuckets import Calendar

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(alphabet=',[]{}"\\:ab\u00e9 '),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet=',[{"\\a', max_size=4), children, max_size=5)
    ),
    max_leaves=40,
)


def values(doc: object) -> int:
    if isinstance(doc, list):
        return 1 + sum(values(v) for v in doc)
    if isinstance(doc, dict):
        return 1 + sum(values(v) for v in doc.values())
    return 1


@given(JSON)
def test_the_value_count_is_an_upper_bound(doc: object) -> None:
    body = orjson.dumps(doc)
    assert json_nodes(body) >= values(doc)
    assert json_nodes(body, cap=0) >= values(doc)  # with strings stripped


def test_commas_inside_strings_count_only_when_it_matters() -> None:
    text = ",[{" * 40_000  # 120,000 structural characters, all inside one string
    body = orjson.dumps([{"attributes": {"text": text}}])
    assert json_nodes(body) <= 10  # stripped: the string is one value
    assert parse_batch(body) == [{"attributes": {"text": text}}]


def test_a_body_of_too_many_values_is_refused_before_it_is_parsed() -> None:
    body = b"[" + b"0," * MAX_NODES + b"0]"
    with pytest.raises(ApiError) as refused:
        parse_batch(body)
    assert (refused.value.status, refused.value.code) == (413, "too_complex")
    assert parse_batch(b"[" + b"{}," * 499 + b"{}]") == [{}] * 500


def test_a_key_gets_its_burst_then_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=100, burst=500, clock=lambda: now[0])
    assert limiter.take("a", 500) == 0
    assert limiter.take("a", 1) == 1  # empty: about 0.01 s, said in whole seconds
    assert limiter.take("b", 500) == 0  # per key
    now[0] += 2.0  # 200 events' worth
    assert limiter.take("a", 300) == 1
    assert limiter.take("a", 200) == 0
    assert limiter.take("a", 500) == 5
    now[0] += 100
    assert limiter.take("a", 500) == 0  # refilled, never past the burst
    assert limiter.take("a", 1) == 1
    assert RateLimiter(rate=0, burst=500).take("a", 10**6) == 0  # 0: no limit


def test_an_idle_key_is_forgotten_past_the_bound() -> None:
    limiter = RateLimiter(rate=1, burst=500, max_keys=3, clock=lambda: 0.0)
    for key in "abcd":
        assert limiter.take(key, 500) == 0
    assert limiter.take("a", 500) == 0  # forgotten, so full again (bounded memory)
    assert limiter.take("d", 500) > 0


def _check(start: date, end: date, tz: str, granularity: str, cal: Calendar | None) -> None:
    _, bounds = intervals(start, end, zone(tz), granularity)
    check_buckets(bounds, cal, granularity)


def test_a_timeseries_may_read_a_bounded_number_of_buckets() -> None:
    with pytest.raises(ApiError) as refused:  # 532,575 buckets: 27 per day
        _check(date(2000, 1, 1), date(2054, 1, 1), "Asia/Kolkata", "day", None)
    assert (refused.value.status, refused.value.code) == (400, "too_many_buckets")
    assert str(MAX_BUCKETS) in refused.value.message
    _check(date(2021, 1, 1), date(2025, 12, 31), "Asia/Kolkata", "day", None)  # 49,302
    with pytest.raises(ApiError):
        _check(date(2020, 1, 1), date(2025, 12, 31), "Asia/Kolkata", "day", None)
    # a report zone's days are one bucket each
    _check(date(2000, 1, 1), date(2054, 1, 1), "America/Sao_Paulo", "day",
           Calendar("America/Sao_Paulo"))  # fmt: skip
    _check(date(2024, 1, 1), date(2025, 12, 31), "UTC", "hour", None)  # 17,544 hours
