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


SUMMARY_SQL = """
SELECT kind,
       count(*) AS n,
       sum(value_ms) AS total,
       percentile_disc(ARRAY[{pcts}]) WITHIN GROUP (ORDER BY value_ms) AS pct,
       count(*) FILTER (WHERE value_ms <= :sla_ms) AS within_sla
FROM ticket_measures
WHERE tenant_id = :tenant AND at >= :start AND at < :end
  AND (CAST(:channel AS text) IS NULL OR channel = :channel)
  AND (CAST(:group_id AS text) IS NULL OR first_group_id = :group_id)
  AND (CAST(:agent_id AS text) IS NULL OR last_agent_id = :agent_id)
GROUP BY kind
""".format(pcts=", ".join(str(p) for _, p in PERCENTILES))


def _stats(row: Any) -> dict[str, Any]:
    if row is None or row.n == 0 or row.total is None:
        return {"count": 0, "avg_ms": None, **dict.fromkeys(k for k, _ in PERCENTILES)}
    return {
        "count": row.n,
        "avg_ms": float(row.total) / row.n,
        **{k: row.pct[i] for i, (k, _) in enumerate(PERCENTILES)},
    }


async def summary(
    engine: AsyncEngine,
    tenant: str,
    start: datetime,
    end: datetime,
    filters: Filters,
    sla_seconds: int,
) -> dict[str, Any]:
    params = {
        "tenant": tenant,
        "start": start,
        "end": end,
        "sla_ms": sla_seconds * 1000,
        "channel": filters.channel,
        "group_id": filters.group_id,
        "agent_id": filters.agent_id,
    }
    async with engine.connect() as conn:
        rows = {r.kind: r for r in await conn.execute(text(SUMMARY_SQL), params)}

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


async def ticket_doc(engine: AsyncEngine, tenant: str, ticket_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT doc FROM tickets WHERE tenant_id = :t AND ticket_id = :id"),
                {"t": tenant, "id": ticket_id},
            )
        ).first()
    return None if row is None else dict(row.doc)
