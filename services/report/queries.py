"""Reports from the rollups: a range becomes a few aligned buckets per point,
whose counts, sums and histograms are merged here.

The cost of a report depends on the number of buckets and dimension values it
reads, never on the number of tickets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.loader.rollups import SEP
from services.report.stats import PERCENTILES, ratio
from shared.histogram import at_most, percentile
from shared.timebuckets import decompose, epoch_s, instant

STATS_FIELDS = {
    "wait_time": "assigned",
    "first_response_time": "first_response",
    "handle_time": "handle",
    "resolution_time": "resolution",
    "avg_reply_time": "reply",
}
SUMMARY_KINDS = ("created", "closed", "abandoned", "transfers", "customer_message",
                 "agent_message", "bot_message", *STATS_FIELDS.values())  # fmt: skip
GROUP_KINDS = ("group_stint", "group_answered", "group_abandoned", "group_transferred")
AGENT_KINDS = ("agent_stint", "agent_message", "first_response", "closed")


@dataclass(frozen=True)
class Filters:
    group_id: str | None = None
    agent_id: str | None = None
    channel: str | None = None


@dataclass
class Acc:
    """A merged rollup cell: count, sum and histogram (bins as stored, text)."""

    n: int = 0
    total: int = 0
    hist: dict[str, list[int]] = field(default_factory=dict)

    def add(self, n: int, total: int, hist: dict[str, list[int]]) -> None:
        self.n += n
        self.total += total
        mine = self.hist
        for b, (count, values) in hist.items():
            cell = mine.get(b)
            if cell is None:
                mine[b] = [count, values]
            else:
                cell[0] += count
                cell[1] += values

    def bins(self) -> dict[int, list[int]]:
        return {int(b): cell for b, cell in self.hist.items() if cell[0]}


ROLLUP_SQL = """
SELECT p.i, r.dim_value, r.kind, r.n, r.total, r.hist
FROM unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[]),
            CAST(:points AS integer[])) AS p(level, bucket, i)
JOIN rollups AS r ON r.tenant_id = :tenant AND r.dim = :dim
                 AND r.level = p.level AND r.bucket = p.bucket
WHERE r.kind = ANY(CAST(:kinds AS text[])) AND {where}
"""

Cells = dict[tuple[int, str, str], Acc]  # (interval, dim value, kind) -> merged cell


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
    position = {"channel": 1, "first_group": 2, "last_agent": 3}
    where = " AND ".join(f"split_part(r.dim_value, :sep, {position[k]}) = :{k}" for k in given)
    return "combo", where, {"sep": SEP, **given}


async def _cells(
    engine: AsyncEngine,
    tenant: str,
    dim: str,
    bounds: list[datetime],
    kinds: tuple[str, ...],
    where: str = "TRUE",
    params: dict[str, Any] | None = None,
) -> Cells:
    levels: list[int] = []
    buckets: list[datetime] = []
    points: list[int] = []
    for i, (lo, hi) in enumerate(pairwise(bounds)):
        for level, bucket in decompose(epoch_s(lo), epoch_s(hi)):
            levels.append(level)
            buckets.append(instant(bucket))
            points.append(i)
    cells: Cells = {}
    async with engine.connect() as conn:
        params = {"tenant": tenant, "dim": dim, "kinds": list(kinds), "levels": levels,
                  "buckets": buckets, "points": points, **(params or {})}  # fmt: skip
        result = await conn.execute(text(ROLLUP_SQL.format(where=where)), params)
        for i, value, kind, n, total, hist in result.tuples():
            cell = cells.get((i, value, kind))
            if cell is None:
                cell = cells[(i, value, kind)] = Acc()
            cell.add(n, total, hist)
    return cells


def _stats(cell: Acc | None) -> dict[str, Any]:
    if cell is None or cell.n <= 0:
        return {"count": 0, "avg_ms": None, **dict.fromkeys(k for k, _ in PERCENTILES)}
    bins = cell.bins()
    return {
        "count": cell.n,
        "avg_ms": cell.total / cell.n,
        **{k: percentile(bins, p) for k, p in PERCENTILES},
    }


def _summary(cells: dict[str, Acc], sla_seconds: int) -> dict[str, Any]:
    def count(kind: str) -> int:
        return cells[kind].n if kind in cells else 0

    first = cells.get("first_response")
    within = at_most(first.bins(), sla_seconds * 1000) if first else 0
    return {
        "tickets_created": count("created"),
        "tickets_closed": count("closed"),
        "tickets_abandoned": count("abandoned"),
        "abandon_rate": ratio(count("abandoned"), count("closed")),
        "transfers": cells["transfers"].total if "transfers" in cells else 0,
        "customer_messages": count("customer_message"),
        "agent_messages": count("agent_message"),
        "bot_messages": count("bot_message"),
        "sla_seconds": sla_seconds,
        "service_level": ratio(within, first.n) if first else None,
        **{name: _stats(cells.get(kind)) for name, kind in STATS_FIELDS.items()},
    }


async def summaries(
    engine: AsyncEngine,
    tenant: str,
    bounds: list[datetime],
    filters: Filters,
    sla_seconds: int,
) -> list[dict[str, Any]]:
    """The summary of each interval [bounds[i], bounds[i + 1])."""
    dim, where, params = _dimension(filters)
    cells = await _cells(engine, tenant, dim, bounds, SUMMARY_KINDS, where, params)
    by_interval: list[dict[str, Acc]] = [{} for _ in bounds[:-1]]
    for (i, _, kind), cell in cells.items():
        mine = by_interval[i].get(kind)
        if mine is None:
            by_interval[i][kind] = cell
        else:  # several combo values of one interval
            mine.add(cell.n, cell.total, cell.hist)
    return [_summary(rows, sla_seconds) for rows in by_interval]


def _per_value(cells: Cells) -> dict[str, dict[str, Acc]]:
    out: dict[str, dict[str, Acc]] = {}
    for (_, value, kind), cell in cells.items():
        out.setdefault(value, {})[kind] = cell
    return out


async def groups(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Group stints that ended in the range, per group."""
    by_group = _per_value(await _cells(engine, tenant, "group", [start, end], GROUP_KINDS))

    def count(cells: dict[str, Acc], kind: str) -> int:
        return cells[kind].n if kind in cells else 0

    return [
        {
            "group_id": group,
            "stints": count(cells, "group_stint"),
            "answered": count(cells, "group_answered"),
            "abandoned": count(cells, "group_abandoned"),
            "transferred_out": count(cells, "group_transferred"),
            "queue_time": _stats(cells.get("group_stint")),
        }
        for group, cells in sorted(by_group.items())
        if count(cells, "group_stint")
    ]


async def agents(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per agent: stints and handle time at the stint's end, messages and first
    responses at their time, tickets closed while the agent held them."""
    by_agent = _per_value(await _cells(engine, tenant, "agent", [start, end], AGENT_KINDS))

    def count(cells: dict[str, Acc], kind: str) -> int:
        return cells[kind].n if kind in cells else 0

    rows = [
        {
            "agent_id": agent,
            "stints": count(cells, "agent_stint"),
            "handle_time": _stats(cells.get("agent_stint")),
            "agent_messages": count(cells, "agent_message"),
            "first_responses": count(cells, "first_response"),
            "tickets_closed": count(cells, "closed"),
        }
        for agent, cells in sorted(by_agent.items())
    ]
    return [r for r in rows if r["stints"] or r["agent_messages"] or r["first_responses"]
            or r["tickets_closed"]]  # fmt: skip


async def ticket_doc(engine: AsyncEngine, tenant: str, ticket_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT doc FROM tickets WHERE tenant_id = :t AND ticket_id = :id"),
                {"t": tenant, "id": ticket_id},
            )
        ).first()
    return None if row is None else dict(row.doc)
