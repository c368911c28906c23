"""Reports from the rollups: a range becomes a few aligned buckets per point,
whose counts, sums and histograms are merged here.

The cost of a report depends on the number of buckets and dimension values it
reads, never on the number of tickets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.report.stats import PERCENTILES, ratio
from shared.histogram import at_most, percentile
from shared.rollups import SEP, Cells, add_cells
from shared.timebuckets import decompose, epoch_s, instant

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


ROLLUP_SQL = """
SELECT p.i, r.dim_value, r.cells
FROM unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[]),
            CAST(:points AS integer[])) AS p(level, bucket, i)
JOIN rollups AS r ON r.tenant_id = :tenant AND r.dim = :dim
                 AND r.level = p.level AND r.bucket = p.bucket
WHERE {where}
"""


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
    where: str = "TRUE",
    params: dict[str, Any] | None = None,
) -> dict[tuple[int, str], Cells]:
    """The merged cells of each (interval, dimension value)."""
    levels: list[int] = []
    buckets: list[datetime] = []
    points: list[int] = []
    for i, (lo, hi) in enumerate(pairwise(bounds)):
        for level, bucket in decompose(epoch_s(lo), epoch_s(hi)):
            levels.append(level)
            buckets.append(instant(bucket))
            points.append(i)
    out: dict[tuple[int, str], Cells] = {}
    async with engine.connect() as conn:
        params = {"tenant": tenant, "dim": dim, "levels": levels, "buckets": buckets,
                  "points": points, **(params or {})}  # fmt: skip
        result = await conn.execute(text(ROLLUP_SQL.format(where=where)), params)
        for i, value, cells in result.tuples():
            add_cells(out.setdefault((i, value), {}), cells)
    return out


def _count(cells: Cells, kind: str) -> int:
    return int(cells[kind][0]) if kind in cells else 0


def _stats(cell: list[Any] | None) -> dict[str, Any]:
    if cell is None or cell[0] <= 0:
        return {"count": 0, "avg_ms": None, **dict.fromkeys(k for k, _ in PERCENTILES)}
    bins = {int(b): v for b, v in cell[2].items() if v[0]}
    return {
        "count": cell[0],
        "avg_ms": cell[1] / cell[0],
        **{k: percentile(bins, p) for k, p in PERCENTILES},
    }


def _summary(cells: Cells, sla_seconds: int) -> dict[str, Any]:
    first = cells.get("first_response")
    within = at_most({int(b): v for b, v in first[2].items()}, sla_seconds * 1000) if first else 0
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
        "service_level": ratio(within, first[0]) if first else None,
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
    by_interval: list[Cells] = [{} for _ in bounds[:-1]]
    for (i, _), cells in (await _cells(engine, tenant, dim, bounds, where, params)).items():
        add_cells(by_interval[i], cells)  # several values only for combined filters
    return [_summary(cells, sla_seconds) for cells in by_interval]


async def groups(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Group stints that ended in the range, per group."""
    by_group = await _cells(engine, tenant, "group", [start, end])
    return [
        {
            "group_id": group,
            "stints": _count(cells, "group_stint"),
            "answered": _count(cells, "group_answered"),
            "abandoned": _count(cells, "group_abandoned"),
            "transferred_out": _count(cells, "group_transferred"),
            "queue_time": _stats(cells.get("group_stint")),
        }
        for (_, group), cells in sorted(by_group.items())
        if _count(cells, "group_stint")
    ]


async def agents(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per agent: stints and handle time at the stint's end, messages and first
    responses at their time, tickets closed while the agent held them."""
    by_agent = await _cells(engine, tenant, "agent", [start, end])
    rows = [
        {
            "agent_id": agent,
            "stints": _count(cells, "agent_stint"),
            "handle_time": _stats(cells.get("agent_stint")),
            "agent_messages": _count(cells, "agent_message"),
            "first_responses": _count(cells, "first_response"),
            "tickets_closed": _count(cells, "closed"),
        }
        for (_, agent), cells in sorted(by_agent.items())
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
