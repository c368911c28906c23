"""Reports from the rollups: a range becomes a few aligned buckets per point,
whose counts, sums and histograms are merged here. A coarse bucket not folded
yet (its period is open) is read as its children, down to quarter hours.

The cost of a report depends on the number of buckets and dimension values it
reads, never on the number of tickets.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.report.stats import merged_stats, ratio
from shared.events import evaluation_order
from shared.histogram import EDGES, last_bin_at_most, rank
from shared.http import ApiError
from shared.rollups import (
    ENTRY,
    HIST_CODE,
    HIST_KINDS,
    PERCENTS,
    SLA_CELL,
    SLA_MS,
    Cells,
    add_cells,
)
from shared.timebuckets import (
    Calendar,
    Piece,
    children,
    decompose,
    decompose_local,
    epoch_s,
    instant,
    local_midnight,
)

STATS_FIELDS = {
    "wait_time": "assigned",
    "first_response_time": "first_response",
    "handle_time": "handle",
    "resolution_time": "resolution",
    "avg_reply_time": "reply",
}


@dataclass(frozen=True)
class Filters:
    group_id: str | None = None
    agent_id: str | None = None
    channel: str | None = None


UNFOLDED_SQL = text(
    "SELECT level, bucket FROM rollup_folds WHERE tenant_id = :tenant AND NOT folded"
)
ROLLUP_SQL = """
SELECT p.i, r.dim_value, r.cells,
       CASE WHEN p.single THEN r.pcts END AS pcts,
       CASE WHEN p.single THEN NULL ELSE r.hists END AS hists
FROM unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[]),
            CAST(:points AS integer[]), CAST(:single AS boolean[])) AS p(level, bucket, i, single)
JOIN rollups AS r ON r.tenant_id = :tenant AND r.dim = :dim
                 AND r.level = p.level AND r.bucket = p.bucket
WHERE {where}
"""


@dataclass
class Point:
    """What the rows of one (interval, dimension value) add up to: the cells, and
    either the percentiles of its only row or the histograms of all of them."""

    cells: Cells = field(default_factory=dict)
    pcts: dict[str, list[int | None]] | None = None
    hists: list[bytes] = field(default_factory=list)
    rows: int = 0

    def add(self, other: Point) -> None:
        if other.pcts is not None and self.rows:
            raise RuntimeError("stored percentiles cannot be merged: read the histograms")
        if self.rows == 0:  # the common case: take the parsed row as it is
            self.cells, self.pcts, self.hists, self.rows = other.cells, other.pcts, other.hists, 1
            return
        add_cells(self.cells, other.cells)
        self.pcts = None
        self.hists = [*self.hists, *other.hists]
        self.rows += other.rows

    def within(self, limit_ms: int) -> int:
        if limit_ms in SLA_MS:
            return self.cells.get(SLA_CELL, [0] * len(SLA_MS))[SLA_MS.index(limit_ms)]
        if not self.hists:
            return 0
        counts, _ = _dense(self.hists)
        return int(counts[HIST_CODE["first_response"], : last_bin_at_most(limit_ms) + 1].sum())


Pcts = dict[str, list[int | None]]


def _dense(hists: list[bytes]) -> tuple[Any, Any]:
    """Merged histograms as dense (counts, sums) arrays, one line per kind."""
    entries = np.frombuffer(b"".join(hists), dtype=ENTRY)
    index = entries["kind"].astype(np.intp) * len(EDGES) + entries["bin"]
    shape = (len(HIST_KINDS), len(EDGES))
    size = shape[0] * shape[1]
    counts = np.bincount(index, weights=entries["n"], minlength=size).reshape(shape)
    sums = np.bincount(index, weights=entries["sum"], minlength=size).reshape(shape)
    return counts, sums


# Bins of the dense arrays merged at once: 128 KiB of float64 each, so that the
# counts and sums a chunk scatters into stay in a core's L2 cache. Measured
# (session 19): the agents report's 144 lists of ~850 entries 7.5 ms at 1 << 16,
# 3.7-4.7 at 1 << 14; 365 lists x 5 kinds (a merged series, few entries a list)
# pay numpy's per-chunk cost instead: 24 → 27-30 ms.
DENSE_BINS = 1 << 14


def _merged_percentiles(hist_lists: list[list[bytes]]) -> list[Pcts]:
    """The percentiles of each list of histograms, many lists at a time.

    A per-agent report merges 144 lists, and numpy's cost per call dominated
    (~0.06 ms per list): here one dense array holds a line per (list, kind
    present), so the sums, running counts and rank searches of many lists are
    one call each. Same arithmetic as shared.histogram.percentiles."""
    out: list[Pcts] = [{} for _ in hist_lists]
    sizes = [sum(len(h) for h in hists) // ENTRY.itemsize for hists in hist_lists]
    if not any(sizes):
        return out
    entries = np.frombuffer(b"".join(h for hists in hist_lists for h in hists), dtype=ENTRY)
    present = np.flatnonzero(np.bincount(entries["kind"], minlength=len(HIST_KINDS)))
    line_of_kind = np.zeros(len(HIST_KINDS), dtype=np.intp)
    line_of_kind[present] = np.arange(len(present))
    lines = line_of_kind[entries["kind"]]
    offsets = [0, *itertools.accumulate(sizes)]
    step = max(1, DENSE_BINS // (len(present) * len(EDGES)))
    for at in range(0, len(hist_lists), step):
        upto = min(at + step, len(hist_lists))
        part = slice(offsets[at], offsets[upto])
        owner = np.repeat(np.arange(upto - at, dtype=np.intp), sizes[at:upto])
        merged = _merged_lines(entries[part], owner * len(present) + lines[part])
        for line, values in merged:
            point, k = divmod(line, len(present))
            out[at + point][HIST_KINDS[int(present[k])]] = values
    return out


def _merged_lines(entries: Any, line: Any) -> list[tuple[int, list[int | None]]]:
    """(line, percentiles) of each line with counts, from entries tagged with their line."""
    width = len(EDGES)
    size = (int(line.max()) + 1 if len(line) else 0) * width
    index = line * width + entries["bin"]
    counts = np.bincount(index, weights=entries["n"], minlength=size)
    sums = np.bincount(index, weights=entries["sum"], minlength=size)
    # One running count over every line: a line's rank r is the first bin where
    # it reaches the count of the lines before plus r. That needs it sorted, so a
    # bin below zero (only a retraction without its row could make one) counts as
    # empty rather than moving the ranks of the lines after it.
    np.maximum(counts, 0, out=counts)
    running = np.cumsum(counts)
    ends = running[width - 1 :: width]
    before = np.concatenate(([0.0], ends[:-1]))
    totals = ends - before
    live = np.flatnonzero(totals > 0).tolist()
    if not live:
        return []
    targets = [
        b + rank(int(t), p)
        for b, t in zip(before[live].tolist(), totals[live].tolist(), strict=True)
        for p in PERCENTS
    ]
    found = np.searchsorted(running, targets, side="left")
    values = (sums[found] / counts[found]).reshape(len(live), len(PERCENTS)).tolist()
    return [(ln, [round(v) for v in vs]) for ln, vs in zip(live, values, strict=True)]


def percentiles(points: list[Point]) -> list[Pcts]:
    """Each point's percentiles: stored ones as they are, the others merged from
    their histograms."""
    merged = iter(_merged_percentiles([p.hists for p in points if p.pcts is None]))
    return [p.pcts if p.pcts is not None else next(merged) for p in points]


def _dimension(filters: Filters) -> tuple[str, str, dict[str, Any]]:
    """(dim, SQL condition, parameters) of the rollup rows a filter reads."""
    pairs = (
        ("channel", filters.channel),
        ("first_group", filters.group_id),
        ("last_agent", filters.agent_id),
    )
    given = {name: value for name, value in pairs if value is not None}
    if not given:
        return "all", "TRUE", {}
    if len(given) == 1:
        [(dim, value)] = given.items()
        return dim, "r.dim_value = :value", {"value": value}
    position = {"channel": 0, "first_group": 1, "last_agent": 2}
    where = " AND ".join(f"CAST(r.dim_value AS jsonb) ->> {position[k]} = :{k}" for k in given)
    return "combo", where, given


def _pieces(lo: datetime, hi: datetime, cal: Calendar | None) -> list[Piece]:
    """The buckets of [lo, hi): local days, weeks and months when it is whole
    days of a report zone, else UTC buckets."""
    try:
        if cal is not None:
            zone = cal.zone
            first, last = lo.astimezone(zone).date(), hi.astimezone(zone).date()
            lo_s, hi_s = epoch_s(lo), epoch_s(hi)
            whole_days = lo_s == local_midnight(first, zone) and hi_s == local_midnight(last, zone)
            if whole_days and lo_s >= cal.since_s:
                return decompose_local(cal, first, last)
        return decompose(epoch_s(lo), epoch_s(hi))
    except (ValueError, OverflowError) as exc:  # local mean time before 1900-ish; year 9999
        raise ApiError(
            400, "invalid_range", "the range must start and end on a quarter hour of UTC"
        ) from exc


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One snapshot (REPEATABLE READ) for statements that must agree: fold states
    and the rows read with them, a drill-down's total and its page."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="REPEATABLE READ")


async def _unfolded(conn: AsyncConnection, tenant: str) -> set[Piece]:
    """The tenant's coarse buckets not folded yet: open ones (a few per level)
    and closed ones the folder has not reached."""
    rows = await conn.execute(UNFOLDED_SQL, {"tenant": tenant})
    return {(level, epoch_s(bucket)) for level, bucket in rows}


def _expanded(pieces: list[Piece], unfolded: set[Piece], cal: Calendar | None) -> list[Piece]:
    """Pieces with every unfolded coarse bucket replaced by its children, down
    to the quarter hours the loader writes (services/loader/folds.py)."""
    if not unfolded:
        return pieces
    cals = () if cal is None else (cal,)
    out: list[Piece] = []
    todo = pieces[::-1]
    while todo:
        piece = todo.pop()
        if piece[0] > 0 and piece in unfolded:
            todo.extend(children(piece, cals)[::-1])
        else:
            out.append(piece)
    return out


async def _points(
    engine: AsyncEngine,
    tenant: str,
    dim: str,
    bounds: list[datetime],
    cal: Calendar | None,
    where: str = "TRUE",
    params: dict[str, Any] | None = None,
    merge_values: bool = False,
) -> dict[tuple[int, str], Point]:
    """Each (interval, dimension value) of the rows read. Histograms are read
    only where a point spans several buckets or `merge_values` is set."""
    levels: list[int] = []
    buckets: list[datetime] = []
    points: list[int] = []
    single: list[bool] = []
    out: dict[tuple[int, str], Point] = {}
    async with snapshot(engine) as conn:
        unfolded = await _unfolded(conn, tenant)
        for i, (lo, hi) in enumerate(pairwise(bounds)):
            pieces = _expanded(_pieces(lo, hi, cal), unfolded, cal)
            for level, bucket in pieces:
                levels.append(level)
                buckets.append(instant(bucket))
                points.append(i)
                single.append(len(pieces) == 1 and not merge_values)
        params = {"tenant": tenant, "dim": dim, "levels": levels, "buckets": buckets,
                  "points": points, "single": single, **(params or {})}  # fmt: skip
        result = await conn.execute(text(ROLLUP_SQL.format(where=where)), params)
        for i, value, cells, pcts, hists in result:
            row = Point(cells, pcts, [] if hists is None else [hists], 1)
            point = out.get((i, value))
            if point is None:
                out[(i, value)] = row
            else:
                point.add(row)
    return out


BY_VALUE_SQL = """
SELECT r.dim_value, count(*) AS rows, {sums},
       CASE WHEN count(*) = 1 THEN (array_agg(r.pcts))[1] END AS pcts,
       CASE WHEN count(*) > 1 THEN string_agg(r.hists, ''::bytea) END AS hists
FROM unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[])) AS p(level, bucket)
JOIN rollups AS r ON r.tenant_id = :tenant AND r.dim = :dim
                 AND r.level = p.level AND r.bucket = p.bucket
GROUP BY r.dim_value
"""


async def _by_value(
    engine: AsyncEngine,
    tenant: str,
    dim: str,
    start: datetime,
    end: datetime,
    cal: Calendar | None,
    kinds: tuple[str, ...],
) -> dict[str, tuple[Point, Pcts]]:
    """Per dimension value over [start, end): the counts and sums of `kinds`,
    added up by PostgreSQL (one row per value), and the percentiles of the
    value's histograms, which arrive as one concatenated string."""
    sums = ", ".join(  # kinds are this module's constants, never user input
        f"sum(CAST(r.cells #>> '{{{kind},{i}}}' AS bigint)) AS {kind}_{i}"
        for kind in kinds
        for i in (0, 1)
    )
    async with snapshot(engine) as conn:
        pieces = _expanded(_pieces(start, end, cal), await _unfolded(conn, tenant), cal)
        params = {"tenant": tenant, "dim": dim, "levels": [lv for lv, _ in pieces],
                  "buckets": [instant(b) for _, b in pieces]}  # fmt: skip
        result = await conn.execute(text(BY_VALUE_SQL.format(sums=sums)), params)
        rows = result.all()
    points: dict[str, Point] = {}
    for value, n, *totals, pcts, hists in rows:
        cells = {
            kind: [int(totals[2 * k]), int(totals[2 * k + 1] or 0)]
            for k, kind in enumerate(kinds)
            if totals[2 * k] is not None
        }
        points[value] = Point(cells, pcts, [] if hists is None else [hists], n)
    pcts = percentiles(list(points.values()))
    return {v: (p, c) for (v, p), c in zip(points.items(), pcts, strict=True)}


def _count(cells: Cells, kind: str) -> int:
    return int(cells[kind][0]) if kind in cells else 0


def _stats(point: Point, kind: str, pcts: Pcts) -> dict[str, Any]:
    return merged_stats(point.cells.get(kind), pcts.get(kind, [None] * len(PERCENTS)))


def _summary(point: Point, pcts: Pcts, sla_seconds: int) -> dict[str, Any]:
    cells = point.cells
    first = _count(cells, "first_response")
    return {
        "tickets_created": _count(cells, "created"),
        "tickets_closed": _count(cells, "closed"),
        "tickets_abandoned": _count(cells, "abandoned"),
        "abandon_rate": ratio(_count(cells, "abandoned"), _count(cells, "closed")),
        "transfers": int(cells["transfers"][1]) if "transfers" in cells else 0,
        "customer_messages": _count(cells, "customer_message"),
        "agent_messages": _count(cells, "agent_message"),
        "bot_messages": _count(cells, "bot_message"),
        "sla_seconds": sla_seconds,
        "service_level": ratio(point.within(sla_seconds * 1000), first) if first else None,
        **{name: _stats(point, kind, pcts) for name, kind in STATS_FIELDS.items()},
    }


async def summaries(
    engine: AsyncEngine,
    tenant: str,
    bounds: list[datetime],
    filters: Filters,
    sla_seconds: int,
    cal: Calendar | None = None,
) -> list[dict[str, Any]]:
    """The summary of each interval [bounds[i], bounds[i + 1])."""
    dim, where, params = _dimension(filters)
    exact_sla = sla_seconds * 1000 in SLA_MS
    merge = dim == "combo" or not exact_sla  # several rows per point, or histograms needed
    by_interval = [Point() for _ in bounds[:-1]]
    read = await _points(engine, tenant, dim, bounds, cal, where, params, merge_values=merge)
    for (i, _), point in read.items():
        by_interval[i].add(point)
    return [
        _summary(point, pcts, sla_seconds)
        for point, pcts in zip(by_interval, percentiles(by_interval), strict=True)
    ]


def _group_row(group: str, point: Point, pcts: Pcts) -> dict[str, Any]:
    cells = point.cells
    return {
        "group_id": group,
        "stints": _count(cells, "group_stint"),
        "answered": _count(cells, "group_answered"),
        "abandoned": _count(cells, "group_abandoned"),
        "transferred_out": _count(cells, "group_transferred"),
        "queue_time": _stats(point, "group_stint", pcts),
    }


async def groups(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime, cal: Calendar | None = None
) -> list[dict[str, Any]]:
    """Group stints that ended in the range, per group."""
    kinds = ("group_stint", "group_answered", "group_abandoned", "group_transferred")
    by_group = await _by_value(engine, tenant, "group", start, end, cal, kinds)
    rows = [_group_row(g, p, c) for g, (p, c) in sorted(by_group.items())]
    return [r for r in rows if r["stints"]]


def _agent_row(agent: str, point: Point, pcts: Pcts) -> dict[str, Any]:
    cells = point.cells
    return {
        "agent_id": agent,
        "stints": _count(cells, "agent_stint"),
        "handle_time": _stats(point, "agent_stint", pcts),
        "agent_messages": _count(cells, "agent_message"),
        "first_responses": _count(cells, "first_response"),
        "tickets_closed": _count(cells, "closed"),
    }


async def agents(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime, cal: Calendar | None = None
) -> list[dict[str, Any]]:
    """Per agent: stints and handle time at the stint's end, messages and first
    responses at their time, tickets closed while the agent held them."""
    kinds = ("agent_stint", "agent_message", "first_response", "closed")
    by_agent = await _by_value(engine, tenant, "agent", start, end, cal, kinds)
    rows = [_agent_row(a, p, c) for a, (p, c) in sorted(by_agent.items())]
    counted = ("stints", "agent_messages", "first_responses", "tickets_closed")
    return [r for r in rows if any(r[k] for k in counted)]


async def ticket_doc(engine: AsyncEngine, tenant: str, ticket_id: str) -> dict[str, Any] | None:
    """The ticket's document; its events, kept one per row, in evaluation order."""
    async with snapshot(engine) as conn:
        row = (await conn.execute(TICKET_SQL, {"t": tenant, "id": ticket_id})).first()
        if row is None:
            return None
        events = [e for (e,) in await conn.execute(EVENTS_SQL, {"t": tenant, "id": ticket_id})]
    _, order = evaluation_order(events)
    return {**row.doc, "events": [e for *_, e in order]}


TICKET_SQL = text("SELECT doc FROM tickets WHERE tenant_id = :t AND ticket_id = :id")
EVENTS_SQL = text("SELECT event FROM ticket_events WHERE tenant_id = :t AND ticket_id = :id")
