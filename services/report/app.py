"""Report service: the read API of SPEC §3 under `/v1/tenants/{tenant_id}`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.report import queries
from services.report.realtime import realtime_view, today_bounds
from services.report.stats import day_range, intervals, parse_date, to_csv, zone
from services.report.zones import ReportZones
from shared.auth import KeyStore
from shared.aws import Aws, open_aws
from shared.db import make_engine
from shared.events import TENANT_RE, format_ms, to_ms
from shared.http import (
    ApiError,
    ApiKeyDep,
    AwsDep,
    GuardMiddleware,
    Readiness,
    SettingsDep,
    install_error_handlers,
    json_response,
    service_router,
)
from shared.settings import Settings
from shared.timebuckets import Calendar


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def readable_tenant(api_key: ApiKeyDep, tenant_id: Annotated[str, Path()]) -> str:
    """The tenant of the path, once the key may read it; the same 403 otherwise."""
    api_key.require(tenant_id, "read")
    if not TENANT_RE.fullmatch(tenant_id):
        raise ApiError(404, "not_found", "no such tenant")
    return tenant_id


async def report_calendar(request: Request, tz: TzParam = "UTC") -> Calendar | None:
    """The report zone `tz` is, if it is one: its days, weeks and months are stored."""
    zones: ReportZones = request.app.state.zones
    return (await zones.current()).get(tz)


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
Tenant = Annotated[str, Depends(readable_tenant)]
FromParam = Annotated[str, Query(alias="from", description="YYYY-MM-DD, inclusive, in tz")]
ToParam = Annotated[str, Query(description="YYYY-MM-DD, inclusive, in tz")]
TzParam = Annotated[str, Query(description="IANA time zone")]
SlaParam = Annotated[int, Query(ge=1, le=86_400)]

router = APIRouter(prefix="/v1/tenants/{tenant_id}")
router_root = APIRouter()


def date_range(from_: FromParam, to: ToParam, tz: TzParam = "UTC") -> tuple[datetime, datetime]:
    """`from`..`to` inclusive, in `tz`, as UTC instants."""
    return day_range(parse_date(from_, "from"), parse_date(to, "to"), zone(tz))


Range = Annotated[tuple[datetime, datetime], Depends(date_range)]


def report_filters(
    group_id: str | None = None, agent_id: str | None = None, channel: str | None = None
) -> queries.Filters:
    """The optional filters; ids are strings of at most 128 characters (SPEC §1)."""
    for name, value in (("group_id", group_id), ("agent_id", agent_id), ("channel", channel)):
        if value is not None and (len(value) > 128 or "\x00" in value):
            raise ApiError(400, "invalid_filter", f"{name} is not a valid id")
    return queries.Filters(group_id=group_id, agent_id=agent_id, channel=channel)


FiltersDep = Annotated[queries.Filters, Depends(report_filters)]
CalendarDep = Annotated[Calendar | None, Depends(report_calendar)]


def answer(request: Request, body: dict[str, Any], rows: list[dict[str, Any]]) -> Response:
    """JSON by default; CSV of `rows` when the client asks for text/csv."""
    if "text/csv" in request.headers.get("accept", ""):
        return PlainTextResponse(to_csv(rows), media_type="text/csv")
    return json_response(body)


@router.get("/reports/summary")
async def summary(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    dates: Range,
    cal: CalendarDep,
    filters: FiltersDep,
    sla_seconds: SlaParam = 60,
) -> Response:
    [body] = await queries.summaries(engine, tenant, list(dates), filters, sla_seconds, cal)
    return answer(request, body, [body])


@router.get("/reports/timeseries")
async def timeseries(
    request: Request,
    tenant: Tenant,
    engine: EngineDep,
    from_: FromParam,
    to: ToParam,
    granularity: Annotated[str, Query(description="hour, day, week or month")],
    cal: CalendarDep,
    filters: FiltersDep,
    tz: TzParam = "UTC",
    sla_seconds: SlaParam = 60,
) -> Response:
    start, end = parse_date(from_, "from"), parse_date(to, "to")
    labels, bounds = intervals(start, end, zone(tz), granularity)
    points = [
        {"start": format_ms(to_ms(label)), **point}
        for label, point in zip(
            labels,
            await queries.summaries(engine, tenant, bounds, filters, sla_seconds, cal),
            strict=True,
        )
    ]
    return answer(request, {"points": points}, points)


@router.get("/reports/groups")
async def groups(
    request: Request, tenant: Tenant, engine: EngineDep, dates: Range, cal: CalendarDep
) -> Response:
    rows = await queries.groups(engine, tenant, *dates, cal)
    return answer(request, {"rows": rows}, rows)


@router.get("/reports/agents")
async def agents(
    request: Request, tenant: Tenant, engine: EngineDep, dates: Range, cal: CalendarDep
) -> Response:
    rows = await queries.agents(engine, tenant, *dates, cal)
    return answer(request, {"rows": rows}, rows)


@router.get("/tickets/{ticket_id:path}")  # ids may hold "/"
async def ticket(
    tenant: Tenant, engine: EngineDep, ticket_id: Annotated[str, Path(max_length=128)]
) -> Response:
    # PostgreSQL text cannot hold NUL, so no stored ticket has one in its id.
    doc = None if "\x00" in ticket_id else await queries.ticket_doc(engine, tenant, ticket_id)
    if doc is None:
        raise ApiError(404, "not_found", "no such ticket")
    return json_response({"tenant_id": tenant, "ticket_id": ticket_id, **doc})


@router.get("/realtime")
async def realtime(
    request: Request, tenant: Tenant, aws: AwsDep, settings: SettingsDep, tz: TzParam = "UTC"
) -> Response:
    start, end = today_bounds(datetime.now(UTC), zone(tz))
    body = await realtime_view(aws.dynamodb, settings.realtime_table, tenant, start, end)
    return answer(request, body, [body])


@router_root.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when PostgreSQL and DynamoDB answer (checked at most every few s)."""
    readiness: Readiness = request.app.state.readiness
    return await readiness.response()


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
                yield
        finally:
            await engine.dispose()

    app = FastAPI(title="Telemetry reports", version="1", lifespan=lifespan)
    app.add_middleware(GuardMiddleware, timeout_s=settings.request_timeout_s)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(router_root)
    app.include_router(service_router)
    return app
