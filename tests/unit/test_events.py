"""SPEC §1: validation and normalisation of one event, and its canonical form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.events import (
    InvalidEventError,
    canonical,
    format_ms,
    parse_timestamp,
    to_ms,
    validate,
)

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
AT = "2026-11-27T10:00:00.000Z"

COMMON = {"event_id": "e-1", "tenant_id": "acme", "ticket_id": "t-1", "occurred_at": AT}

# One minimal valid event of each type (written out, not taken from the module).
VALID: dict[str, dict[str, Any]] = {
    "ticket_created": {
        **COMMON,
        "type": "ticket_created",
        "channel": "whatsapp",
        "group_id": "g1",
    },
    "ticket_assigned": {**COMMON, "type": "ticket_assigned", "agent_id": "a1"},
    "ticket_transferred": {**COMMON, "type": "ticket_transferred", "to_group_id": "g2"},
    "message_sent": {**COMMON, "type": "message_sent", "sender": "customer"},
    "ticket_closed": {**COMMON, "type": "ticket_closed"},
}

# The fields each type may carry beyond the common ones, straight from the SPEC §1 table.
ALLOWED = {
    "ticket_created": {"channel", "group_id"},
    "ticket_assigned": {"agent_id", "group_id"},
    "ticket_transferred": {"to_group_id", "to_agent_id"},
    "message_sent": {"sender", "agent_id"},
    "ticket_closed": {"closed_by"},
}
TYPE_SPECIFIC = sorted(set().union(*ALLOWED.values()))


def ev(etype: str, **changes: Any) -> dict[str, Any]:
    event = dict(VALID[etype])
    event.update(changes)
    return event


def without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != name}


def rejected(raw: Any, now: datetime = NOW) -> str:
    with pytest.raises(InvalidEventError) as info:
        validate(raw, now)
    assert info.value.message
    return info.value.code


# -- valid events ------------------------------------------------------------


@pytest.mark.parametrize("etype", sorted(VALID))
def test_minimal_event_of_each_type_is_valid(etype: str) -> None:
    assert validate(VALID[etype], NOW) == VALID[etype]


def test_all_optional_fields_are_accepted() -> None:
    events = [
        ev("ticket_created", channel="email", attributes={"source": "web", "n": [1, 2]}),
        ev("ticket_assigned", group_id="g1"),
        ev("ticket_transferred", to_agent_id="a2"),
        without(ev("ticket_transferred", to_agent_id="a2"), "to_group_id"),
        ev("message_sent", sender="agent", agent_id="a1"),
        ev("message_sent", sender="bot"),
        ev("ticket_closed", closed_by="customer"),
        ev("ticket_closed", closed_by="system"),
        ev("ticket_closed", closed_by="agent", attributes={}),
    ]
    for event in events:
        assert validate(event, NOW) == event


@pytest.mark.parametrize("channel", ["whatsapp", "webchat", "email", "other"])
def test_every_channel_is_accepted(channel: str) -> None:
    assert validate(ev("ticket_created", channel=channel), NOW)["channel"] == channel


def test_validate_returns_a_copy_and_leaves_the_input_alone() -> None:
    raw = ev("ticket_closed", occurred_at="2026-11-27T10:00:00+01:00")
    out = validate(raw, NOW)
    assert out["occurred_at"] == "2026-11-27T09:00:00.000Z"
    assert raw["occurred_at"] == "2026-11-27T10:00:00+01:00"
    assert out is not raw


# -- shape -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [[], "event", 1, None, [VALID["ticket_closed"]]])
def test_non_object_is_rejected(raw: Any) -> None:
    assert rejected(raw) == "not_an_object"


@pytest.mark.parametrize("name", ["foo", "Event_id", "agent", "occurredAt", "group"])
def test_unknown_top_level_field_is_rejected(name: str) -> None:
    assert rejected(ev("ticket_closed", **{name: "x"})) == "unknown_field"


def test_unknown_field_inside_attributes_is_kept() -> None:
    event = ev("ticket_closed", attributes={"foo": {"bar": [1, None, "x"]}})
    assert validate(event, NOW)["attributes"] == {"foo": {"bar": [1, None, "x"]}}


@pytest.mark.parametrize(
    ("etype", "name"),
    [(t, f) for t in sorted(ALLOWED) for f in TYPE_SPECIFIC if f not in ALLOWED[t]],
)
def test_field_of_another_type_is_rejected(etype: str, name: str) -> None:
    assert rejected(ev(etype, **{name: "x"})) == "field_not_allowed"


@pytest.mark.parametrize("sender", ["customer", "bot"])
def test_agent_id_on_non_agent_message_is_rejected(sender: str) -> None:
    assert rejected(ev("message_sent", sender=sender, agent_id="a1")) == "field_not_allowed"


# -- required fields -------------------------------------------------------


@pytest.mark.parametrize("name", ["event_id", "tenant_id", "ticket_id", "type", "occurred_at"])
@pytest.mark.parametrize("etype", sorted(VALID))
def test_missing_common_field_is_rejected(etype: str, name: str) -> None:
    assert rejected(without(VALID[etype], name)) == "missing_field"


@pytest.mark.parametrize(
    ("event", "name"),
    [
        (VALID["ticket_created"], "channel"),
        (VALID["ticket_created"], "group_id"),
        (VALID["ticket_assigned"], "agent_id"),
        (VALID["message_sent"], "sender"),
        (ev("message_sent", sender="agent", agent_id="a1"), "agent_id"),
    ],
)
def test_missing_type_field_is_rejected(event: dict[str, Any], name: str) -> None:
    assert rejected(without(event, name)) == "missing_field"


def test_transfer_needs_a_group_or_an_agent() -> None:
    assert rejected(without(VALID["ticket_transferred"], "to_group_id")) == "missing_field"
    base = without(VALID["ticket_transferred"], "to_group_id")
    assert validate({**base, "to_group_id": "g2"}, NOW)["to_group_id"] == "g2"
    assert validate({**base, "to_agent_id": "a2"}, NOW)["to_agent_id"] == "a2"
    both = {**base, "to_group_id": "g2", "to_agent_id": "a2"}
    assert validate(both, NOW) == both


def test_optional_fields_may_be_absent() -> None:
    assert "group_id" not in validate(VALID["ticket_assigned"], NOW)
    assert "closed_by" not in validate(VALID["ticket_closed"], NOW)
    assert "attributes" not in validate(VALID["message_sent"], NOW)


# -- types and values ------------------------------------------------------


@pytest.mark.parametrize(
    ("etype", "name", "value"),
    [
        ("ticket_closed", "event_id", 1),
        ("ticket_closed", "event_id", None),
        ("ticket_closed", "tenant_id", ["acme"]),
        ("ticket_closed", "ticket_id", 7),
        ("ticket_closed", "type", 0),
        ("ticket_closed", "occurred_at", 1_764_237_600_000),
        ("ticket_created", "channel", None),
        ("ticket_created", "group_id", 5),
        ("ticket_assigned", "agent_id", True),
        ("ticket_assigned", "group_id", {"id": "g"}),
        ("ticket_transferred", "to_group_id", None),
        ("ticket_transferred", "to_agent_id", 3.5),
        ("message_sent", "sender", 1),
        ("ticket_closed", "closed_by", False),
        ("ticket_closed", "attributes", []),
        ("ticket_closed", "attributes", "k=v"),
        ("ticket_closed", "attributes", None),
    ],
)
def test_wrong_type_is_rejected(etype: str, name: str, value: Any) -> None:
    assert rejected(ev(etype, **{name: value})) == "wrong_type"


@pytest.mark.parametrize(
    ("etype", "name", "value"),
    [
        ("ticket_closed", "type", "ticket_reopened"),
        ("ticket_closed", "type", "TICKET_CLOSED"),
        ("ticket_created", "channel", "sms"),
        ("ticket_created", "channel", "WhatsApp"),
        ("message_sent", "sender", "system"),
        ("ticket_closed", "closed_by", "bot"),
    ],
)
def test_value_outside_the_enumeration_is_rejected(etype: str, name: str, value: str) -> None:
    assert rejected(ev(etype, **{name: value})) == "invalid_value"


@pytest.mark.parametrize(
    ("etype", "name"),
    [
        ("ticket_closed", "event_id"),
        ("ticket_closed", "ticket_id"),
        ("ticket_created", "group_id"),
        ("ticket_assigned", "agent_id"),
        ("ticket_assigned", "group_id"),
        ("ticket_transferred", "to_group_id"),
        ("ticket_transferred", "to_agent_id"),
    ],
)
def test_ids_are_1_to_128_characters(etype: str, name: str) -> None:
    assert validate(ev(etype, **{name: "x" * 128}), NOW)[name] == "x" * 128
    assert validate(ev(etype, **{name: "é" * 128}), NOW)[name] == "é" * 128
    assert validate(ev(etype, **{name: "y"}), NOW)[name] == "y"
    assert rejected(ev(etype, **{name: "x" * 129})) == "invalid_length"
    assert rejected(ev(etype, **{name: ""})) == "invalid_length"


@pytest.mark.parametrize(
    ("etype", "name"),
    [
        ("ticket_closed", "event_id"),
        ("ticket_closed", "ticket_id"),
        ("ticket_created", "group_id"),
        ("ticket_assigned", "agent_id"),
        ("ticket_transferred", "to_group_id"),
        ("ticket_transferred", "to_agent_id"),
    ],
)
@pytest.mark.parametrize("control", ["\x00", "\x1f", "\n", "\x7f", "\x85", "\x9f"])
def test_ids_refuse_control_characters(etype: str, name: str, control: str) -> None:
    """PostgreSQL text cannot hold NUL: refused at the door, not after the 202."""
    assert rejected(ev(etype, **{name: f"a{control}b"})) == "invalid_value"
    assert validate(ev(etype, **{name: "a\u00a0b"}), NOW)[name] == "a\u00a0b"  # not a control


def test_dates_have_a_floor_and_a_ceiling() -> None:
    assert validate(ev("ticket_closed", occurred_at="2000-01-01T00:00:00.000Z"), NOW)
    assert validate(ev("ticket_closed", occurred_at="2000-01-01T02:00:00+02:00"), NOW)
    for old in ("1999-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z", "0001-02-27T00:00:00Z",
                "2000-01-01T00:30:00+01:00"):  # fmt: skip
        assert rejected(ev("ticket_closed", occurred_at=old)) == "too_old"
    assert rejected(ev("ticket_closed", occurred_at="9999-12-31T23:59:59Z")) == "in_future"


def test_agent_id_of_a_message_is_1_to_128_characters() -> None:
    ok = ev("message_sent", sender="agent", agent_id="a" * 128)
    assert validate(ok, NOW) == ok
    assert rejected(ev("message_sent", sender="agent", agent_id="a" * 129)) == "invalid_length"


@pytest.mark.parametrize(
    "tenant",
    ["a", "0", "acme", "acme_co-1", "9-lives", "a" + "b" * 62, "a_", "a-"],
)
def test_tenant_matching_the_pattern_is_accepted(tenant: str) -> None:
    assert validate(ev("ticket_closed", tenant_id=tenant), NOW)["tenant_id"] == tenant


@pytest.mark.parametrize(
    "tenant",
    [
        "Acme",
        "-acme",
        "_acme",
        "a" + "b" * 63,
        "acme corp",
        "acme.io",
        "ácme",
        "acme\n",
        "acme/x",
    ],
)
def test_tenant_not_matching_the_pattern_is_rejected(tenant: str) -> None:
    assert rejected(ev("ticket_closed", tenant_id=tenant)) == "invalid_value"


def test_empty_tenant_is_rejected() -> None:
    assert rejected(ev("ticket_closed", tenant_id="")) == "invalid_length"


# -- timestamps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("2026-11-27T03:15:41.123999+02:00", "2026-11-27T01:15:41.123Z"),
        ("2026-11-27T03:15:41.123Z", "2026-11-27T03:15:41.123Z"),
        ("2026-11-27T03:15:41Z", "2026-11-27T03:15:41.000Z"),
        ("2026-11-27T03:15:41.1Z", "2026-11-27T03:15:41.100Z"),
        ("2026-11-27T03:15:41.12+00:00", "2026-11-27T03:15:41.120Z"),
        ("2026-11-27T03:15:41.999999999Z", "2026-11-27T03:15:41.999Z"),
        ("2026-11-26T23:30:00.5-03:00", "2026-11-27T02:30:00.500Z"),
        ("2026-11-27T05:45:00.0009+05:45", "2026-11-27T00:00:00.000Z"),
        ("2026-11-27t03:15:41.123z", "2026-11-27T03:15:41.123Z"),
        ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000Z"),
    ],
)
def test_occurred_at_is_normalised_to_utc_milliseconds(given: str, normalised: str) -> None:
    assert validate(ev("ticket_closed", occurred_at=given), NOW)["occurred_at"] == normalised


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T03:15:41.123",
        "2026-11-27T03:15:41",
        "2026-11-27",
        "2026-11-27T03:15:41+0200",
        "2026-11-27T03:15:41+02",
        "2026-11-27 03:15:41Z",
        "2026-11-27T03:15Z",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T03:15:41.Z",
        "2026-11-27T03:15:41Z\n",
        " 2026-11-27T03:15:41Z",
        "2026-11-27T03:15:41.\u0661\u0662\u0663Z",
        "1764213341123",
    ],
)
def test_timestamp_without_offset_or_malformed_is_rejected(value: str) -> None:
    assert rejected(ev("ticket_closed", occurred_at=value)) == "invalid_timestamp"


def test_empty_timestamp_is_rejected() -> None:
    assert rejected(ev("ticket_closed", occurred_at="")) == "invalid_length"


def test_parse_timestamp_truncates_to_the_millisecond_in_utc() -> None:
    dt = parse_timestamp("2026-11-27T03:15:41.123999+02:00")
    assert dt == datetime(2026, 11, 27, 1, 15, 41, 123000, tzinfo=UTC)
    assert dt.utcoffset() is not None
    assert dt.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_two_spellings_of_one_instant_normalise_to_the_same_event() -> None:
    a = validate(ev("ticket_closed", occurred_at="2026-11-27T03:00:00.250+03:00"), NOW)
    b = validate(ev("ticket_closed", occurred_at="2026-11-27T00:00:00.250999Z"), NOW)
    assert a == b
    assert canonical(a) == canonical(b)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T12:04:00Z",  # 4 minutes ahead
        "2026-11-27T12:05:00Z",  # exactly 5 minutes: not *more* than 5
        "2026-11-27T14:04:59.999+02:00",
        "2026-11-20T10:00:00Z",  # days late
        "2020-01-01T00:00:00Z",
    ],
)
def test_past_and_near_future_are_accepted(value: str) -> None:
    assert validate(ev("ticket_closed", occurred_at=value), NOW)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T12:05:00.001Z",
        "2026-11-27T12:06:00Z",
        "2026-11-27T14:06:00+02:00",
        "2026-11-28T00:00:00Z",
    ],
)
def test_more_than_five_minutes_in_the_future_is_rejected(value: str) -> None:
    assert rejected(ev("ticket_closed", occurred_at=value)) == "in_future"


def test_future_limit_follows_the_server_clock() -> None:
    event = ev("ticket_closed", occurred_at="2026-11-27T12:10:00Z")
    assert rejected(event) == "in_future"
    later = datetime(2026, 11, 27, 12, 6, 0, tzinfo=UTC)
    assert validate(event, later)["occurred_at"] == "2026-11-27T12:10:00.000Z"


# -- attributes ----------------------------------------------------------------


def test_attributes_of_exactly_4_kib_are_accepted() -> None:
    attributes = {"k": "x" * 4088}  # {"k":"…"} is 8 + 4088 = 4096 bytes
    assert validate(ev("ticket_closed", attributes=attributes), NOW)["attributes"] == attributes


def test_attributes_over_4_kib_are_rejected() -> None:
    assert rejected(ev("ticket_closed", attributes={"k": "x" * 4089})) == "too_large"
    many = {f"key{i}": i for i in range(1000)}
    assert rejected(ev("ticket_closed", attributes=many)) == "too_large"


def test_attribute_size_is_counted_in_utf8_bytes() -> None:
    ok = {"k": "é" * 2044}  # 8 + 2 * 2044 = 4096 bytes
    assert validate(ev("ticket_closed", attributes=ok), NOW)["attributes"] == ok
    assert rejected(ev("ticket_closed", attributes={"k": "é" * 2045})) == "too_large"


def test_absurdly_nested_attributes_are_rejected_not_crashing() -> None:
    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(300):
        inner["a"] = {}
        inner = inner["a"]
    assert rejected(ev("ticket_closed", attributes=nested)) == "invalid_value"


# -- time helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_764_213_341_123, "2025-11-27T03:15:41.123Z"),
        (1_795_749_341_999, "2026-11-27T03:15:41.999Z"),
    ],
)
def test_format_ms_and_to_ms_round_trip(epoch_ms: int, text: str) -> None:
    assert format_ms(epoch_ms) == text
    assert to_ms(parse_timestamp(text)) == epoch_ms


def test_format_ms_pads_the_year_to_four_digits() -> None:
    at = to_ms(datetime(999, 3, 4, 5, 6, 7, 89_000, tzinfo=UTC))
    assert format_ms(at) == "0999-03-04T05:06:07.089Z"
    assert datetime.fromisoformat(format_ms(at)).year == 999


# -- canonical JSON ------------------------------------------------------------


def test_canonical_sorts_keys_and_drops_whitespace() -> None:
    event = {
        "type": "ticket_closed",
        "occurred_at": AT,
        "ticket_id": "t-1",
        "tenant_id": "acme",
        "event_id": "e-1",
        "attributes": {"z": 1, "a": {"y": True, "b": None}},
    }
    assert canonical(event) == (
        b'{"attributes":{"a":{"b":null,"y":true},"z":1},"event_id":"e-1",'
        b'"occurred_at":"2026-11-27T10:00:00.000Z","tenant_id":"acme",'
        b'"ticket_id":"t-1","type":"ticket_closed"}'
    )


def test_canonical_is_independent_of_insertion_order() -> None:
    a = {"b": 1, "a": 2, "c": {"y": 1, "x": 2}}
    b = {"c": {"x": 2, "y": 1}, "a": 2, "b": 1}
    assert canonical(a) == canonical(b) == b'{"a":2,"b":1,"c":{"x":2,"y":1}}'


def test_canonical_follows_rfc8785_strings_and_numbers() -> None:
    # RFC 8785 sorts keys by UTF-16 code units: U+1F600 (D83D DE00) before U+E000.
    value = {"\ue000": 1, "\U0001f600": 2, "é": "é", "n": [2.0, 0.5, 1e21, -0.0]}
    assert canonical(value) == (
        b'{"n":[2,0.5,1e+21,0],"\xc3\xa9":"\xc3\xa9","\xf0\x9f\x98\x80":2,"\xee\x80\x80":1}'
    )


def test_canonical_rejects_what_rfc8785_cannot_represent() -> None:
    with pytest.raises(InvalidEventError) as info:
        canonical({"a": 2**60})
    assert info.value.code == "not_canonicalizable"
