"""Histograms, time buckets and rollup contributions: the arithmetic reports rest on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.loader.rollups import Key, changes, contribution
from services.report.queries import Point
from services.report.queries import percentiles as merged_percentiles
from services.report.stats import day_range, nearest_rank
from shared.histogram import EDGES, SLA_SECONDS, Histogram, at_most, bin_of, percentiles
from shared.rollups import (
    ENTRY,
    HIST_KINDS,
    SLA_CELL,
    Rollup,
    _merged_in_numpy,
    combo,
    decode_hists,
    merged_values,
    pcts_of,
    row_values,
)
from shared.timebuckets import (
    LEVEL_SECONDS,
    ancestors,
    buckets_of,
    calendars,
    children,
    decompose,
    decompose_local,
    end_of,
    epoch_s,
    local_midnight,
)

values = st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300)


def of_values(values: list[int]) -> Histogram:
    return merge([{bin_of(v): [1, v]} for v in values])


def merge(hists: list[Histogram], sign: int = 1) -> Histogram:
    row = Rollup()
    for h in hists:
        row.add(Rollup({}, {"reply": h}), sign)
    return row.pruned().hists.get("reply", {})


def hist_of(vs: list[int]) -> Histogram:
    return of_values(vs)


@given(values, st.sampled_from([50, 90, 95]))
def test_percentile_is_within_two_percent_of_the_nearest_rank(vs: list[int], p: int) -> None:
    exact = nearest_rank(sorted(vs), p)
    [approx] = percentiles(hist_of(vs), [p])
    assert approx is not None
    assert abs(approx - exact) <= 0.02 * exact
    if exact <= 250 or len(set(vs)) == 1:
        assert approx == exact


@given(values, st.sampled_from(SLA_SECONDS))
def test_service_level_is_exact_at_every_contract_sla(vs: list[int], sla: int) -> None:
    assert at_most(hist_of(vs), sla * 1000) == sum(v <= sla * 1000 for v in vs)


@given(values, values)
def test_merge_and_retract_are_exact(a: list[int], b: list[int]) -> None:
    both = merge([hist_of(a), hist_of(b)])
    assert both == hist_of(a + b)
    assert merge([both, merge([hist_of(b)], sign=-1)]) == hist_of(a)


def test_edges_are_strictly_increasing_and_narrow() -> None:
    assert all(x < y for x, y in pairwise(EDGES))
    assert all(y / (x + 1) <= 1.018 for x, y in pairwise(EDGES) if x >= 250)
    assert {s * 1000 for s in SLA_SECONDS} <= set(EDGES)
    assert len(EDGES) < 1500


Measure = dict[str, object]
quarters = st.integers(min_value=0, max_value=4 * 24 * 800)


@given(quarters, quarters)
def test_a_range_is_an_exact_union_of_aligned_buckets(a: int, b: int) -> None:
    lo, hi = sorted((a * 900 + 1_600_000_000 // 900 * 900, b * 900 + 1_600_000_000 // 900 * 900))
    pieces = decompose(lo, hi)
    t = lo
    for level, start in pieces:
        assert start == t and start % LEVEL_SECONDS[level] == 0
        t += LEVEL_SECONDS[level]
    assert t == hi
    assert len(pieces) <= 2 * (3 + 23 + 3 * 4) + 3


def test_a_year_of_local_days_in_odd_zones_needs_few_buckets() -> None:
    for tz in ("UTC", "America/Sao_Paulo", "Asia/Kathmandu", "Asia/Kolkata"):
        lo, hi = day_range(datetime(2025, 1, 1).date(), datetime(2025, 12, 31).date(), ZoneInfo(tz))
        assert len(decompose(epoch_s(lo), epoch_s(hi))) <= 60, tz


def test_an_instant_falls_in_one_bucket_per_level() -> None:
    t = datetime(2026, 3, 8, 13, 47, 12, tzinfo=UTC)
    ms = epoch_s(t) * 1000 + 345
    for level, start in buckets_of(ms):
        assert start <= ms // 1000 < start + LEVEL_SECONDS[level]
    assert buckets_of(ms)[0][1] == epoch_s(t.replace(minute=45, second=0))


def measure(kind: str, at: datetime, value: int | None = None, **extra: object) -> Measure:
    base = {"ticket_id": "t", "kind": kind, "at": at, "value_ms": value, "agent_id": None,
            "channel": "web", "first_group_id": "g1", "last_agent_id": "a1", "group_id": None,
            "answered": None, "abandoned": None, "transferred_out": None}  # fmt: skip
    return {**base, **extra}


def test_a_retracted_contribution_leaves_nothing_behind() -> None:
    t = datetime(2026, 11, 20, 10, tzinfo=UTC)
    old = [measure("created", t), measure("assigned", t + timedelta(seconds=40), 40_000),
           measure("group_stint", t, 40_000, group_id="g1", answered=True)]  # fmt: skip
    new = [*old, measure("closed", t + timedelta(minutes=9), 540_000, agent_id="a1")]
    delta: dict[Key, Rollup] = {}
    contribution(old, 1, delta)
    contribution(old, -1, delta)
    contribution(new, 1, delta)
    expected: dict[Key, Rollup] = {}
    contribution(new, 1, expected)
    live = {k: v.pruned() for k, v in delta.items() if v.pruned()}
    assert live == expected
    kinds = {(dim, kind) for (dim, *_), row in expected.items() for kind in row.cells}
    assert ("group", "group_answered") in kinds and ("agent", "closed") in kinds
    assert ("combo", "created") in kinds
    combos = {value for (dim, _, _, value) in expected if dim == "combo"}
    assert combos == {combo("web", "g1", "a1")}
    day = expected[("all", 2, epoch_s(t.replace(hour=0)), "")]
    assert day.cells["assigned"] == [1, 40_000]
    assert day.hists["assigned"] == {bin_of(40_000): [1, 40_000]}


def test_stored_histograms_round_trip_and_give_the_rows_percentiles() -> None:
    t = datetime(2026, 11, 20, 10, tzinfo=UTC)
    firsts = [measure("first_response", t, v, agent_id="a1") for v in (5_000, 61_000, 900_000)]
    rows: dict[Key, Rollup] = {}
    contribution(firsts, 1, rows)
    row = rows[("all", 0, epoch_s(t), "")]
    stored = row_values(row)
    assert decode_hists(stored["hists"]) == row.hists
    assert stored["pcts"] == {"first_response": [61_000, 900_000, 900_000]}
    assert row.cells["first_response_sla"] == [
        sum(v <= s * 1000 for v in (5_000, 61_000, 900_000)) for s in SLA_SECONDS
    ]


def test_agent_and_group_rows_keep_only_the_histogram_their_report_ranks() -> None:
    t = datetime(2026, 11, 20, 10, tzinfo=UTC)
    rows: dict[Key, Rollup] = {}
    measures = [measure("first_response", t, 5_000, agent_id="a1"),
                measure("agent_stint", t, 90_000, agent_id="a1"),
                measure("group_stint", t, 40_000, group_id="g1", answered=True)]  # fmt: skip
    contribution(measures, 1, rows)
    agent = rows[("agent", 0, epoch_s(t), "a1")]
    assert agent.cells == {"first_response": [1, 5_000], "agent_stint": [1, 90_000]}
    assert set(agent.hists) == {"agent_stint"}
    assert set(rows[("group", 0, epoch_s(t), "g1")].hists) == {"group_stint"}
    everything = rows[("all", 0, epoch_s(t), "")]
    assert set(everything.hists) == {"first_response"} and SLA_CELL in everything.cells


@given(st.lists(values, min_size=1, max_size=4), st.sampled_from((7, 125, 3601)))
def test_merged_stored_histograms_give_what_one_row_would(parts: list[list[int]], sla: int) -> None:
    """Several buckets read as histograms equal one bucket read as its percentiles."""
    rows = [Rollup({}, {"reply": of_values(p), "first_response": of_values(p)}) for p in parts]
    merged = Rollup()
    for row in rows:
        merged.add(row)
    point = Point()
    for row in rows:
        point.add(Point({}, None, [row_values(row)["hists"]], 1))
    assert merged_percentiles([point]) == [pcts_of(merged.hists)]
    assert merged_percentiles([point, Point(), point])[2] == pcts_of(merged.hists)
    first = Point({}, None, [row_values(rows[0])["hists"]], 1)  # merged side by side
    assert merged_percentiles([point, first]) == [pcts_of(merged.hists), pcts_of(rows[0].hists)]
    everything = [v for p in parts for v in p]
    within = point.within(sla * 1000)  # not a contract SLA: from the histograms
    assert within == at_most(merged.hists["first_response"], sla * 1000)
    near = sum(1 for v in everything if abs(v - sla * 1000) <= 0.02 * sla * 1000)
    assert abs(within - sum(v <= sla * 1000 for v in everything)) <= near


@given(st.lists(st.lists(st.tuples(st.sampled_from(HIST_KINDS), values), max_size=3), max_size=12))
def test_many_points_merge_in_one_pass_as_each_would_alone(
    points: list[list[tuple[str, list[int]]]],
) -> None:
    """A report with many points (144 agents, a merged series) merges them all at
    once: each point gets exactly what merging its own rows gives, whatever kinds
    its neighbours hold or lack."""
    rows = [[Rollup({}, {kind: of_values(vs)}) for kind, vs in point] for point in points]
    read = []
    for point_rows in rows:
        point = Point()
        for row in point_rows:
            point.add(Point({}, None, [row_values(row)["hists"]], 1))
        read.append(point)
    expected = []
    for point_rows in rows:
        merged = Rollup()
        for row in point_rows:
            merged.add(row)
        expected.append(pcts_of(merged.hists))
    assert merged_percentiles(read) == expected


@given(values, values)
def test_a_point_with_a_bin_below_zero_never_moves_its_neighbours(
    before: list[int], after: list[int]
) -> None:
    """A bin below zero (a retraction whose row is missing) must stay in its point."""
    alone = Point({}, None, [row_values(Rollup({}, {"reply": of_values(after)}))["hists"]], 1)
    negative = np.array([(HIST_KINDS.index("reply"), len(EDGES) - 1, -1000, -1)], dtype=ENTRY)
    broken = Point({}, None, [row_values(Rollup({}, {"reply": of_values(before)}))["hists"]], 1)
    broken.add(Point({}, None, [negative.tobytes()], 1))
    expected = merged_percentiles([alone])[0]
    assert merged_percentiles([broken, alone])[1] == expected


@given(
    st.lists(st.tuples(st.sampled_from(("reply", "handle", "first_response")), values),
             max_size=4),
    st.lists(st.tuples(st.sampled_from(("reply", "assigned")), values), max_size=3),
    st.booleans(),
)  # fmt: skip
def test_the_loaders_merge_of_a_stored_row_equals_the_dict_path(
    stored: list[tuple[str, list[int]]], added: list[tuple[str, list[int]]], retract: bool
) -> None:
    row, delta = Rollup(), Rollup()
    for kind, vs in stored:
        row.add(Rollup({kind: [len(vs), sum(vs)]}, {kind: of_values(vs)}))
    for kind, vs in added:
        delta.add(Rollup({kind: [len(vs), sum(vs)]}, {kind: of_values(vs)}))
    if retract and stored:  # take back the first stored part, as a newer version does
        kind, vs = stored[0]
        delta.add(Rollup({kind: [len(vs), sum(vs)]}, {kind: of_values(vs)}), -1)
    stored = row_values(row.pruned())
    cells = orjson.loads(orjson.dumps(stored["cells"]))  # as read back: no shared lists
    expected = Rollup(orjson.loads(orjson.dumps(cells)), decode_hists(stored["hists"]))
    expected.add(delta)
    want = row_values(expected.pruned())
    assert merged_values(cells, stored["hists"], delta) == want
    assert _merged_in_numpy(cells, stored["hists"], delta) == want  # what large rows take


def test_only_changed_measurements_are_retracted_and_added() -> None:
    t = datetime(2026, 11, 20, 10, tzinfo=UTC)
    same = [measure("created", t, tenant_id="x"), measure("customer_message", t, tenant_id="x"),
            measure("customer_message", t, tenant_id="x")]  # fmt: skip
    old = [*same, measure("assigned", t, 40_000, tenant_id="x")]
    new = [*same, measure("customer_message", t, tenant_id="x"),
           measure("assigned", t, 41_000, tenant_id="x")]  # fmt: skip
    removed, added = changes(old, new)
    assert [(m["kind"], m["value_ms"]) for m in removed] == [("assigned", 40_000)]
    assert sorted((m["kind"], m["value_ms"] or 0) for m in added) == [
        ("assigned", 41_000), ("customer_message", 0)]  # fmt: skip
    full: dict[Key, Rollup] = {}
    contribution(old, -1, full)
    contribution(new, 1, full)
    diff: dict[Key, Rollup] = {}
    contribution(removed, -1, diff)
    contribution(added, 1, diff)
    assert {k: v.pruned() for k, v in full.items() if v.pruned()} == {
        k: v.pruned() for k, v in diff.items() if v.pruned()
    }


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)),
       st.integers(min_value=1, max_value=800), st.sampled_from(["UTC", "America/Sao_Paulo",
                                                                 "Asia/Kathmandu"]))  # fmt: skip
def test_local_days_weeks_and_months_tile_a_range_of_days(start: date, days: int, tz: str) -> None:
    [cal] = calendars((tz,))
    end = start + timedelta(days=days)
    pieces = decompose_local(cal, start, end)
    day = start
    for level, bucket in pieces:
        assert bucket == local_midnight(day, cal.zone)
        if level == cal.code + 2:
            assert day.day == 1
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        elif level == cal.code + 1:
            assert day.weekday() == 0
            day += timedelta(days=7)
        else:
            assert level == cal.day_level
            day += timedelta(days=1)
    assert day == end
    assert len(pieces) <= days // 28 + 26  # days, weeks, days; months; weeks, days


def test_an_instant_is_in_its_local_day_week_and_month() -> None:
    [cal] = calendars(("Asia/Kathmandu",))  # +05:45
    t = datetime(2026, 3, 1, 18, 20, tzinfo=UTC)  # 00:05 on Monday 2 March in Kathmandu
    local = {level: start for level, start in buckets_of(epoch_s(t) * 1000, (cal,))}
    zone = cal.zone
    assert local[cal.code] == local_midnight(date(2026, 3, 2), zone)
    assert local[cal.code + 1] == local_midnight(date(2026, 3, 2), zone)
    assert local[cal.code + 2] == local_midnight(date(2026, 3, 1), zone)


def test_a_utc_report_zone_reads_and_writes_its_days_as_the_utc_day_level() -> None:
    """One level fewer per measurement: its local days are the UTC days."""
    [utc, sao_paulo] = calendars(("UTC", "America/Sao_Paulo"))
    t = datetime(2026, 3, 4, 18, 20, tzinfo=UTC)
    levels = [level for level, _ in buckets_of(epoch_s(t) * 1000, (utc, sao_paulo))]
    assert len(levels) == len(set(levels)) == 7 + 2 + 3
    assert utc.code not in levels and sao_paulo.code in levels
    days = decompose_local(utc, date(2026, 3, 4), date(2026, 3, 6))  # a Wednesday, a Thursday
    assert days == [(2, local_midnight(date(2026, 3, 4), utc.zone)),
                    (2, local_midnight(date(2026, 3, 5), utc.zone))]  # fmt: skip
    assert dict(buckets_of(epoch_s(t) * 1000))[2] == days[0][1]


@settings(deadline=None)  # a zone's first use loads its rules
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)))
def test_every_coarse_bucket_is_the_exact_union_of_its_children(t: datetime) -> None:
    """What the folder sums and what reports expand an open bucket into: the
    children tile the bucket, and each holds the quarter it came from."""
    cals = calendars(("UTC", "America/Sao_Paulo", "Asia/Kathmandu", "Pacific/Apia"))
    s = epoch_s(t.replace(tzinfo=UTC))
    quarter = s - s % 900
    for piece in ancestors(quarter, cals):
        parts = children(piece, cals)
        ends = [end_of(p, cals) for p in parts]
        assert [p[1] for p in parts] == [piece[1], *ends[:-1]]  # contiguous, in order
        assert ends[-1] == end_of(piece, cals)
        assert any(lo <= quarter < hi for (_, lo), hi in zip(parts, ends, strict=True))
        if piece[0] in (1, cals[1].code):  # hours and zone days are unions of quarters
            assert {lv for lv, _ in parts} == {0}
