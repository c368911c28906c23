"""Pure pieces of the pipeline: message decoding, key layout, report arithmetic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.collector.app import check_batch
from services.collector.stream import MAX_RECORD_BYTES, pack_records
from services.report.stats import day_range, intervals, nearest_rank, stats, to_csv, zone
from shared.auth import ApiKey
from shared.errors import PoisonMessageError
from shared.http import ApiError
from shared.layout import (
    BadKeyError,
    decode_lines,
    encode_lines,
    parse_key,
    raw_key,
    stage_key,
)
from shared.service import every
from shared.worker import object_keys


def test_s3_notification_keys_are_url_decoded() -> None:
    body = orjson.dumps(
        {"Records": [{"s3": {"object": {"key": "raw/acme/2026/11/27/04/b%2B1.ndjson.gz"}}}]}
    ).decode()
    assert object_keys(body) == ["raw/acme/2026/11/27/04/b+1.ndjson.gz"]


def test_s3_test_event_names_no_key() -> None:
    assert object_keys('{"Service":"Amazon S3","Event":"s3:TestEvent"}') == []


def test_sns_raw_message_names_its_keys() -> None:
    assert object_keys('{"keys": ["enriched/acme/b.ndjson.gz"]}') == ["enriched/acme/b.ndjson.gz"]


@pytest.mark.parametrize("body", ["not json", "[]", '{"hello": 1}', '{"Records": [{}]}'])
def test_unreadable_messages_are_poison(body: str) -> None:
    with pytest.raises(PoisonMessageError):
        object_keys(body)


def test_keys_name_stage_tenant_and_batch() -> None:
    assert parse_key(raw_key("acme", "0001-x")) == ("raw", "acme", "0001-x")
    assert parse_key(stage_key("filtered", "acme", "b")) == ("filtered", "acme", "b")
    with pytest.raises(BadKeyError):
        parse_key("raw/ACME/b.ndjson.gz")
    with pytest.raises(BadKeyError):
        parse_key("raw/acme")


def test_event_lines_round_trip() -> None:
    lines = [(b'"t1"', b'{"a":1}'), (b'"t\\tab"', b'{"b":"x\\ny"}')]
    assert list(decode_lines(encode_lines(lines))) == lines


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 21))  # 1..20
    assert nearest_rank(values, 50) == 10
    assert nearest_rank(values, 90) == 18
    assert nearest_rank(values, 95) == 19
    assert stats([5]) == {"count": 1, "avg_ms": 5.0, "p50_ms": 5, "p90_ms": 5, "p95_ms": 5}
    assert stats([])["avg_ms"] is None


def test_day_range_follows_the_zone_exactly() -> None:
    start, end = day_range(
        datetime(2026, 3, 8).date(), datetime(2026, 3, 8).date(), zone("America/New_York")
    )
    assert (end - start).total_seconds() == 23 * 3600  # the spring-forward day
    start, _ = day_range(
        datetime(2026, 1, 1).date(), datetime(2026, 1, 1).date(), zone("Asia/Kathmandu")
    )
    assert start.astimezone(UTC).isoformat() == "2025-12-31T18:15:00+00:00"
    with pytest.raises(ApiError):
        day_range(datetime(2026, 1, 2).date(), datetime(2026, 1, 1).date(), zone("UTC"))


def test_csv_flattens_nested_stats() -> None:
    text = to_csv([{"n": 1, "wait_time": {"count": 2, "avg_ms": None}}])
    assert text.splitlines() == ["n,wait_time.count,wait_time.avg_ms", "1,2,"]


def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote() -> None:
    rows = [{"agent_id": aid, "n": -3, "avg": -1.5} for aid in
            ("=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "a=b", "ok")]  # fmt: skip
    lines = to_csv(rows).splitlines()
    assert lines[1:] == [
        '"\'=HYPERLINK(""x"")",-3,-1.5',
        "'+1,-3,-1.5",
        "'-2,-3,-1.5",
        "'@SUM(A1),-3,-1.5",
        "'\tx,-3,-1.5",
        "a=b,-3,-1.5",
        "ok,-3,-1.5",
    ]


def test_collector_accepts_valid_events_and_rejects_others_individually() -> None:
    key = ApiKey("acme", frozenset({"ingest"}))
    good = {"event_id": "e", "tenant_id": "acme", "ticket_id": "t", "type": "ticket_closed",
            "occurred_at": "2026-11-27T03:00:00Z"}  # fmt: skip
    huge = {**good, "attributes": {"n": 2**60}}  # valid JSON, but RFC 8785 cannot carry it
    body = orjson.dumps([good, {**good, "tenant_id": "evil"}, 3, {**good, "type": "x"}, huge])
    accepted, rejected = check_batch(body, key, datetime(2026, 11, 27, 4, tzinfo=UTC))
    assert [orjson.loads(a)["occurred_at"] for a in accepted] == ["2026-11-27T03:00:00.000Z"]
    assert [(r.index, r.code) for r in rejected] == [
        (1, "tenant_mismatch"),
        (2, "not_an_object"),
        (3, "invalid_value"),
        (4, "not_canonicalizable"),
    ]
    with pytest.raises(ApiError):
        check_batch(b"[]", key, datetime.now(UTC))


def test_records_stay_under_the_kinesis_limit() -> None:
    lines = [b"x" * 1000] * 2000
    records = pack_records("acme", lines)
    assert all(len(r["Data"]) <= MAX_RECORD_BYTES for r in records)
    assert sum(r["Data"].count(b"\n") for r in records) == 2000
    assert all(r["PartitionKey"].startswith("acme/") for r in records)


def test_timeseries_intervals_follow_the_zone_and_clip_to_the_range() -> None:
    d = datetime(2026, 3, 8).date()  # New York springs forward: a 23-hour day
    labels, bounds = intervals(d, d, zone("America/New_York"), "hour")
    assert len(labels) == 23
    assert bounds[0] == labels[0] and bounds[-1] - bounds[0] == timedelta(hours=23)
    labels, _ = intervals(d, d, zone("Asia/Kathmandu"), "hour")  # +05:45
    assert len(labels) == 24 and all(t.minute == 15 for t in labels)
    wed, sun = datetime(2026, 11, 25).date(), datetime(2026, 12, 6).date()
    labels, bounds = intervals(wed, sun, zone("UTC"), "week")
    assert [t.date().isoformat() for t in labels] == ["2026-11-23", "2026-11-30"]
    assert bounds[0].date().isoformat() == "2026-11-25"  # counted from the range start
    labels, bounds = intervals(wed, sun, zone("UTC"), "month")
    assert [t.date().isoformat() for t in labels] == ["2026-11-01", "2026-12-01"]
    assert len(bounds) == len(labels) + 1
    with pytest.raises(ApiError):
        intervals(wed, sun, zone("UTC"), "fortnight")


async def test_a_periodic_job_survives_its_failures_and_stops_on_request() -> None:
    stop = asyncio.Event()
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            stop.set()
        raise RuntimeError("DynamoDB is down")  # logged, the next run still happens

    await asyncio.wait_for(every(0.01, job, stop, timeout_s=1), timeout=5)
    assert calls == 3
