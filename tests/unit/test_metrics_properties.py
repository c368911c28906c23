"""Property tests of the metric engine: a pure function of the *set* of events (SPEC §1)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.enricher.metrics import TicketResult, dedupe, evaluate
from shared.events import canonical, format_ms, validate

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DAY_START = 1_795_132_800_000  # 2026-11-20T00:00:00.000Z
DAY_MS = 86_400_000
RANK = {
    "ticket_created": 0,
    "ticket_transferred": 1,
    "ticket_assigned": 2,
    "message_sent": 3,
    "ticket_closed": 4,
}
AGENTS = st.sampled_from(["a1", "a2", "a3"])
GROUPS = st.sampled_from(["g1", "g2", "g3"])
COUNTS = ("transfers", "customer_messages", "agent_messages", "bot_messages")
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

# Offsets within the day: a coarse grid (many ties, so type rank and event_id matter) or anywhere.
OFFSETS = st.one_of(
    st.builds(
        lambda minute, extra: minute * 60_000 + extra,
        st.integers(0, 40),
        st.sampled_from([0, 0, 0, 1, 999]),
    ),
    st.integers(0, DAY_MS - 1),
)


@st.composite
def fields_of(draw: st.DrawFn, etype: str) -> dict[str, Any]:
    if etype == "ticket_created":
        channel = draw(st.sampled_from(["whatsapp", "webchat", "email", "other"]))
        return {"channel": channel, "group_id": draw(GROUPS)}
    if etype == "ticket_assigned":
        out = {"agent_id": draw(AGENTS)}
        if draw(st.booleans()):
            out["group_id"] = draw(GROUPS)
        return out
    if etype == "ticket_transferred":
        which = draw(st.sampled_from(["group", "agent", "both"]))
        out = {}
        if which != "agent":
            out["to_group_id"] = draw(GROUPS)
        if which != "group":
            out["to_agent_id"] = draw(AGENTS)
        return out
    if etype == "message_sent":
        sender = draw(st.sampled_from(["customer", "agent", "bot"]))
        return (
            {"sender": sender, "agent_id": draw(AGENTS)}
            if sender == "agent"
            else {"sender": sender}
        )
    closed_by = draw(st.sampled_from([None, "agent", "customer", "system"]))
    return {} if closed_by is None else {"closed_by": closed_by}


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A valid set of distinct events of one ticket; usually, not always, with a creation."""
    types = draw(
        st.lists(
            st.sampled_from(
                [
                    "ticket_assigned",
                    "ticket_transferred",
                    "message_sent",
                    "message_sent",
                    "ticket_closed",
                ]
            ),
            max_size=14,
        )
    )
    n_created = draw(st.sampled_from([0, 1, 1, 1, 1, 1, 2]))
    types = ["ticket_created"] * n_created + types
    events = []
    for i, etype in enumerate(types):
        prefix = draw(st.sampled_from(["", "Z", "a", "é", "e"]))
        raw = {
            "event_id": f"{prefix}{i}",
            "tenant_id": "acme",
            "ticket_id": "t-1",
            "type": etype,
            "occurred_at": format_ms(DAY_START + draw(OFFSETS)),
            **draw(fields_of(etype)),
        }
        events.append(validate(raw, NOW))
    return events


def snapshot(r: TicketResult) -> dict[str, Any]:
    """Everything observable of an evaluation."""
    return {
        "metrics": r.metrics(),
        "group_stints": [s.to_json() for s in r.group_stints],
        "agent_stints": [s.to_json() for s in r.agent_stints],
        "events": [canonical(e) for e in r.events],
        "replies": r.replies,
        "messages": r.messages,
        "first_response_agent_id": r.first_response_agent_id,
        "closing_agent_id": r.closing_agent_id,
        "queue_since": r.queue_since,
    }


def ms_of(event: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)


@PROPERTY_SETTINGS
@given(events=histories(), seed=st.randoms(use_true_random=False))
def test_result_does_not_depend_on_arrival_order(
    events: list[dict[str, Any]], seed: random.Random
) -> None:
    shuffled = list(events)
    seed.shuffle(shuffled)
    assert snapshot(evaluate(shuffled)) == snapshot(evaluate(events))


@PROPERTY_SETTINGS
@given(events=histories(), seed=st.randoms(use_true_random=False))
def test_duplicates_after_dedupe_change_nothing(
    events: list[dict[str, Any]], seed: random.Random
) -> None:
    lines = [canonical(e) for e in events]
    resent = lines + [seed.choice(lines) for _ in range(len(lines))] if lines else []
    seed.shuffle(resent)
    kept, version = dedupe(resent)
    assert version == len(events)
    assert sorted(canonical(e) for e in kept) == sorted(lines)
    assert snapshot(evaluate(kept)) == snapshot(evaluate(events))


@PROPERTY_SETTINGS
@given(
    events=histories(),
    variants=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_conflicting_variants_resolve_to_the_canonically_smallest(
    events: list[dict[str, Any]], variants: list[int], seed: random.Random
) -> None:
    if not events:
        return
    target = seed.randrange(len(events))
    original = events[target]
    alternatives = [original] + [{**original, "attributes": {"v": v}} for v in variants]
    smallest = min(alternatives, key=canonical)
    lines = [canonical(e) for e in events] + [canonical(a) for a in alternatives]
    seed.shuffle(lines)
    kept, version = dedupe(lines)
    assert version == len(events) + len({canonical(a) for a in alternatives}) - 1
    expected = [smallest if i == target else e for i, e in enumerate(events)]
    assert sorted(canonical(e) for e in kept) == sorted(canonical(e) for e in expected)
    assert snapshot(evaluate(kept)) == snapshot(evaluate(expected))


@PROPERTY_SETTINGS
@given(events=histories())
def test_invariants(events: list[dict[str, Any]]) -> None:
    r = evaluate(events)
    m = r.metrics()
    creations = [ms_of(e) for e in events if e["type"] == "ticket_created"]
    by_type = {t: [e for e in events if e["type"] == t] for t in RANK}
    messages = by_type["message_sent"]

    # Counts hold for every ticket, partial or not.
    assert m["transfers"] == len(by_type["ticket_transferred"])
    for sender in ("customer", "agent", "bot"):
        assert m[f"{sender}_messages"] == sum(e["sender"] == sender for e in messages)

    # Evaluation order: (effective time, type rank, event_id).
    floor = min(creations) if creations else None
    eff = {e["event_id"]: ms_of(e) if floor is None else max(ms_of(e), floor) for e in events}
    expected_order = sorted(
        events, key=lambda e: (eff[e["event_id"]], RANK[e["type"]], e["event_id"])
    )
    assert [e["event_id"] for e in r.events] == [e["event_id"] for e in expected_order]
    assert [t for t, _, _ in r.messages] == sorted(eff[e["event_id"]] for e in messages)

    if floor is None:
        assert m["status"] == "partial"
        assert all(v is None for k, v in m.items() if k not in (*COUNTS, "status"))
        assert r.group_stints == [] and r.agent_stints == []
        return

    assert m["created_at"] == format_ms(floor)
    last = max(eff.values())
    status = m["status"]
    assert status in {"waiting", "assigned", "closed"}
    assert (m["closed_at"] is None) == (status != "closed")
    assert (r.queue_since is None) == (status != "waiting")
    for name in ("wait_time_ms", "first_response_time_ms", "resolution_time_ms"):
        assert m[name] is None or m[name] >= 0
    assert m["queue_time_ms"] >= 0
    assert m["handle_time_ms"] >= 0
    assert m["queue_time_ms"] + m["handle_time_ms"] <= last - floor
    assert m["abandoned"] == (status == "closed" and m["first_assigned_at"] is None)
    assert m["abandon_time_ms"] == (m["resolution_time_ms"] if m["abandoned"] else None)
    if m["first_assigned_at"] is None:
        assert m["wait_time_ms"] is None
        assert r.agent_stints == [] and m["handle_time_ms"] == 0
    if status == "closed":
        assert m["queue_time_ms"] + m["handle_time_ms"] <= m["resolution_time_ms"]
        if len(by_type["ticket_closed"]) == 1:  # no reopening: always waiting or held
            assert m["queue_time_ms"] + m["handle_time_ms"] == m["resolution_time_ms"]

    # Replies.
    assert m["replies"] == len(r.replies) <= min(m["customer_messages"], m["agent_messages"])
    assert all(v >= 0 for _, v in r.replies)
    assert (m["avg_reply_time_ms"] is None) == (m["replies"] == 0)

    # Group stints: consecutive, one open at most (the last one, unless closed).
    gs = r.group_stints
    assert gs and gs[0].group_id == m["first_group_id"]
    assert gs[-1].group_id == m["last_group_id"]
    assert (gs[-1].ended_at is None) == (status != "closed")
    assert all(s.ended_at is not None for s in gs[:-1])
    for a, b in itertools.pairwise(gs):
        assert a.started_at <= a.ended_at <= b.started_at  # type: ignore[operator]
    for s in gs:
        assert s.queue_time_ms >= 0
        assert not (s.abandoned and s.transferred_out)
        if s.ended_at is not None:
            assert s.queue_time_ms <= s.ended_at - s.started_at
    total_stint_queue = sum(s.queue_time_ms for s in gs)
    if status == "waiting":
        # Stints left while waiting already hold the part of the open interval they saw.
        assert total_stint_queue >= m["queue_time_ms"]
    else:
        assert total_stint_queue == m["queue_time_ms"]

    # Agent stints: consecutive, only the last may be open and only while assigned.
    ags = r.agent_stints
    assert sum(s.handle_time_ms for s in ags) == m["handle_time_ms"]
    assert all(s.ended_at is not None for s in ags[:-1])
    assert (bool(ags) and ags[-1].ended_at is None) == (status == "assigned")
    for a, b in itertools.pairwise(ags):
        assert a.started_at <= a.ended_at <= b.started_at  # type: ignore[operator]
    for s in ags:
        if s.ended_at is not None:
            assert s.handle_time_ms == s.ended_at - s.started_at
    assert m["agents_involved"] == len({s.agent_id for s in ags})
    assert m["last_agent_id"] == (ags[-1].agent_id if ags else None)
    assert sum(s.messages for s in ags) <= m["agent_messages"]
    if r.closing_agent_id is not None:
        closes = {eff[e["event_id"]] for e in by_type["ticket_closed"]}
        assert status == "closed"
        assert ags[-1].agent_id == r.closing_agent_id
        assert ags[-1].ended_at in closes
    if status == "closed":  # closed from the queue exactly when nobody held it
        assert gs[-1].abandoned == (r.closing_agent_id is None)
    else:
        assert r.closing_agent_id is None
