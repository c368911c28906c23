"""The event contract of SPEC §1: validation, normalisation and canonical form.

Validation is a pure function of the JSON object and the server clock, so the
collector and the filter apply exactly the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
import rfc8785

EVENT_TYPES: Final = (
    "ticket_created",
    "ticket_transferred",
    "ticket_assigned",
    "message_sent",
    "ticket_closed",
)
# Rank used to break ties between events of the same effective time.
TYPE_RANK: Final = {t: i for i, t in enumerate(EVENT_TYPES)}

TENANT_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # always fullmatch
TIMESTAMP_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,
)
MAX_ID_LEN: Final = 128
MAX_ATTRIBUTES_BYTES: Final = 4096
MAX_FUTURE: Final = timedelta(minutes=5)
# The earliest instant an event may carry (docs/metrics.md): nothing real is older,
# and every zone's offset is a whole quarter hour from then on, which the rollups need.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
# C0, DEL and C1 controls: PostgreSQL text cannot hold NUL, and no id needs any of them.
CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Fields whose values are identifiers (stored as text, used as keys and dimensions).
ID_FIELDS: Final = ("event_id", "ticket_id", "group_id", "agent_id", "to_group_id", "to_agent_id")

CHANNELS: Final = frozenset({"whatsapp", "webchat", "email", "other"})
SENDERS: Final = frozenset({"customer", "agent", "bot"})
CLOSERS: Final = frozenset({"agent", "customer", "system"})

COMMON_FIELDS: Final = frozenset(
    {"event_id", "tenant_id", "ticket_id", "type", "occurred_at", "attributes"}
)
# Fields each type may carry beyond the common ones.
TYPE_FIELDS: Final = {
    "ticket_created": frozenset({"channel", "group_id"}),
    "ticket_assigned": frozenset({"agent_id", "group_id"}),
    "ticket_transferred": frozenset({"to_group_id", "to_agent_id"}),
    "message_sent": frozenset({"sender", "agent_id"}),
    "ticket_closed": frozenset({"closed_by"}),
}
ALL_FIELDS: Final = COMMON_FIELDS.union(*TYPE_FIELDS.values())


class InvalidEventError(ValueError):
    """An event that breaks the contract; `code` is what the API reports."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    event_id: str | None
    code: str
    message: str


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 with an explicit offset, truncated to the millisecond, in UTC."""
    m = TIMESTAMP_RE.fullmatch(value)
    if not m:
        raise InvalidEventError("invalid_timestamp", "occurred_at is not RFC 3339 with offset")
    frac = (m.group(7) or ".0")[1:]
    millis = int((frac + "00")[:3])
    offset = m.group(8).upper()
    base = f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}"
    try:
        dt = datetime.fromisoformat(base + ("+00:00" if offset == "Z" else offset))
        return (dt + timedelta(milliseconds=millis)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidEventError("invalid_timestamp", f"occurred_at: {exc}") from exc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_ms(epoch_ms: int) -> str:
    """The one timestamp format of every answer: UTC with milliseconds."""
    dt = _EPOCH + timedelta(milliseconds=epoch_ms)  # fields, not strftime: a series formats
    return (  # thousands of these
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{epoch_ms % 1000:03d}Z"
    )


def to_ms(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def event_ms(event: dict[str, Any]) -> int:
    return to_ms(datetime.fromisoformat(event["occurred_at"]))


def evaluation_order(
    events: list[dict[str, Any]],
) -> tuple[int | None, list[tuple[int, int, str, dict[str, Any]]]]:
    """(creation time, (effective time, type rank, event_id, event) in evaluation
    order) of a ticket's distinct events (SPEC §1): the enricher walks them so,
    and the ticket endpoint lists them so."""
    stamped = [(event_ms(e), e) for e in events]
    creations = [t for t, e in stamped if e["type"] == "ticket_created"]
    created_at = min(creations) if creations else None
    floor = created_at if created_at is not None else -(2**62)
    return created_at, sorted(
        ((max(t, floor), TYPE_RANK[e["type"]], e["event_id"], e) for t, e in stamped),
        key=lambda item: (item[0], item[1], item[2]),
    )


def _string(event: dict[str, Any], name: str, *, required: bool, max_len: int = MAX_ID_LEN) -> None:
    if name not in event:
        if required:
            raise InvalidEventError("missing_field", f"{name} is required")
        return
    value = event[name]
    if not isinstance(value, str):
        raise InvalidEventError("wrong_type", f"{name} must be a string")
    if not 1 <= len(value) <= max_len:
        raise InvalidEventError("invalid_length", f"{name} must have 1 to {max_len} characters")
    if name in ID_FIELDS and CONTROL_RE.search(value):
        raise InvalidEventError("invalid_value", f"{name} must not hold control characters")


def _enum(event: dict[str, Any], name: str, allowed: frozenset[str], *, required: bool) -> None:
    _string(event, name, required=required)
    if name in event and event[name] not in allowed:
        raise InvalidEventError("invalid_value", f"{name} must be one of {sorted(allowed)}")


def validate(raw: Any, now: datetime, max_future: timedelta = MAX_FUTURE) -> dict[str, Any]:
    """Return the normalised event or raise InvalidEventError.

    Normalised means `occurred_at` rewritten as UTC with exactly milliseconds,
    so that two spellings of one instant are one event. `max_future` is how far
    ahead of `now` an event may be: the contract's 5 minutes at the collector.
    """
    if not isinstance(raw, dict):
        raise InvalidEventError("not_an_object", "an event must be a JSON object")
    unknown = raw.keys() - ALL_FIELDS
    if unknown:
        raise InvalidEventError("unknown_field", f"unknown fields: {sorted(unknown)}")
    _string(raw, "event_id", required=True)
    _string(raw, "tenant_id", required=True)
    if not TENANT_RE.fullmatch(raw["tenant_id"]):
        raise InvalidEventError("invalid_value", "tenant_id does not match the allowed pattern")
    _string(raw, "ticket_id", required=True)
    _enum(raw, "type", frozenset(EVENT_TYPES), required=True)
    etype: str = raw["type"]
    extra = raw.keys() - COMMON_FIELDS - TYPE_FIELDS[etype]
    if extra:
        raise InvalidEventError("field_not_allowed", f"{sorted(extra)} not allowed on {etype}")

    _string(raw, "occurred_at", required=True, max_len=64)
    occurred = parse_timestamp(raw["occurred_at"])
    if occurred < EARLIEST:
        raise InvalidEventError("too_old", "occurred_at is before 2000-01-01T00:00:00Z")
    if occurred > now + max_future:
        raise InvalidEventError("in_future", "occurred_at is more than 5 minutes in the future")

    if etype == "ticket_created":
        _enum(raw, "channel", CHANNELS, required=True)
        _string(raw, "group_id", required=True)
    elif etype == "ticket_assigned":
        _string(raw, "agent_id", required=True)
        _string(raw, "group_id", required=False)
    elif etype == "ticket_transferred":
        _string(raw, "to_group_id", required=False)
        _string(raw, "to_agent_id", required=False)
        if "to_group_id" not in raw and "to_agent_id" not in raw:
            raise InvalidEventError("missing_field", "to_group_id or to_agent_id is required")
    elif etype == "message_sent":
        _enum(raw, "sender", SENDERS, required=True)
        if raw["sender"] == "agent":
            _string(raw, "agent_id", required=True)
        elif "agent_id" in raw:
            raise InvalidEventError("field_not_allowed", "agent_id only goes with sender=agent")
    else:
        _enum(raw, "closed_by", CLOSERS, required=False)

    if "attributes" in raw:
        if not isinstance(raw["attributes"], dict):
            raise InvalidEventError("wrong_type", "attributes must be an object")
        try:
            size = len(orjson.dumps(raw["attributes"]))
        except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson allows
            raise InvalidEventError("invalid_value", f"attributes: {exc}") from exc
        if size > MAX_ATTRIBUTES_BYTES:
            raise InvalidEventError("too_large", "attributes exceed 4 KiB")

    event = dict(raw)
    event["occurred_at"] = format_ms(to_ms(occurred))
    return event


def canonical(event: dict[str, Any]) -> bytes:
    """RFC 8785 bytes; byte order of UTF-8 equals code-point order of the text."""
    try:
        return bytes(rfc8785.dumps(event))
    except (rfc8785.CanonicalizationError, ValueError) as exc:
        raise InvalidEventError("not_canonicalizable", str(exc)) from exc
