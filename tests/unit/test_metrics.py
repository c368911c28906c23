"""SPEC §2: per-ticket metrics, hand-computed on small ticket histories.

Every expected number below is written out by hand from the timeline in the
test; none is computed by the engine under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import orjson

from services.enricher.metrics import TicketResult, dedupe, evaluate
from shared.events import canonical, validate

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DAY = "2026-11-20"
MIN = 60_000


def ts(hhmm: str) -> str:
    """'10:02' or '10:02:30' or '10:02:30.250' on DAY, as SPEC's UTC form."""
    if hhmm.count(":") == 1:
        hhmm += ":00"
    if "." not in hhmm:
        hhmm += ".000"
    return f"{DAY}T{hhmm}Z"


def ms(hhmm: str) -> int:
    return int(datetime.fromisoformat(ts(hhmm)).timestamp() * 1000)


def _ev(eid: str, etype: str, at: str, **fields: Any) -> dict[str, Any]:
    raw = {
        "event_id": eid,
        "tenant_id": "acme",
        "ticket_id": "t-1",
        "type": etype,
        "occurred_at": ts(at),
        **{k: v for k, v in fields.items() if v is not None},
    }
    return validate(raw, NOW)  # every event used here is valid per SPEC §1


def created(eid: str, at: str, group: str = "g1", channel: str = "whatsapp") -> dict[str, Any]:
    return _ev(eid, "ticket_created", at, channel=channel, group_id=group)


def assigned(eid: str, at: str, agent: str, group: str | None = None) -> dict[str, Any]:
    return _ev(eid, "ticket_assigned", at, agent_id=agent, group_id=group)


def transferred(
    eid: str, at: str, *, group: str | None = None, agent: str | None = None
) -> dict[str, Any]:
    return _ev(eid, "ticket_transferred", at, to_group_id=group, to_agent_id=agent)


def customer(eid: str, at: str) -> dict[str, Any]:
    return _ev(eid, "message_sent", at, sender="customer")


def bot(eid: str, at: str) -> dict[str, Any]:
    return _ev(eid, "message_sent", at, sender="bot")


def agent_msg(eid: str, at: str, agent: str) -> dict[str, Any]:
    return _ev(eid, "message_sent", at, sender="agent", agent_id=agent)


def closed(eid: str, at: str, by: str | None = None) -> dict[str, Any]:
    return _ev(eid, "ticket_closed", at, closed_by=by)


def run(*events: dict[str, Any]) -> TicketResult:
    """Evaluate in the given order and in reverse; both must agree."""
    result = evaluate(list(events))
    again = evaluate(list(reversed(events)))
    assert again.metrics() == result.metrics()
    assert [e["event_id"] for e in again.events] == [e["event_id"] for e in result.events]
    return result


def gstints(r: TicketResult) -> list[tuple[Any, ...]]:
    """(group, start, end, queue ms, answered, abandoned, transferred_out) of each group stint."""
    return [s.row() for s in r.group_stints]


def astints(r: TicketResult) -> list[tuple[Any, ...]]:
    """(agent, start, end, handle ms, messages) of each agent stint."""
    return [s.row() for s in r.agent_stints]


def order(r: TicketResult) -> list[str]:
    return [e["event_id"] for e in r.events]


# -- a simple lifecycle ----------------------------------------------------------


def test_simple_lifecycle_gives_every_metric() -> None:
    r = run(
        created("c", "10:00", group="g1", channel="whatsapp"),
        assigned("a", "10:02", "a1"),
        customer("m1", "10:03"),
        agent_msg("m2", "10:05", "a1"),
        closed("x", "10:20", by="agent"),
    )
    assert r.metrics() == {
        "created_at": "2026-11-20T10:00:00.000Z",
        "closed_at": "2026-11-20T10:20:00.000Z",
        "status": "closed",
        "channel": "whatsapp",
        "first_group_id": "g1",
        "last_group_id": "g1",
        "last_agent_id": "a1",
        "first_assigned_at": "2026-11-20T10:02:00.000Z",
        "wait_time_ms": 120_000,
        "abandoned": False,
        "abandon_time_ms": None,
        "queue_time_ms": 120_000,
        "first_response_time_ms": 300_000,
        "handle_time_ms": 1_080_000,
        "resolution_time_ms": 1_200_000,
        "transfers": 0,
        "customer_messages": 1,
        "agent_messages": 1,
        "bot_messages": 0,
        "avg_reply_time_ms": 120_000,
        "replies": 1,
        "agents_involved": 1,
    }
    assert gstints(r) == [("g1", ms("10:00"), ms("10:20"), 120_000, True, False, False)]
    assert astints(r) == [("a1", ms("10:02"), ms("10:20"), 1_080_000, 1)]
    assert r.first_response_agent_id == "a1"
    assert r.closing_agent_id == "a1"
    assert r.queue_since is None
    assert r.replies == [(ms("10:05"), 120_000)]
    assert r.messages == [(ms("10:03"), "customer", None), (ms("10:05"), "agent", "a1")]
    assert order(r) == ["c", "a", "m1", "m2", "x"]


def test_stint_json_uses_spec_timestamps() -> None:
    r = run(created("c", "10:00"), assigned("a", "10:02", "a1"), closed("x", "10:20"))
    assert r.group_stints[0].to_json() == {
        "group_id": "g1",
        "started_at": "2026-11-20T10:00:00.000Z",
        "ended_at": "2026-11-20T10:20:00.000Z",
        "queue_time_ms": 120_000,
        "answered": True,
        "abandoned": False,
        "transferred_out": False,
    }
    assert r.agent_stints[0].to_json() == {
        "agent_id": "a1",
        "started_at": "2026-11-20T10:02:00.000Z",
        "ended_at": "2026-11-20T10:20:00.000Z",
        "handle_time_ms": 1_080_000,
        "messages": 0,
    }


def test_milliseconds_are_kept_in_durations() -> None:
    r = run(
        created("c", "10:00:00.250"),
        assigned("a", "10:00:01.001", "a1"),
        closed("x", "10:00:02.999"),
    )
    m = r.metrics()
    assert m["wait_time_ms"] == 751
    assert m["queue_time_ms"] == 751
    assert m["handle_time_ms"] == 1_998
    assert m["resolution_time_ms"] == 2_749
    assert m["created_at"] == "2026-11-20T10:00:00.250Z"


# -- open tickets: unfinished intervals are not counted ------------------------


def test_ticket_only_created_is_waiting_with_nothing_completed() -> None:
    r = run(created("c", "10:00", group="g7", channel="email"))
    m = r.metrics()
    assert m["status"] == "waiting"
    assert m["channel"] == "email"
    assert (m["first_group_id"], m["last_group_id"], m["last_agent_id"]) == ("g7", "g7", None)
    assert m["closed_at"] is None
    assert m["first_assigned_at"] is None
    assert m["wait_time_ms"] is None
    assert m["resolution_time_ms"] is None
    assert m["first_response_time_ms"] is None
    assert m["abandoned"] is False
    assert m["abandon_time_ms"] is None
    assert m["queue_time_ms"] == 0
    assert m["handle_time_ms"] == 0
    assert m["avg_reply_time_ms"] is None
    assert m["replies"] == 0
    assert m["agents_involved"] == 0
    assert r.queue_since == ms("10:00")
    assert gstints(r) == [("g7", ms("10:00"), None, 0, False, False, False)]
    assert r.agent_stints == []


def test_assigned_ticket_counts_queue_but_not_open_handle() -> None:
    r = run(created("c", "10:00"), assigned("a", "10:05", "a1"), agent_msg("m", "10:06", "a1"))
    m = r.metrics()
    assert m["status"] == "assigned"
    assert m["queue_time_ms"] == 300_000
    assert m["wait_time_ms"] == 300_000
    assert m["handle_time_ms"] == 0
    assert m["closed_at"] is None
    assert m["last_agent_id"] == "a1"
    assert r.queue_since is None
    assert r.closing_agent_id is None
    assert gstints(r) == [("g1", ms("10:00"), None, 300_000, True, False, False)]
    assert astints(r) == [("a1", ms("10:05"), None, 0, 1)]


# -- transfers -------------------------------------------------------------------


def test_transfer_to_group_while_held_starts_a_queue_interval() -> None:
    events = [
        created("c", "10:00", group="g1"),
        assigned("a", "10:01", "a1"),
        transferred("t", "10:10", group="g2"),
        assigned("b", "10:15", "a2"),
        closed("x", "10:30"),
    ]
    mid = run(*events[:3])
    assert mid.metrics()["status"] == "waiting"
    assert mid.metrics()["queue_time_ms"] == 60_000  # 10:00-10:01; 10:10- is still open
    assert mid.metrics()["handle_time_ms"] == 540_000  # 10:01-10:10
    assert mid.metrics()["last_agent_id"] == "a1"
    assert mid.metrics()["last_group_id"] == "g2"
    assert mid.queue_since == ms("10:10")

    r = run(*events)
    m = r.metrics()
    assert m["queue_time_ms"] == 360_000  # 1 min + 5 min
    assert m["handle_time_ms"] == 1_440_000  # 9 min (a1) + 15 min (a2)
    assert m["resolution_time_ms"] == 1_800_000
    assert m["wait_time_ms"] == 60_000
    assert m["transfers"] == 1
    assert m["agents_involved"] == 2
    assert (m["first_group_id"], m["last_group_id"], m["last_agent_id"]) == ("g1", "g2", "a2")
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:10"), 60_000, True, False, True),
        ("g2", ms("10:10"), ms("10:30"), 300_000, True, False, False),
    ]
    assert astints(r) == [
        ("a1", ms("10:01"), ms("10:10"), 540_000, 0),
        ("a2", ms("10:15"), ms("10:30"), 900_000, 0),
    ]
    assert r.closing_agent_id == "a2"


def test_transfer_to_group_while_waiting_continues_the_interval() -> None:
    events = [
        created("c", "10:00", group="g1"),
        transferred("t", "10:04", group="g2"),
        assigned("a", "10:10", "a1"),
        closed("x", "10:20"),
    ]
    mid = run(*events[:2])
    assert mid.metrics()["status"] == "waiting"
    assert mid.metrics()["queue_time_ms"] == 0  # the one interval is still open
    assert mid.queue_since == ms("10:00")  # not restarted by the transfer
    assert mid.metrics()["last_group_id"] == "g2"
    assert gstints(mid) == [
        ("g1", ms("10:00"), ms("10:04"), 240_000, False, False, True),
        ("g2", ms("10:04"), None, 0, False, False, False),
    ]

    r = run(*events)
    m = r.metrics()
    assert m["queue_time_ms"] == 600_000  # one interval 10:00-10:10
    assert m["wait_time_ms"] == 600_000
    assert m["handle_time_ms"] == 600_000
    assert m["transfers"] == 1
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:04"), 240_000, False, False, True),
        ("g2", ms("10:04"), ms("10:20"), 360_000, True, False, False),
    ]


def test_transfer_to_the_same_group_while_waiting_changes_nothing_but_the_count() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        transferred("t", "10:04", group="g1"),
        assigned("a", "10:10", "a1"),
        closed("x", "10:20"),
    )
    assert r.metrics()["transfers"] == 1
    assert r.metrics()["queue_time_ms"] == 600_000
    assert gstints(r) == [("g1", ms("10:00"), ms("10:20"), 600_000, True, False, False)]


def test_transfer_to_the_same_group_while_held_queues_in_the_same_stint() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        assigned("a", "10:01", "a1"),
        transferred("t", "10:05", group="g1"),
        assigned("b", "10:08", "a2"),
        closed("x", "10:10"),
    )
    m = r.metrics()
    assert m["queue_time_ms"] == 240_000  # 1 min + 3 min
    assert m["handle_time_ms"] == 360_000  # 4 min (a1) + 2 min (a2)
    assert m["transfers"] == 1
    assert gstints(r) == [("g1", ms("10:00"), ms("10:10"), 240_000, True, False, False)]
    assert astints(r) == [
        ("a1", ms("10:01"), ms("10:05"), 240_000, 0),
        ("a2", ms("10:08"), ms("10:10"), 120_000, 0),
    ]


def test_transfer_to_agent_moves_the_ticket_at_once() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        assigned("a", "10:02", "a1"),
        transferred("t", "10:06", agent="a2"),
        agent_msg("m1", "10:07", "a1"),
        agent_msg("m2", "10:08", "a2"),
        closed("x", "10:12"),
    )
    m = r.metrics()
    assert m["status"] == "closed"
    assert m["queue_time_ms"] == 120_000
    assert m["handle_time_ms"] == 600_000  # 4 min (a1) + 6 min (a2)
    assert m["transfers"] == 1
    assert m["agents_involved"] == 2
    assert m["agent_messages"] == 2
    assert m["first_response_time_ms"] == 420_000
    assert (m["first_group_id"], m["last_group_id"], m["last_agent_id"]) == ("g1", "g1", "a2")
    assert r.first_response_agent_id == "a1"
    assert r.closing_agent_id == "a2"
    assert gstints(r) == [("g1", ms("10:00"), ms("10:12"), 120_000, True, False, False)]
    assert astints(r) == [
        ("a1", ms("10:02"), ms("10:06"), 240_000, 0),  # a1's message came after its stint
        ("a2", ms("10:06"), ms("10:12"), 360_000, 1),
    ]


def test_transfer_to_agent_and_group_moves_both() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        assigned("a", "10:02", "a1"),
        transferred("t", "10:06", agent="a2", group="g2"),
        closed("x", "10:12"),
    )
    m = r.metrics()
    assert (m["first_group_id"], m["last_group_id"], m["last_agent_id"]) == ("g1", "g2", "a2")
    assert m["queue_time_ms"] == 120_000
    assert m["handle_time_ms"] == 600_000
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:06"), 120_000, True, False, True),
        ("g2", ms("10:06"), ms("10:12"), 0, True, False, False),
    ]


def test_transfer_to_agent_while_waiting_is_the_first_assignment() -> None:
    r = run(
        created("c", "10:00"),
        transferred("t", "10:03", agent="a1"),
        closed("x", "10:10"),
    )
    m = r.metrics()
    assert m["first_assigned_at"] == "2026-11-20T10:03:00.000Z"
    assert m["wait_time_ms"] == 180_000
    assert m["queue_time_ms"] == 180_000
    assert m["handle_time_ms"] == 420_000
    assert m["abandoned"] is False
    assert m["agents_involved"] == 1
    assert m["transfers"] == 1
    assert gstints(r) == [("g1", ms("10:00"), ms("10:10"), 180_000, True, False, False)]


def test_transfer_to_the_holding_agent_keeps_the_handle_interval() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        assigned("a", "10:01", "a1"),
        transferred("t", "10:05", agent="a1", group="g2"),
        closed("x", "10:10"),
    )
    m = r.metrics()
    assert m["transfers"] == 1
    assert m["handle_time_ms"] == 540_000
    assert m["agents_involved"] == 1
    assert m["last_group_id"] == "g2"
    assert astints(r) == [("a1", ms("10:01"), ms("10:10"), 540_000, 0)]
    # The group moves with its agent: the g2 stint is answered from its first instant.
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:05"), 60_000, True, False, True),
        ("g2", ms("10:05"), ms("10:10"), 0, True, False, False),
    ]


# -- assignments -----------------------------------------------------------------


def test_reassignment_to_the_same_agent_changes_nothing() -> None:
    base = [created("c", "10:00"), assigned("a", "10:02", "a1"), closed("x", "10:10")]
    r = run(*base, assigned("a-again", "10:05", "a1", group="g9"))
    plain = run(*base)
    assert r.metrics() == plain.metrics()
    m = r.metrics()
    assert m["first_assigned_at"] == "2026-11-20T10:02:00.000Z"
    assert m["handle_time_ms"] == 480_000
    assert m["agents_involved"] == 1
    assert m["last_group_id"] == "g1"  # group_id on an assignment does not move the ticket
    assert astints(r) == [("a1", ms("10:02"), ms("10:10"), 480_000, 0)]
    assert gstints(r) == gstints(plain)


def test_reassignment_to_another_agent_ends_the_first_interval() -> None:
    r = run(
        created("c", "10:00"),
        assigned("a", "10:02", "a1"),
        assigned("b", "10:05", "a2"),
        closed("x", "10:10"),
    )
    m = r.metrics()
    assert m["handle_time_ms"] == 480_000
    assert m["queue_time_ms"] == 120_000
    assert m["wait_time_ms"] == 120_000
    assert m["agents_involved"] == 2
    assert m["transfers"] == 0
    assert m["last_agent_id"] == "a2"
    assert r.closing_agent_id == "a2"
    assert astints(r) == [
        ("a1", ms("10:02"), ms("10:05"), 180_000, 0),
        ("a2", ms("10:05"), ms("10:10"), 300_000, 0),
    ]
    assert gstints(r) == [("g1", ms("10:00"), ms("10:10"), 120_000, True, False, False)]


# -- close, reopen ---------------------------------------------------------------


def test_reopened_and_closed_again_uses_the_last_close() -> None:
    r = run(
        created("c", "10:00"),
        assigned("a", "10:01", "a1"),
        closed("x1", "10:05"),
        assigned("b", "10:30", "a2"),
        closed("x2", "10:40"),
    )
    m = r.metrics()
    assert m["status"] == "closed"
    assert m["closed_at"] == "2026-11-20T10:40:00.000Z"
    assert m["resolution_time_ms"] == 2_400_000
    assert m["queue_time_ms"] == 60_000
    assert m["handle_time_ms"] == 840_000  # 4 min + 10 min; the closed gap is nobody's
    assert m["agents_involved"] == 2
    assert m["abandoned"] is False
    assert r.closing_agent_id == "a2"
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:05"), 60_000, True, False, False),
        ("g1", ms("10:30"), ms("10:40"), 0, True, False, False),
    ]
    assert astints(r) == [
        ("a1", ms("10:01"), ms("10:05"), 240_000, 0),
        ("a2", ms("10:30"), ms("10:40"), 600_000, 0),
    ]


def test_reopened_and_not_closed_again_has_no_close() -> None:
    r = run(
        created("c", "10:00"),
        assigned("a", "10:01", "a1"),
        closed("x1", "10:05"),
        assigned("b", "10:30", "a1"),
    )
    m = r.metrics()
    assert m["status"] == "assigned"
    assert m["closed_at"] is None
    assert m["resolution_time_ms"] is None
    assert m["abandoned"] is False
    assert m["handle_time_ms"] == 240_000  # the reopened interval is still open
    assert m["agents_involved"] == 1
    assert r.closing_agent_id is None
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:05"), 60_000, True, False, False),
        ("g1", ms("10:30"), None, 0, True, False, False),
    ]
    assert astints(r) == [
        ("a1", ms("10:01"), ms("10:05"), 240_000, 0),
        ("a1", ms("10:30"), None, 0, 0),
    ]


def test_reopened_by_a_group_transfer_waits_in_the_new_group() -> None:
    events = [
        created("c", "10:00", group="g1"),
        assigned("a", "10:01", "a1"),
        closed("x1", "10:05"),
        transferred("t", "10:30", group="g2"),
        assigned("b", "10:35", "a2"),
        closed("x2", "10:45"),
    ]
    mid = run(*events[:4])
    assert mid.metrics()["status"] == "waiting"
    assert mid.metrics()["closed_at"] is None
    assert mid.metrics()["last_group_id"] == "g2"
    assert mid.queue_since == ms("10:30")
    assert gstints(mid) == [
        ("g1", ms("10:00"), ms("10:05"), 60_000, True, False, False),
        ("g2", ms("10:30"), None, 0, False, False, False),
    ]

    r = run(*events)
    m = r.metrics()
    assert m["closed_at"] == "2026-11-20T10:45:00.000Z"
    assert m["queue_time_ms"] == 360_000  # 1 min + 5 min
    assert m["handle_time_ms"] == 840_000  # 4 min + 10 min
    assert m["transfers"] == 1
    assert gstints(r)[1] == ("g2", ms("10:30"), ms("10:45"), 300_000, True, False, False)


def test_reopened_by_an_agent_transfer_with_group_starts_in_that_group() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        assigned("a", "10:01", "a1"),
        closed("x1", "10:05"),
        transferred("t", "10:30", agent="a2", group="g3"),
    )
    m = r.metrics()
    assert m["status"] == "assigned"
    assert m["closed_at"] is None
    assert m["last_group_id"] == "g3"
    assert m["last_agent_id"] == "a2"
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:05"), 60_000, True, False, False),
        ("g3", ms("10:30"), None, 0, True, False, False),
    ]


def test_second_close_without_reopen_moves_closed_at_only() -> None:
    r = run(
        created("c", "10:00"),
        assigned("a", "10:01", "a1"),
        closed("x1", "10:05"),
        agent_msg("m", "10:07", "a1"),  # a message does not reopen
        closed("x2", "10:09"),
    )
    m = r.metrics()
    assert m["closed_at"] == "2026-11-20T10:09:00.000Z"
    assert m["resolution_time_ms"] == 540_000
    assert m["handle_time_ms"] == 240_000  # ended by the first close
    assert r.closing_agent_id == "a1"
    assert gstints(r) == [("g1", ms("10:00"), ms("10:05"), 60_000, True, False, False)]
    assert astints(r) == [("a1", ms("10:01"), ms("10:05"), 240_000, 0)]  # message after close


# -- abandonment -------------------------------------------------------------------


def test_closed_without_ever_being_assigned_is_abandoned() -> None:
    r = run(
        created("c", "10:00"),
        customer("m1", "10:01"),
        bot("m2", "10:01:30"),
        closed("x", "10:07", by="customer"),
    )
    m = r.metrics()
    assert m["abandoned"] is True
    assert m["abandon_time_ms"] == 420_000
    assert m["resolution_time_ms"] == 420_000
    assert m["queue_time_ms"] == 420_000
    assert m["handle_time_ms"] == 0
    assert m["wait_time_ms"] is None
    assert m["first_assigned_at"] is None
    assert m["first_response_time_ms"] is None
    assert m["last_agent_id"] is None
    assert m["agents_involved"] == 0
    assert (m["customer_messages"], m["bot_messages"], m["agent_messages"]) == (1, 1, 0)
    assert (m["replies"], m["avg_reply_time_ms"]) == (0, None)
    assert r.closing_agent_id is None
    assert gstints(r) == [("g1", ms("10:00"), ms("10:07"), 420_000, False, True, False)]


def test_closed_while_waiting_after_an_assignment_is_not_abandoned() -> None:
    r = run(
        created("c", "10:00", group="g1"),
        assigned("a", "10:01", "a1"),
        transferred("t", "10:05", group="g2"),
        closed("x", "10:08"),
    )
    m = r.metrics()
    assert m["abandoned"] is False
    assert m["abandon_time_ms"] is None
    assert m["queue_time_ms"] == 240_000  # 1 min + 3 min
    assert m["handle_time_ms"] == 240_000
    assert m["resolution_time_ms"] == 480_000
    assert r.closing_agent_id is None
    # ...but the g2 stint itself ended by abandonment.
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:05"), 60_000, True, False, True),
        ("g2", ms("10:05"), ms("10:08"), 180_000, False, True, False),
    ]


def test_abandoned_ticket_reopened_is_no_longer_abandoned() -> None:
    r = run(created("c", "10:00"), closed("x", "10:03"), assigned("a", "10:10", "a1"))
    m = r.metrics()
    assert m["abandoned"] is False
    assert m["abandon_time_ms"] is None
    assert m["status"] == "assigned"
    assert m["wait_time_ms"] == 600_000
    assert m["queue_time_ms"] == 180_000
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:03"), 180_000, False, True, False),
        ("g1", ms("10:10"), None, 0, True, False, False),
    ]


# -- effective time ----------------------------------------------------------------


def test_assignment_before_creation_counts_at_creation() -> None:
    r = run(assigned("a", "09:59", "a1"), created("c", "10:00"), closed("x", "10:10"))
    m = r.metrics()
    assert m["first_assigned_at"] == "2026-11-20T10:00:00.000Z"
    assert m["wait_time_ms"] == 0
    assert m["queue_time_ms"] == 0
    assert m["handle_time_ms"] == 600_000
    assert order(r) == ["c", "a", "x"]
    assert astints(r) == [("a1", ms("10:00"), ms("10:10"), 600_000, 0)]


def test_messages_before_creation_count_at_creation() -> None:
    r = run(
        customer("m1", "09:50"),
        created("c", "10:00"),
        assigned("a", "10:01", "a1"),
        agent_msg("m2", "10:05", "a1"),
        closed("x", "10:06"),
    )
    m = r.metrics()
    assert m["avg_reply_time_ms"] == 300_000  # from the effective 10:00, not 09:50
    assert m["first_response_time_ms"] == 300_000
    assert r.messages[0] == (ms("10:00"), "customer", None)
    assert order(r) == ["c", "m1", "a", "m2", "x"]


def test_close_before_creation_is_an_instant_abandonment() -> None:
    r = run(closed("x", "09:00"), created("c", "10:00"))
    m = r.metrics()
    assert m["closed_at"] == "2026-11-20T10:00:00.000Z"
    assert m["abandoned"] is True
    assert m["abandon_time_ms"] == 0
    assert m["resolution_time_ms"] == 0
    assert m["queue_time_ms"] == 0


def test_only_the_earliest_creation_routes_the_ticket() -> None:
    r = run(
        created("c2", "10:05", group="g2", channel="email"),
        created("c1", "10:00", group="g1", channel="whatsapp"),
        assigned("a", "10:02", "a1"),
        closed("x", "10:10"),
    )
    m = r.metrics()
    assert m["created_at"] == "2026-11-20T10:00:00.000Z"
    assert m["channel"] == "whatsapp"
    assert (m["first_group_id"], m["last_group_id"]) == ("g1", "g1")
    assert m["wait_time_ms"] == 120_000
    assert gstints(r) == [("g1", ms("10:00"), ms("10:10"), 120_000, True, False, False)]
    assert order(r) == ["c1", "a", "c2", "x"]


# -- ordering of ties ----------------------------------------------------------------


def test_ties_are_broken_by_type_rank_before_event_id() -> None:
    # At 10:05 the assignment (rank 2) precedes the close (rank 4) although its id sorts later,
    # so the close is the last word: the ticket is closed, not reopened.
    r = run(
        created("z-created", "10:00"),
        closed("a-close", "10:05"),
        assigned("z-assign", "10:05", "a1"),
        transferred("zz-transfer", "10:05", group="g2"),
        customer("b-msg", "10:05"),
    )
    assert order(r) == ["z-created", "zz-transfer", "z-assign", "b-msg", "a-close"]
    m = r.metrics()
    assert m["status"] == "closed"
    assert m["closed_at"] == "2026-11-20T10:05:00.000Z"
    assert m["abandoned"] is False
    assert m["queue_time_ms"] == 300_000
    assert m["handle_time_ms"] == 0
    assert m["last_group_id"] == "g2"
    # The transfer (rank 1) ran before the assignment: a1 took the ticket from g2.
    assert gstints(r) == [
        ("g1", ms("10:00"), ms("10:05"), 300_000, False, False, True),
        ("g2", ms("10:05"), ms("10:05"), 0, True, False, False),
    ]


def test_ties_of_one_type_are_broken_by_event_id_in_code_point_order() -> None:
    # "Z" (U+005A) < "a" (U+0061) < "é" (U+00E9): an agent message first is no reply.
    no_reply = run(
        created("c", "10:00"),
        agent_msg("Z", "10:05", "a1"),
        customer("a", "10:05"),
        customer("é", "10:05"),
    )
    assert order(no_reply) == ["c", "Z", "a", "é"]
    assert no_reply.metrics()["replies"] == 0
    assert no_reply.metrics()["first_response_time_ms"] == 300_000

    reply = run(
        created("c", "10:00"),
        customer("Z", "10:05"),
        agent_msg("a", "10:05", "a1"),
        customer("é", "10:05"),
    )
    assert order(reply) == ["c", "Z", "a", "é"]
    assert reply.metrics()["replies"] == 1
    assert reply.metrics()["avg_reply_time_ms"] == 0


def test_two_assignments_at_one_instant_are_ordered_by_event_id() -> None:
    r = run(
        created("c", "10:00"),
        assigned("b", "10:02", "a2"),
        assigned("a", "10:02", "a1"),
        closed("x", "10:10"),
    )
    assert r.metrics()["last_agent_id"] == "a2"
    assert r.metrics()["agents_involved"] == 2
    assert astints(r) == [
        ("a1", ms("10:02"), ms("10:02"), 0, 0),
        ("a2", ms("10:02"), ms("10:10"), 480_000, 0),
    ]


# -- partial tickets -------------------------------------------------------------------


def test_partial_ticket_has_only_its_counts() -> None:
    r = run(
        assigned("a", "10:00", "a1"),
        transferred("t", "10:01", group="g2"),
        customer("m1", "10:03"),
        agent_msg("m2", "10:02", "a1"),
        bot("m3", "10:04"),
        customer("m4", "10:05"),
        closed("x", "10:10"),
    )
    assert r.partial
    assert r.metrics() == {
        "created_at": None,
        "closed_at": None,
        "status": "partial",
        "channel": None,
        "first_group_id": None,
        "last_group_id": None,
        "last_agent_id": None,
        "first_assigned_at": None,
        "wait_time_ms": None,
        "abandoned": None,
        "abandon_time_ms": None,
        "queue_time_ms": None,
        "first_response_time_ms": None,
        "handle_time_ms": None,
        "resolution_time_ms": None,
        "transfers": 1,
        "customer_messages": 2,
        "agent_messages": 1,
        "bot_messages": 1,
        "avg_reply_time_ms": None,
        "replies": None,
        "agents_involved": None,
    }
    assert r.group_stints == []
    assert r.agent_stints == []
    assert r.replies == []
    assert order(r) == ["a", "t", "m2", "m1", "m3", "m4", "x"]
    assert r.messages == [
        (ms("10:02"), "agent", "a1"),
        (ms("10:03"), "customer", None),
        (ms("10:04"), "bot", None),
        (ms("10:05"), "customer", None),
    ]


def test_partial_ticket_becomes_complete_when_the_creation_arrives() -> None:
    events = [assigned("a", "10:02", "a1"), closed("x", "10:10")]
    assert run(*events).metrics()["status"] == "partial"
    m = run(*events, created("c", "10:00")).metrics()
    assert m["status"] == "closed"
    assert m["wait_time_ms"] == 120_000
    assert m["resolution_time_ms"] == 600_000


# -- replies and messages -----------------------------------------------------------------


def test_reply_is_measured_from_the_first_unanswered_customer_message() -> None:
    r = run(
        created("c", "10:00"),
        agent_msg("m0", "10:00:10", "a1"),  # before any customer message: not a reply
        assigned("a", "10:00:30", "a1"),
        customer("m1", "10:01"),
        customer("m2", "10:02"),
        bot("m3", "10:02:30"),  # automation answers nothing
        agent_msg("m4", "10:04", "a1"),  # reply: 3 min after m1
        agent_msg("m5", "10:05", "a1"),  # a second agent message is no reply
        customer("m6", "10:06"),
        agent_msg("m7", "10:06:30", "a1"),  # reply: 30 s
        customer("m8", "10:07"),
        bot("m9", "10:08"),  # unanswered by an agent
        closed("x", "10:09"),
    )
    m = r.metrics()
    assert m["replies"] == 2
    assert m["avg_reply_time_ms"] == 105_000
    assert r.replies == [(ms("10:04"), 180_000), (ms("10:06:30"), 30_000)]
    assert m["first_response_time_ms"] == 10_000
    assert (m["customer_messages"], m["agent_messages"], m["bot_messages"]) == (4, 4, 2)


def test_average_reply_time_may_be_fractional() -> None:
    r = run(
        created("c", "10:00"),
        customer("m1", "10:01"),
        agent_msg("m2", "10:01:00.001", "a1"),
        customer("m3", "10:02"),
        agent_msg("m4", "10:02:00.002", "a1"),
    )
    assert r.metrics()["avg_reply_time_ms"] == 1.5
    assert r.metrics()["replies"] == 2


def test_agents_involved_counts_holders_not_senders() -> None:
    r = run(
        created("c", "10:00"),
        assigned("a", "10:01", "a1"),
        agent_msg("m", "10:02", "a2"),  # a2 never holds the ticket
        transferred("t", "10:03", agent="a3"),
        closed("x", "10:04"),
    )
    m = r.metrics()
    assert m["agents_involved"] == 2
    assert m["agent_messages"] == 1
    assert r.first_response_agent_id == "a2"
    assert astints(r) == [
        ("a1", ms("10:01"), ms("10:03"), 120_000, 0),
        ("a3", ms("10:03"), ms("10:04"), 60_000, 0),
    ]


def test_messages_are_credited_only_to_the_holding_agent() -> None:
    r = run(
        created("c", "10:00"),
        agent_msg("m0", "10:00:30", "a1"),  # before a1 holds it
        assigned("a", "10:01", "a1"),
        agent_msg("m1", "10:02", "a1"),
        agent_msg("m2", "10:03", "a2"),  # a2 is not the holder yet
        agent_msg("m3", "10:04", "a1"),
        transferred("t", "10:05", agent="a2"),
        agent_msg("m4", "10:06", "a2"),
        agent_msg("m5", "10:07", "a1"),  # a1 no longer holds it
        closed("x", "10:08"),
        agent_msg("m6", "10:09", "a2"),  # after close
    )
    assert r.metrics()["agent_messages"] == 7
    assert astints(r) == [
        ("a1", ms("10:01"), ms("10:05"), 240_000, 2),
        ("a2", ms("10:05"), ms("10:08"), 180_000, 1),
    ]


# -- dedupe ------------------------------------------------------------------------------


def test_dedupe_keeps_one_copy_of_an_identical_event() -> None:
    line = canonical(created("c", "10:00"))
    events, version = dedupe([line, line])
    assert version == 1
    assert events == [orjson.loads(line)]


def test_dedupe_keeps_the_canonically_smallest_variant() -> None:
    agent = canonical(closed("x", "10:10", by="agent"))
    system = canonical(closed("x", "10:10", by="system"))
    early = canonical(closed("x", "10:05", by="system"))
    for lines in itertools.permutations([system, agent, early]):
        events, version = dedupe(lines)
        assert version == 3
        assert len(events) == 1
        # '"closed_by":"agent"' < '"closed_by":"system"', and closed_by precedes occurred_at
        assert events[0]["closed_by"] == "agent"
        assert events[0]["occurred_at"] == "2026-11-20T10:10:00.000Z"


def test_dedupe_compares_canonical_bytes_not_content_length() -> None:
    plain = closed("x", "10:10")
    with_attributes = validate({**plain, "attributes": {"note": "a longer variant"}}, NOW)
    for lines in (
        [canonical(plain), canonical(with_attributes)],
        [canonical(with_attributes), canonical(plain)],
    ):
        events, version = dedupe(lines)
        assert version == 2
        assert events == [with_attributes]  # '{"attributes":' < '{"closed_by"…' < '{"event_id"'


def test_dedupe_version_counts_distinct_variants() -> None:
    a = canonical(created("c", "10:00"))
    b = canonical(created("c", "10:00", group="g2"))
    c = canonical(closed("x", "10:10"))
    events, version = dedupe([a, c, a, b, c, a])
    assert version == 3
    assert sorted(e["event_id"] for e in events) == ["c", "x"]
    kept = next(e for e in events if e["event_id"] == "c")
    assert kept["group_id"] == "g1"  # '"g1"' < '"g2"'
    assert dedupe([])[1] == 0


def test_duplicates_do_not_change_the_metrics() -> None:
    events = [
        created("c", "10:00"),
        assigned("a", "10:02", "a1"),
        transferred("t", "10:04", group="g2"),
        closed("x", "10:10"),
    ]
    lines = [canonical(e) for e in events]
    once, _ = dedupe(lines)
    thrice, _ = dedupe(lines * 3)
    assert evaluate(thrice).metrics() == evaluate(once).metrics()
    m = evaluate(thrice).metrics()
    assert m["transfers"] == 1
    assert m["queue_time_ms"] == 120_000 + 360_000
