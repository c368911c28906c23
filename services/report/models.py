"""The report service's answers as pydantic models: the OpenAPI schemas that
clients are generated from. Handlers still answer with orjson (speed); the
tests validate real answers against these models, which forbid extra fields."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["whatsapp", "webchat", "email", "other"]
Status = Literal["partial", "closed", "assigned", "waiting"]


class Granularity(StrEnum):
    quarter_hour = "15m"
    half_hour = "30m"
    hour = "hour"
    day = "day"
    week = "week"
    month = "month"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stats(Strict):
    """Durations in ms; `count` 0 and nulls for an empty set."""

    count: int = Field(ge=0)
    avg_ms: float | None
    p50_ms: int | None
    p90_ms: int | None
    p95_ms: int | None


class Summary(Strict):
    tickets_created: int
    tickets_closed: int
    tickets_abandoned: int
    abandon_rate: float | None = Field(ge=0, le=1)
    transfers: int
    customer_messages: int
    agent_messages: int
    bot_messages: int
    sla_seconds: int
    service_level: float | None = Field(ge=0, le=1)
    wait_time: Stats
    first_response_time: Stats
    handle_time: Stats
    resolution_time: Stats
    avg_reply_time: Stats


class Point(Summary):
    start: str = Field(description="the interval's natural start, RFC 3339 UTC")


class Timeseries(Strict):
    points: list[Point]


class GroupRow(Strict):
    group_id: str
    stints: int
    answered: int
    abandoned: int
    transferred_out: int
    queue_time: Stats


class AgentRow(Strict):
    agent_id: str
    stints: int
    handle_time: Stats
    agent_messages: int
    first_responses: int
    tickets_closed: int


class Page(Strict):
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; absent on the last"
    )


class Groups(Page):
    rows: list[GroupRow]


class Agents(Page):
    rows: list[AgentRow]


class Metrics(Strict):
    """Every field of SPEC §2."""

    created_at: str | None
    closed_at: str | None
    status: Status
    channel: Channel | None
    first_group_id: str | None
    last_group_id: str | None
    last_agent_id: str | None
    first_assigned_at: str | None
    wait_time_ms: int | None
    abandoned: bool | None
    abandon_time_ms: int | None
    queue_time_ms: int | None
    first_response_time_ms: int | None
    handle_time_ms: int | None
    resolution_time_ms: int | None
    transfers: int
    customer_messages: int
    agent_messages: int
    bot_messages: int
    avg_reply_time_ms: float | None
    replies: int | None
    agents_involved: int | None


class GroupStint(Strict):
    group_id: str
    started_at: str
    ended_at: str | None
    queue_time_ms: int
    answered: bool
    abandoned: bool
    transferred_out: bool


class AgentStint(Strict):
    agent_id: str
    started_at: str
    ended_at: str | None
    handle_time_ms: int
    messages: int


class Ticket(Strict):
    tenant_id: str
    ticket_id: str
    metrics: Metrics
    group_stints: list[GroupStint]
    agent_stints: list[AgentStint]
    events: list[dict[str, Any]] = Field(description="the distinct events, in evaluation order")


class WaitingNow(Strict):
    total: int
    by_group: dict[str, int]


class AssignedNow(Strict):
    total: int
    by_agent: dict[str, int]


class Realtime(Strict):
    tickets_created: int
    tickets_closed: int
    tickets_abandoned: int
    waiting_now: WaitingNow
    assigned_now: AssignedNow
    oldest_waiting_since: str | None
    wait_time: Stats
    first_response_time: Stats


class DrillReport(StrEnum):
    summary = "summary"
    timeseries = "timeseries"
    groups = "groups"
    agents = "agents"
    now = "now"


class Measurement(Strict):
    at: str = Field(description="effective time at which the report counted it")
    value_ms: int | None = Field(description="its duration, or the transfers of a close")


class DrillRow(Strict):
    ticket_id: str
    count: int = Field(description="how much of the number is this ticket's")
    measurements: list[Measurement]
    metrics: Metrics


class Drill(Page):
    """The tickets behind one number, by ticket id. `total` is the number itself
    (sum of `count` over every page); `tickets` how many tickets make it up."""

    report: DrillReport
    field: str
    start: str
    end: str
    total: int
    tickets: int
    rows: list[DrillRow]
