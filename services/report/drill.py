"""Drill-down: exactly the tickets behind a number of the summary, timeseries,
groups or agents report.

Every number is a count (or, for `transfers`, a sum) of measurements in the
loader's ledger (`ticket_measures`: one row per measurement, at its effective
time, with the dimensions the rollups are keyed by), written in the same
transaction as the rollups it adds to. Selecting the ledger rows of the same
kind, range and dimensions therefore lists exactly what the report counted:
`total` equals the report's number and each listed ticket says how much of it
is its own.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.report.queries import Filters, snapshot
from shared.events import format_ms, to_ms
from shared.http import ApiError


@dataclass(frozen=True)
class Measure:
    """The ledger rows behind one field: their kind and an extra condition."""

    kind: str
    where: str = "TRUE"
    weight: str = "1"  # what one row adds to the number


WITHIN = "m.value_ms <= :sla_ms"
OVER = "m.value_ms > :sla_ms"

SUMMARY = {
    "tickets_created": Measure("created"),
    "tickets_closed": Measure("closed"),
    "tickets_abandoned": Measure("abandoned"),
    "transfers": Measure("transfers", "m.value_ms > 0", "m.value_ms"),
    "customer_messages": Measure("customer_message"),
    "agent_messages": Measure("agent_message"),
    "bot_messages": Measure("bot_message"),
    "wait_time": Measure("assigned"),
    "first_response_time": Measure("first_response"),
    "service_level": Measure("first_response", WITHIN),
    "handle_time": Measure("handle"),
    "resolution_time": Measure("resolution"),
    "avg_reply_time": Measure("reply"),
}
GROUP = {
    "stints": Measure("group_stint"),
    "queue_time": Measure("group_stint"),
    "answered": Measure("group_stint", "m.answered"),
    "abandoned": Measure("group_stint", "m.abandoned"),
    "transferred_out": Measure("group_stint", "m.transferred_out"),
}
AGENT = {
    "stints": Measure("agent_stint"),
    "handle_time": Measure("agent_stint"),
    "agent_messages": Measure("agent_message"),
    "first_responses": Measure("first_response"),
    "tickets_closed": Measure("closed"),
}
# The real-time view's "now" numbers: tickets waiting (by group) or held (by agent).
NOW = {"waiting": Measure("waiting"), "assigned": Measure("assigned")}
FIELDS = {"summary": SUMMARY, "timeseries": SUMMARY, "groups": GROUP, "agents": AGENT,
          "now": NOW}  # fmt: skip
ALL_FIELDS = tuple(sorted({f for fields in FIELDS.values() for f in fields}))

PAGE_SQL = """
WITH picked AS (
    SELECT m.ticket_id, sum({weight}) AS n,
           array_agg(m.at ORDER BY m.at) AS ats, array_agg(m.value_ms ORDER BY m.at) AS values
    FROM ticket_measures AS m
    WHERE m.tenant_id = :tenant AND m.kind = :kind AND m.at >= :lo AND m.at < :hi
      AND {where} AND m.ticket_id > :after
    GROUP BY m.ticket_id
    ORDER BY m.ticket_id
    LIMIT :limit
)
SELECT p.ticket_id, p.n, p.ats, p.values, t.doc -> 'metrics' AS metrics
FROM picked AS p JOIN tickets AS t ON t.tenant_id = :tenant AND t.ticket_id = p.ticket_id
ORDER BY p.ticket_id
"""
TOTAL_SQL = """
SELECT coalesce(sum({weight}), 0) AS total, count(DISTINCT m.ticket_id) AS tickets
FROM ticket_measures AS m
WHERE m.tenant_id = :tenant AND m.kind = :kind AND m.at >= :lo AND m.at < :hi AND {where}
"""


@dataclass(frozen=True)
class Selection:
    """Which number: the report and field, the interval, and the row or filters."""

    report: str
    field: str
    lo: datetime
    hi: datetime
    filters: Filters
    sla_seconds: int = 60
    sla: str | None = None  # within or over, on first_response_time


def conditions(sel: Selection) -> tuple[Measure, str, dict[str, Any]]:
    """(measure, SQL condition, parameters) of the ledger rows behind `sel`."""
    fields = FIELDS[sel.report]
    if sel.field not in fields:
        raise ApiError(400, "invalid_field", f"{sel.report} fields: {', '.join(fields)}")
    measure = fields[sel.field]
    parts = [measure.where]
    params: dict[str, Any] = {"sla_ms": sel.sla_seconds * 1000}
    if sel.sla is not None:
        if sel.field != "first_response_time":
            raise ApiError(400, "invalid_field", "sla goes with field=first_response_time")
        parts.append(WITHIN if sel.sla == "within" else OVER)
    f = sel.filters
    if sel.report in ("summary", "timeseries"):
        for column, value in (("channel", f.channel), ("first_group_id", f.group_id),
                              ("last_agent_id", f.agent_id)):  # fmt: skip
            if value is not None:
                parts.append(f"m.{column} = :{column}")
                params[column] = value
    else:
        groups = sel.report == "groups"
        column, value = ("group_id", f.group_id) if groups else ("agent_id", f.agent_id)
        if value is None:
            raise ApiError(400, "missing_row", f"{sel.report} drill-down needs {column}")
        parts.append(f"m.{column} = :row")
        params["row"] = value
    return measure, " AND ".join(parts), params


def encode_cursor(ticket_id: str) -> str:
    return base64.urlsafe_b64encode(ticket_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "cursor is not a drill-down cursor") from exc


async def drill(
    engine: AsyncEngine, tenant: str, sel: Selection, limit: int, cursor: str | None
) -> dict[str, Any]:
    """One page of the tickets behind the number, by ticket id, and the totals."""
    measure, where, params = conditions(sel)
    params.update(tenant=tenant, kind=measure.kind, lo=sel.lo, hi=sel.hi)
    after = "" if cursor is None else decode_cursor(cursor)
    async with snapshot(engine) as conn:  # total and page from one snapshot
        total_sql = TOTAL_SQL.format(weight=measure.weight, where=where)
        total = (await conn.execute(text(total_sql), params)).one()
        page_sql = PAGE_SQL.format(weight=measure.weight, where=where)
        paging = {"after": after, "limit": limit + 1}
        rows = (await conn.execute(text(page_sql), {**params, **paging})).all()
    more = len(rows) > limit
    rows = rows[:limit]
    body: dict[str, Any] = {
        "report": sel.report,
        "field": sel.field,
        "start": format_ms(to_ms(sel.lo)),
        "end": format_ms(to_ms(sel.hi)),
        "total": int(total.total),
        "tickets": int(total.tickets),
        "rows": [
            {
                "ticket_id": r.ticket_id,
                "count": int(r.n),
                "measurements": [
                    {"at": format_ms(to_ms(at)), "value_ms": v}
                    for at, v in zip(r.ats, r.values, strict=True)
                ],
                "metrics": r.metrics,
            }
            for r in rows
        ],
    }
    if more:
        body["next_cursor"] = encode_cursor(rows[-1].ticket_id)
    return body


NO_ROW = str(None)  # the key of `/realtime`'s by_group (by_agent) for no group (agent)
NOW_SQL = """
SELECT t.ticket_id, t.doc -> 'metrics' AS metrics
FROM tickets AS t
WHERE t.tenant_id = :tenant AND t.status = :status AND {where} AND t.ticket_id > :after
ORDER BY t.ticket_id
LIMIT :limit
"""
NOW_TOTAL_SQL = """
SELECT count(*) FROM tickets AS t WHERE t.tenant_id = :tenant AND t.status = :status AND {where}
"""


async def drill_now(
    engine: AsyncEngine,
    tenant: str,
    field: str,
    row: str | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The tickets waiting now (in `row`'s queue) or held now (by agent `row`):
    the numbers of `/realtime`, from the ticket rows (a partial index keeps
    this to the open tickets)."""
    if field not in NOW:
        raise ApiError(400, "invalid_field", f"now fields: {', '.join(NOW)}")
    column = "last_group_id" if field == "waiting" else "last_agent_id"
    where = "TRUE" if row is None else f"t.doc -> 'metrics' ->> '{column}' = :row"
    if row == NO_ROW:  # `/realtime` counts tickets with no group (agent) under "None"
        where = f"({where} OR t.doc -> 'metrics' ->> '{column}' IS NULL)"
    params = {"tenant": tenant, "status": field, "row": row}
    after = "" if cursor is None else decode_cursor(cursor)
    async with snapshot(engine) as conn:  # total and page from one snapshot
        total = (await conn.execute(text(NOW_TOTAL_SQL.format(where=where)), params)).scalar_one()
        paging = {"after": after, "limit": limit + 1}
        rows = (await conn.execute(text(NOW_SQL.format(where=where)), {**params, **paging})).all()
    stamp = format_ms(to_ms(now))
    body: dict[str, Any] = {
        "report": "now", "field": field, "start": stamp, "end": stamp,
        "total": int(total), "tickets": int(total),
        "rows": [{"ticket_id": r.ticket_id, "count": 1, "measurements": [], "metrics": r.metrics}
                 for r in rows[:limit]],
    }  # fmt: skip
    if len(rows) > limit:
        body["next_cursor"] = encode_cursor(rows[limit - 1].ticket_id)
    return body
