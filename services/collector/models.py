"""The collector's request and answers as pydantic models, for its OpenAPI
document only: the body is parsed from raw bytes (shared/events.py does the
validation, with limits a model cannot express), so these models describe the
contract of SPEC §1 without being in the request's path."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Id = Annotated[str, Field(min_length=1, max_length=128)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: Id = Field(description="unique within the tenant; a re-sent id is deduplicated")
    tenant_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="the key's tenant")
    ticket_id: Id
    occurred_at: str = Field(
        description="RFC 3339 with offset, e.g. 2026-11-27T03:15:41.123Z; ms kept",
        json_schema_extra={"format": "date-time"},
    )
    attributes: dict[str, Any] | None = Field(
        default=None, description="free object, at most 4 KiB serialized; kept, not interpreted"
    )


class TicketCreated(_Event):
    type: Literal["ticket_created"]
    channel: Literal["whatsapp", "webchat", "email", "other"]
    group_id: Id = Field(description="the group the ticket is routed to")


class TicketAssigned(_Event):
    type: Literal["ticket_assigned"]
    agent_id: Id
    group_id: Id | None = Field(default=None, description="informational; does not move it")


class TicketTransferred(_Event):
    """At least one of `to_group_id` and `to_agent_id`."""

    type: Literal["ticket_transferred"]
    to_group_id: Id | None = None
    to_agent_id: Id | None = None


class MessageSent(_Event):
    type: Literal["message_sent"]
    sender: Literal["customer", "agent", "bot"]
    agent_id: Id | None = Field(default=None, description="required when sender is agent")


class TicketClosed(_Event):
    type: Literal["ticket_closed"]
    closed_by: Literal["agent", "customer", "system"] | None = None


Event = Annotated[
    TicketCreated | TicketAssigned | TicketTransferred | MessageSent | TicketClosed,
    Field(discriminator="type"),
]
EVENTS = TypeAdapter(list[Event])


def batch_schema() -> dict[str, Any]:
    """The JSON schema of a body (1-500 events) and the event schemas it refers to,
    with references into `#/components/schemas/`."""
    schema = EVENTS.json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.pop("$defs")
    schema.update(minItems=1, maxItems=500, title="EventBatch")
    return {"EventBatch": schema, **defs}


class Rejected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = Field(description="position in the batch")
    event_id: str | None
    code: str = Field(description="e.g. missing_field, unknown_field, in_future, tenant_mismatch")
    message: str


class Accepted(BaseModel):
    """Accepted events are durably in the stream; rejected ones are listed."""

    model_config = ConfigDict(extra="forbid")
    accepted: int
    rejected: list[Rejected]
