"""Report service: the read API of SPEC §3 under `/v1/tenants/{tenant_id}`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.report import models, queries
from services.report.dashboard import dashboard_router
from services.report.deps import (
    AgentSort,
    CalendarDep,
    CursorParam,
    EngineDep,
    FiltersDep,
    FromParam,
    GroupSort,
    LimitParam,
    Range,
    SlaParam,
    Tenant,
    ToParam,
    TzParam,
)
from services.report.drill_api import drill_router
from services.report.models import Granularity
from services.report.paging import page
from services.report.realtime import realtime_view, today_bounds
from services.report.respond import CSV_CONTENT, LIVE_CACHE, FormatParam, answer, cached
from services.report.stats import check_buckets, intervals, parse_date, zone
from services.report.zones import ReportZones
from shared.auth import KeyStore
from shared.aws import Aws, open_aws
from shared.db import make_engine
from shared.events import format_ms, to_ms
from shared.http import (
    ApiError,
    AwsDep,
    GuardMiddleware,
    HttpMetricsMiddleware,
    Readiness,
    SettingsDep,
    install_browser_support,
    install_error_handlers,
    metrics_server,
    service_router,
)
from shared.openapi import Ready, errors, install_openapi
from shared.settings import Settings

router = APIRouter(prefix="/v1/tenants/{tenant_id}")
router_root = APIRouter()


COMMON = errors(400, 401, 403, 304)
REPORT_OK: dict[int | str, dict[str, Any]] = {200: {"content": CSV_CONTENT}}


def paged(
    request: Request,
    rows: list[dict[str, Any]],
    id_field: str,
    sort: str,
    limit: int | None,
    cursor: str | None,
    fmt: FormatParam,
) -> Response:
    shown, next_cursor = page(rows, id_field, sort, limit, cursor)
    body: dict[str, Any] = {"rows": shown}
    headers = None
    if next_cursor is not None:
        body["next_cursor"] = next_cursor
        headers = {"X-Next-Cursor": next_cursor}
    return answer(request, body, shown, fmt, headers=headers)


@router.get(
    "/reports/summary", tags=["reports"], operation_id="getSummary",
    response_model=models.Summary, responses={**REPORT_OK, **COMMON},
)  # fmt: skip
async def summary(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    dates: Range,
    cal: CalendarDep,
    filters: FiltersDep,
    fmt: FormatParam = None,
    sla_seconds: SlaParam = 60,
) -> Response:
    """Totals for the range."""
    [body] = await queries.summaries(engine, tenant, list(dates), filters, sla_seconds, cal)
    return answer(request, body, [body], fmt)


@router.get(
    "/reports/timeseries", tags=["reports"], operation_id="getTimeseries",
    response_model=models.Timeseries, responses={**REPORT_OK, **COMMON},
)  # fmt: skip
async def timeseries(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    from_: FromParam,
    to: ToParam,
    granularity: Annotated[Granularity, Query()],
    cal: CalendarDep,
    filters: FiltersDep,
    fmt: FormatParam = None,
    tz: TzParam = "UTC",
    sla_seconds: SlaParam = 60,
) -> Response:
    """The summary of each 15 or 30 minutes, hour, day, week (from Monday) or month."""
    start, end = parse_date(from_, "from"), parse_date(to, "to")
    labels, bounds = intervals(start, end, zone(tz), granularity.value)
    check_buckets(bounds, cal, granularity.value)
    points = [
        {"start": format_ms(to_ms(label)), **point}
        for label, point in zip(
            labels,
            await queries.summaries(engine, tenant, bounds, filters, sla_seconds, cal),
            strict=True,
        )
    ]
    return answer(request, {"points": points}, points, fmt)


@router.get(
    "/reports/groups", tags=["reports"], operation_id="getGroups",
    response_model=models.Groups, responses={**REPORT_OK, **COMMON},
)  # fmt: skip
async def groups(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    dates: Range,
    cal: CalendarDep,
    sort: GroupSort,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    fmt: FormatParam = None,
) -> Response:
    """Group stints that ended in the range, per group."""
    rows = await queries.groups(engine, tenant, *dates, cal)
    return paged(request, rows, "group_id", sort, limit, cursor, fmt)


@router.get(
    "/reports/agents", tags=["reports"], operation_id="getAgents",
    response_model=models.Agents, responses={**REPORT_OK, **COMMON},
)  # fmt: skip
async def agents(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    dates: Range,
    cal: CalendarDep,
    sort: AgentSort,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    fmt: FormatParam = None,
) -> Response:
    """Per agent: stints, handle time, messages, first responses, tickets closed."""
    rows = await queries.agents(engine, tenant, *dates, cal)
    return paged(request, rows, "agent_id", sort, limit, cursor, fmt)


@router.get(
    "/tickets/{ticket_id:path}", tags=["tickets"], operation_id="getTicket",
    response_model=models.Ticket, responses=errors(400, 401, 403, 404, 304),
)  # fmt: skip
async def ticket(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    ticket_id: Annotated[str, Path(max_length=128)],
) -> Response:
    """A ticket's metrics, stints and events (ids may hold `/`)."""
    # PostgreSQL text cannot hold NUL, so no stored ticket has one in its id.
    doc = None if "\x00" in ticket_id else await queries.ticket_doc(engine, tenant, ticket_id)
    if doc is None:
        raise ApiError(404, "not_found", "no such ticket")
    body = {"tenant_id": tenant, "ticket_id": ticket_id, **doc}
    return cached(request, orjson.dumps(body), "application/json")


@router.get(
    "/realtime", tags=["realtime"], operation_id="getRealtime",
    response_model=models.Realtime, responses={**REPORT_OK, **COMMON},
)  # fmt: skip
async def realtime(
    request: Request,
    tenant: Tenant,
    aws: AwsDep,
    settings: SettingsDep,
    fmt: FormatParam = None,
    tz: TzParam = "UTC",
) -> Response:
    """The tenant's current day, from the real-time store."""
    start, end = today_bounds(datetime.now(UTC), zone(tz))
    body = await realtime_view(aws.dynamodb, settings.realtime_table, tenant, start, end)
    return answer(request, body, [body], fmt, LIVE_CACHE)


@router_root.get(
    "/readyz", tags=["health"], operation_id="getReady",
    response_model=Ready, responses=errors(),
)  # fmt: skip
async def readyz(request: Request) -> Response:
    """Ready when PostgreSQL and DynamoDB answer (checked at most every few s)."""
    readiness: Readiness = request.app.state.readiness
    return await readiness.response()


TAGS = [
    {"name": "reports", "description": "Totals, series, groups and agents of a date range"},
    {"name": "tickets", "description": "One ticket: metrics, stints, events"},
    {"name": "realtime", "description": "The current day, from the real-time store"},
    {"name": "drill-down", "description": "The tickets behind any report number"},
    {"name": "keys", "description": "What the calling key may read"},
    {"name": "health", "description": "Probes (no key needed)"},
]
DESCRIPTION = (
    "The read API of SPEC §3. Every request carries `Authorization: Bearer <api key>`"
    " with the `read` scope for the tenant of the path. Reports answer CSV with"
    " `Accept: text/csv` or `?format=csv`, carry an ETag (answer 304 to `If-None-Match`)"
    " and are gzipped for clients that accept it."
)


def readiness(aws: Aws, engine: AsyncEngine, settings: Settings) -> Readiness:
    async def database() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dynamodb() -> None:
        for table in (settings.keys_table, settings.realtime_table):
            await aws.dynamodb.describe_table(TableName=table)

    return Readiness({"database": database, "dynamodb": dynamodb}, settings.readyz_cache_s)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.require_database_url(), settings.request_timeout_s)
        try:
            async with open_aws(settings, interactive=True) as aws:
                app.state.settings = settings
                app.state.aws = aws
                app.state.engine = engine
                app.state.readiness = readiness(aws, engine, settings)
                app.state.zones = ReportZones(engine, settings.report_calendars())
                # Startup's objects never die: keep them out of every full collection,
                # which otherwise adds ~100 ms to a request now and then.
                gc.collect()
                gc.freeze()
                app.state.keys = KeyStore(aws.dynamodb, settings.keys_table)
                metrics = await metrics_server(aws, settings)
                try:
                    yield
                finally:
                    await app.state.keys.close()
                    if metrics is not None:
                        metrics.close()
        finally:
            await engine.dispose()

    app = FastAPI(title="Telemetry reports", version="1", lifespan=lifespan, openapi_tags=TAGS)
    app.add_middleware(GuardMiddleware, timeout_s=settings.request_timeout_s)
    app.add_middleware(HttpMetricsMiddleware)  # outside the guard: sees its 503s
    install_browser_support(app, settings)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(drill_router)
    app.include_router(dashboard_router)
    app.include_router(router_root)
    app.include_router(service_router)
    install_openapi(app, DESCRIPTION, frozenset({"/healthz", "/readyz"}))
    return app
