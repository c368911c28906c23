"""The report service's request dependencies: the readable tenant, the range,
zone, filters and paging parameters that every report endpoint shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.report import queries
from services.report.models import Channel
from services.report.paging import AGENT_SORTS, GROUP_SORTS, MAX_LIMIT, sort_values
from services.report.stats import day_range, parse_date, zone
from services.report.zones import ReportZones
from shared.events import TENANT_RE
from shared.http import ApiError, ApiKeyDep
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


def date_range(from_: FromParam, to: ToParam, tz: TzParam = "UTC") -> tuple[datetime, datetime]:
    """`from`..`to` inclusive, in `tz`, as UTC instants."""
    return day_range(parse_date(from_, "from"), parse_date(to, "to"), zone(tz))


Range = Annotated[tuple[datetime, datetime], Depends(date_range)]


def report_filters(
    group_id: str | None = None, agent_id: str | None = None, channel: Channel | None = None
) -> queries.Filters:
    """The optional filters; ids are strings of at most 128 characters (SPEC §1)."""
    for name, value in (("group_id", group_id), ("agent_id", agent_id), ("channel", channel)):
        if value is not None and (len(value) > 128 or "\x00" in value):
            raise ApiError(400, "invalid_filter", f"{name} is not a valid id")
    return queries.Filters(group_id=group_id, agent_id=agent_id, channel=channel)


FiltersDep = Annotated[queries.Filters, Depends(report_filters)]
CalendarDep = Annotated[Calendar | None, Depends(report_calendar)]


def _sort_param(fields: tuple[str, ...], default: str) -> Any:
    """A `sort` parameter, documented as an enum of its values."""
    allowed = sort_values(fields)
    doc = Query(description="a field; `-field` for descending", json_schema_extra={"enum": allowed})

    def sort_param(sort: Annotated[str, doc] = default) -> str:
        if sort not in allowed:
            raise ApiError(400, "invalid_sort", f"sort must be one of {', '.join(allowed)}")
        return sort

    sort_param.__annotations__["sort"] = Annotated[str, doc]  # resolved now, not by name
    return sort_param


GroupSort = Annotated[str, Depends(_sort_param(GROUP_SORTS, "group_id"))]
AgentSort = Annotated[str, Depends(_sort_param(AGENT_SORTS, "agent_id"))]
LimitParam = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="rows per page")]
CursorParam = Annotated[str | None, Query(max_length=2048, description="next_cursor of a page")]
