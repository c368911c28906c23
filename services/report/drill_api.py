"""`GET /v1/tenants/{tenant_id}/drill`: the tickets behind any number of the
summary, timeseries, groups or agents report (services/report/drill.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.report import models
from services.report.deps import (
    CursorParam,
    EngineDep,
    FiltersDep,
    FromParam,
    SlaParam,
    Tenant,
    ToParam,
    TzParam,
)
from services.report.drill import ALL_FIELDS, Selection, drill, drill_now
from services.report.models import DrillReport, Granularity
from services.report.respond import CSV_CONTENT, LIVE_CACHE, FormatParam, answer
from services.report.stats import day_range, intervals, parse_date, zone
from shared.events import format_ms, to_ms
from shared.http import ApiError
from shared.openapi import errors

drill_router = APIRouter(prefix="/v1/tenants/{tenant_id}")
# A drill-down reads every ledger row of its kind in the range (its cost grows
# with the range, not with the page), so one covers at most a quarter.
MAX_DAYS = 92
RESPONSES = errors(400, 401, 403, 304)
RESPONSES[400] = {**RESPONSES[400], "description": "invalid parameters, or a range of more"
                  f" than {MAX_DAYS} days (`range_too_long`)"}  # fmt: skip


class Sla(StrEnum):
    within = "within"
    over = "over"


FieldParam = Annotated[
    str,
    Query(
        description="the report's field: a count (`tickets_abandoned`, `stints`), a stats"
        " object (its `count`), or `service_level` (first responses within sla_seconds)",
        json_schema_extra={"enum": list(ALL_FIELDS)},
    ),
]


@drill_router.get(
    "/drill", tags=["drill-down"], operation_id="getDrill", response_model=models.Drill,
    responses={200: {"content": CSV_CONTENT}, **RESPONSES},
)  # fmt: skip
async def drill_down(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    report: DrillReport,
    field: FieldParam,
    from_: FromParam,
    to: ToParam,
    filters: FiltersDep,
    tz: TzParam = "UTC",
    granularity: Annotated[Granularity | None, Query(description="timeseries only")] = None,
    start: Annotated[str | None, Query(description="timeseries: the point's `start`")] = None,
    sla_seconds: SlaParam = 60,
    sla: Annotated[Sla | None, Query(description="first responses within or over")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: CursorParam = None,
    fmt: FormatParam = None,
) -> Response:
    """Exactly the tickets behind a number: the same range, zone and filters (for
    groups and agents, `group_id` or `agent_id` names the row), paged by ticket id,
    each with its share of the number and its metrics. `report=now` lists the
    tickets waiting (`field=waiting`, in queue `group_id`) or held (`assigned`,
    by `agent_id`) now, as `/realtime` counts them. A range covers at most
    92 days (a timeseries point, at most a month, may lie in a longer series)."""
    if report is DrillReport.now:
        row = filters.group_id if field == "waiting" else filters.agent_id
        now = await drill_now(engine, tenant, field, row, limit, cursor, datetime.now(UTC))
        return answer(request, now, now["rows"], fmt, LIVE_CACHE)
    first, last = parse_date(from_, "from"), parse_date(to, "to")
    lo, hi = day_range(first, last, zone(tz))
    if report is not DrillReport.timeseries and (last - first).days >= MAX_DAYS:
        raise ApiError(400, "range_too_long", f"a drill-down covers at most {MAX_DAYS} days;"
                       " ask for a shorter range or drill a timeseries point")  # fmt: skip
    if report is DrillReport.timeseries:
        if granularity is None:
            raise ApiError(400, "invalid_point", "timeseries needs granularity and start")
        labels, bounds = intervals(first, last, zone(tz), granularity.value)
        starts = [format_ms(to_ms(label)) for label in labels]
        if start not in starts:
            raise ApiError(400, "invalid_point", "start is not the start of a point")
        i = starts.index(start)
        lo, hi = bounds[i], bounds[i + 1]
    selection = Selection(
        report.value, field, lo, hi, filters, sla_seconds, None if sla is None else sla.value
    )
    body = await drill(engine, tenant, selection, limit, cursor)
    rows = [{k: v for k, v in r.items() if k != "measurements"} for r in body["rows"]]
    return answer(request, body, rows, fmt)
