"""SQL behind the reports: aggregates over per-ticket measurements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.report.stats import PERCENTILES, ratio

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


FILTERS_SQL = """
  AND (CAST(:channel AS text) IS NULL OR channel = :channel)
  AND (CAST(:group_id AS text) IS NULL OR first_group_id = :group_id)
  AND (CAST(:agent_id AS text) IS NULL OR last_agent_id = :agent_id)
"""
PCTS_SQL = "percentile_disc(ARRAY[{}]) WITHIN GROUP (ORDER BY value_ms) AS pct".format(
    ", ".join(str(p) for _, p in PERCENTILES)
)

# One row per (interval, kind); `bounds` are the interval edges, sorted.
AGGREGATE_SQL = f"""
SELECT width_bucket(at, CAST(:bounds AS timestamptz[])) AS i,
       kind,
       count(*) AS n,
       sum(value_ms) AS total,
       {PCTS_SQL},
       count(*) FILTER (WHERE value_ms <= :sla_ms) AS within_sla
FROM ticket_measures
WHERE tenant_id = :tenant AND at >= :start AND at < :end {FILTERS_SQL}
GROUP BY i, kind
"""

GROUPS_SQL = f"""
SELECT group_id,
       count(*) AS n,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE abandoned) AS abandoned,
       count(*) FILTER (WHERE transferred_out) AS transferred_out,
       sum(value_ms) AS total,
       {PCTS_SQL}
FROM ticket_measures
WHERE tenant_id = :tenant AND kind = 'group_stint' AND at >= :start AND at < :end
GROUP BY group_id
"""

AGENTS_SQL = f"""
SELECT agent_id, kind, count(*) AS n, sum(value_ms) AS total, {PCTS_SQL}
FROM ticket_measures
WHERE tenant_id = :tenant AND at >= :start AND at < :end AND agent_id IS NOT NULL
  AND kind IN ('agent_stint', 'agent_message', 'first_response', 'closed')
GROUP BY agent_id, kind
"""


def _stats(row: Any) -> dict[str, Any]:
    if row is None or row.n == 0 or row.total is None:
        return {"count": 0, "avg_ms": None, **dict.fromkeys(k for k, _ in PERCENTILES)}
    return {
        "count": row.n,
        "avg_ms": float(row.total) / row.n,
        **{k: row.pct[i] for i, (k, _) in enumerate(PERCENTILES)},
    }


def _summary(rows: dict[str, Any], sla_seconds: int) -> dict[str, Any]:
    def count(kind: str) -> int:
        return int(rows[kind].n) if kind in rows else 0

    first = rows.get("first_response")
    return {
        "tickets_created": count("created"),
        "tickets_closed": count("closed"),
        "tickets_abandoned": count("abandoned"),
        "abandon_rate": ratio(count("abandoned"), count("closed")),
        "transfers": int(rows["transfers"].total) if "transfers" in rows else 0,
        "customer_messages": count("customer_message"),
        "agent_messages": count("agent_message"),
        "bot_messages": count("bot_message"),
        "sla_seconds": sla_seconds,
        "service_level": ratio(int(first.within_sla), int(first.n)) if first else None,
        **{name: _stats(rows.get(kind)) for name, kind in STATS_FIELDS.items()},
    }


async def summaries(
    engine: AsyncEngine,
    tenant: str,
    bounds: list[datetime],
    filters: Filters,
    sla_seconds: int,
) -> list[dict[str, Any]]:
    """The summary of each interval [bounds[i], bounds[i + 1])."""
    params = {
        "tenant": tenant,
        "bounds": bounds,
        "start": bounds[0],
        "end": bounds[-1],
        "sla_ms": sla_seconds * 1000,
        "channel": filters.channel,
        "group_id": filters.group_id,
        "agent_id": filters.agent_id,
    }
    by_interval: list[dict[str, Any]] = [{} for _ in bounds[:-1]]
    async with engine.connect() as conn:
        for row in await conn.execute(text(AGGREGATE_SQL), params):
            by_interval[row.i - 1][row.kind] = row
    return [_summary(rows, sla_seconds) for rows in by_interval]


async def groups(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Group stints that ended in the range, per group."""
    params = {"tenant": tenant, "start": start, "end": end}
    async with engine.connect() as conn:
        rows = list(await conn.execute(text(GROUPS_SQL), params))
    return [
        {
            "group_id": r.group_id,
            "stints": r.n,
            "answered": r.answered,
            "abandoned": r.abandoned,
            "transferred_out": r.transferred_out,
            "queue_time": _stats(r),
        }
        for r in sorted(rows, key=lambda r: str(r.group_id))
    ]


async def agents(
    engine: AsyncEngine, tenant: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per agent: stints and handle time at the stint's end, messages and first
    responses at their time, tickets closed while the agent held them."""
    params = {"tenant": tenant, "start": start, "end": end}
    by_agent: dict[str, dict[str, Any]] = {}
    async with engine.connect() as conn:
        for r in await conn.execute(text(AGENTS_SQL), params):
            by_agent.setdefault(r.agent_id, {})[r.kind] = r

    def count(rows: dict[str, Any], kind: str) -> int:
        return int(rows[kind].n) if kind in rows else 0

    return [
        {
            "agent_id": agent,
            "stints": count(rows, "agent_stint"),
            "handle_time": _stats(rows.get("agent_stint")),
            "agent_messages": count(rows, "agent_message"),
            "first_responses": count(rows, "first_response"),
            "tickets_closed": count(rows, "closed"),
        }
        for agent, rows in sorted(by_agent.items())
    ]


async def ticket_doc(engine: AsyncEngine, tenant: str, ticket_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT doc FROM tickets WHERE tenant_id = :t AND ticket_id = :id"),
                {"t": tenant, "id": ticket_id},
            )
        ).first()
    return None if row is None else dict(row.doc)
