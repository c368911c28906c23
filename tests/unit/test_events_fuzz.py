"""Hostile events: whatever validation accepts can be stored, bucketed and evaluated.

The collector's 202 is a promise that the event counts; an event that passes
`validate` but cannot be stored (a NUL in an id) or bucketed (year 1) would
break that promise downstream. Hypothesis throws control characters, extreme
dates and odd offsets at it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.enricher.metrics import dedupe, evaluate
from shared.events import (
    CONTROL_RE,
    EARLIEST,
    ID_FIELDS,
    MAX_FUTURE,
    InvalidEventError,
    canonical,
    parse_timestamp,
    to_ms,
    validate,
)
from shared.timebuckets import buckets_of, calendars, instant

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CALS = calendars(("UTC", "America/Sao_Paulo", "Asia/Kathmandu", "Pacific/Kiritimati"))
BASE: dict[str, dict[str, Any]] = {
    "ticket_created": {"channel": "whatsapp", "group_id": "g"},
    "ticket_assigned": {"agent_id": "a"},
    "ticket_transferred": {"to_group_id": "g2", "to_agent_id": "a2"},
    "message_sent": {"sender": "agent", "agent_id": "a"},
    "ticket_closed": {},
}

CONTROLS = st.sampled_from(["\x00", "\x01", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f"])
HOSTILE_TEXT = st.one_of(
    st.text(max_size=140),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=20), CONTROLS, st.text(max_size=20)),
    st.sampled_from(["", "x" * 129, "é" * 128, "\u2028", "\ufeff", "a/b", "%00"]),
)
HOSTILE_VALUE = st.one_of(HOSTILE_TEXT, st.integers(), st.none(), st.lists(st.integers()))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    minutes = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
    offset = "Z" if minutes == 0 and draw(st.booleans()) else (
        f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    )  # fmt: skip
    digits = draw(st.sampled_from(["", ".1", ".123", ".123456789"]))
    return f"{when:%Y-%m-%dT%H:%M:%S}{digits}{offset}"


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    etype = draw(st.sampled_from(sorted(BASE)))
    event: dict[str, Any] = {
        "event_id": "e", "tenant_id": "acme", "ticket_id": "t", "type": etype,
        "occurred_at": draw(st.one_of(timestamps(), HOSTILE_TEXT)), **BASE[etype],
    }  # fmt: skip
    for name in draw(st.sets(st.sampled_from([*ID_FIELDS, "channel", "sender"]), max_size=3)):
        if name in event or draw(st.booleans()):
            event[name] = draw(HOSTILE_VALUE)
    return event


@settings(max_examples=1500, deadline=None)
@given(hostile_events())
def test_whatever_validation_accepts_can_be_stored_and_bucketed(raw: dict[str, Any]) -> None:
    try:
        event = validate(raw, NOW)
    except InvalidEventError:
        return
    for name in ID_FIELDS:
        if name in event:
            assert not CONTROL_RE.search(event[name])
    at = parse_timestamp(event["occurred_at"])
    assert EARLIEST <= at <= NOW + MAX_FUTURE
    for _, start in buckets_of(to_ms(at), CALS):
        assert instant(start) <= at
    canonical(event)
    evaluate(dedupe([canonical(event)])[0])


@given(timestamps())
def test_timestamps_parse_or_are_refused_never_crash(text: str) -> None:
    try:
        at = parse_timestamp(text)
    except InvalidEventError:
        return
    assert at.tzinfo is UTC and at.microsecond % 1000 == 0
    assert abs(at - datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)) <= timedelta(days=1)


@st.composite
def near_the_bounds(draw: st.DrawFn) -> str:
    """Instants within two days of the floor or the ceiling, in any offset and precision."""
    edge = draw(st.sampled_from([EARLIEST, NOW + MAX_FUTURE]))
    at = edge + timedelta(microseconds=draw(st.integers(-2 * 86_400_000_000, 2 * 86_400_000_000)))
    minutes = draw(st.integers(-(14 * 60), 14 * 60))
    local = at + timedelta(minutes=minutes)
    sign = "+" if minutes >= 0 else "-"
    digits = draw(st.sampled_from(["", ".1", ".123", ".123456"]))
    fraction = f"{local:.%f}"[: len(digits)] if digits else ""
    offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{local:%Y-%m-%dT%H:%M:%S}{fraction}{offset}"


@settings(max_examples=400, deadline=None)
@given(near_the_bounds())
def test_dates_are_accepted_exactly_between_the_floor_and_the_ceiling(text: str) -> None:
    raw = {"event_id": "e", "tenant_id": "acme", "ticket_id": "t", "type": "ticket_closed",
           "occurred_at": text}  # fmt: skip
    at = parse_timestamp(text)
    try:
        event = validate(raw, NOW)
    except InvalidEventError as exc:
        assert exc.code == ("too_old" if at < EARLIEST else "in_future"), (text, exc.code)
        assert not EARLIEST <= at <= NOW + MAX_FUTURE
        return
    assert EARLIEST <= at <= NOW + MAX_FUTURE, text
    for _, start in buckets_of(to_ms(at), CALS):
        assert instant(start) <= at
    evaluate(dedupe([canonical(event)])[0])


def test_every_control_character_in_every_id_is_refused() -> None:
    """All of C0, DEL and C1, anywhere in an id: nothing PostgreSQL or a log line chokes on."""
    moved = "ticket_transferred"
    carrier = {"event_id": "ticket_closed", "ticket_id": "ticket_closed",
               "group_id": "ticket_created", "agent_id": "ticket_assigned",
               "to_group_id": moved, "to_agent_id": moved}  # fmt: skip
    assert set(carrier) == set(ID_FIELDS)
    for name, etype in carrier.items():
        good = {"event_id": "e", "tenant_id": "acme", "ticket_id": "t", "type": etype,
                "occurred_at": "2026-11-27T11:00:00Z", **BASE[etype]}  # fmt: skip
        validate(good, NOW)  # the same event without the character is accepted
        for code in [*range(0x20), *range(0x7F, 0xA0)]:
            for where in ("{c}", "a{c}", "{c}b", "a{c}b"):
                raw = {**good, name: where.format(c=chr(code))}
                try:
                    validate(raw, NOW)
                except InvalidEventError as exc:
                    assert exc.code == "invalid_value", (name, code, exc.code)
                    continue
                raise AssertionError(f"{name}={raw[name]!r} accepted")
