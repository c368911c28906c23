"""The metric engine of SPEC §2: a pure function of a ticket's set of events.

Events are sorted by (effective time, type rank, event_id) and walked once.
Nothing here knows about storage or arrival order, which is what makes the
numbers independent of batching, retries and concurrency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.events import evaluation_order, format_ms


def dedupe(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], int]:
    """Keep one event per id: the one whose canonical JSON sorts first.

    Returns the events and the number of distinct variants seen, which only
    grows as the ticket's event set grows and so serves as its version.
    """
    variants = set(lines)
    best: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for line in variants:
        event = orjson.loads(line)
        eid = event["event_id"]
        kept = best.get(eid)
        if kept is None or line < kept[0]:
            best[eid] = (line, event)
    return [event for _, event in best.values()], len(variants)


@dataclass(slots=True)
class GroupStint:
    group_id: str
    started_at: int
    ended_at: int | None = None
    queue_time_ms: int = 0
    answered: bool = False
    abandoned: bool = False
    transferred_out: bool = False

    def row(self) -> tuple[str, int, int | None, int, bool, bool, bool]:
        """The stint in ms, as the loaders store it."""
        return (self.group_id, self.started_at, self.ended_at, self.queue_time_ms,
                self.answered, self.abandoned, self.transferred_out)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "started_at": format_ms(self.started_at),
            "ended_at": None if self.ended_at is None else format_ms(self.ended_at),
            "queue_time_ms": self.queue_time_ms,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "transferred_out": self.transferred_out,
        }


@dataclass(slots=True)
class AgentStint:
    agent_id: str
    started_at: int
    ended_at: int | None = None
    handle_time_ms: int = 0
    messages: int = 0

    def row(self) -> tuple[str, int, int | None, int, int]:
        """The stint in ms, as the loaders store it."""
        return (self.agent_id, self.started_at, self.ended_at, self.handle_time_ms, self.messages)

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "started_at": format_ms(self.started_at),
            "ended_at": None if self.ended_at is None else format_ms(self.ended_at),
            "handle_time_ms": self.handle_time_ms,
            "messages": self.messages,
        }


@dataclass(slots=True)
class TicketResult:
    """Everything the loaders need; times are epoch milliseconds."""

    status: str = "partial"
    created_at: int | None = None
    closed_at: int | None = None
    channel: str | None = None
    first_group_id: str | None = None
    group_id: str | None = None
    agent_id: str | None = None
    last_agent_id: str | None = None
    first_assigned_at: int | None = None
    first_response_at: int | None = None
    first_response_agent_id: str | None = None
    closing_agent_id: str | None = None
    queue_since: int | None = None
    queue_time_ms: int = 0
    handle_time_ms: int = 0
    transfers: int = 0
    customer_messages: int = 0
    agent_messages: int = 0
    bot_messages: int = 0
    agents: set[str] = field(default_factory=set)
    # (effective time, reply time) of each reply.
    replies: list[tuple[int, int]] = field(default_factory=list)
    # (effective time, sender, agent_id) of each message.
    messages: list[tuple[int, str, str | None]] = field(default_factory=list)
    group_stints: list[GroupStint] = field(default_factory=list)
    agent_stints: list[AgentStint] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.created_at is None

    @property
    def abandoned(self) -> bool:
        return self.status == "closed" and self.first_assigned_at is None

    def metrics(self) -> dict[str, Any]:
        """The per-ticket metrics exactly as SPEC §2 names them."""
        counts = {
            "transfers": self.transfers,
            "customer_messages": self.customer_messages,
            "agent_messages": self.agent_messages,
            "bot_messages": self.bot_messages,
        }
        if self.created_at is None:
            nulls = dict.fromkeys(
                [
                    "created_at",
                    "closed_at",
                    "channel",
                    "first_group_id",
                    "last_group_id",
                    "last_agent_id",
                    "first_assigned_at",
                    "wait_time_ms",
                    "abandoned",
                    "abandon_time_ms",
                    "queue_time_ms",
                    "first_response_time_ms",
                    "handle_time_ms",
                    "resolution_time_ms",
                    "avg_reply_time_ms",
                    "replies",
                    "agents_involved",
                ]
            )
            return {**nulls, "status": "partial", **counts}
        created = self.created_at

        def since_created(t: int | None) -> int | None:
            return None if t is None else t - created

        resolution = since_created(self.closed_at)
        reply_times = [v for _, v in self.replies]
        return {
            "created_at": format_ms(created),
            "closed_at": None if self.closed_at is None else format_ms(self.closed_at),
            "status": self.status,
            "channel": self.channel,
            "first_group_id": self.first_group_id,
            "last_group_id": self.group_id,
            "last_agent_id": self.last_agent_id,
            "first_assigned_at": (
                None if self.first_assigned_at is None else format_ms(self.first_assigned_at)
            ),
            "wait_time_ms": since_created(self.first_assigned_at),
            "abandoned": self.abandoned,
            "abandon_time_ms": resolution if self.abandoned else None,
            "queue_time_ms": self.queue_time_ms,
            "first_response_time_ms": since_created(self.first_response_at),
            "handle_time_ms": self.handle_time_ms,
            "resolution_time_ms": resolution,
            **counts,
            "avg_reply_time_ms": sum(reply_times) / len(reply_times) if reply_times else None,
            "replies": len(reply_times),
            "agents_involved": len(self.agents),
        }


class _Walk:
    """The state machine of one ticket; methods are the transitions of SPEC §1."""

    def __init__(self, r: TicketResult) -> None:
        self.r = r
        self.hold_start: int | None = None
        self.pending_customer: int | None = None

    # -- intervals -------------------------------------------------------
    def _stint(self) -> GroupStint | None:
        stints = self.r.group_stints
        return stints[-1] if stints and stints[-1].ended_at is None else None

    def _end_queue(self, t: int) -> None:
        r = self.r
        if r.queue_since is None:
            return
        r.queue_time_ms += t - r.queue_since
        stint = self._stint()
        if stint is not None:
            stint.queue_time_ms += t - max(r.queue_since, stint.started_at)
        r.queue_since = None

    def _end_hold(self, t: int) -> None:
        r = self.r
        if self.hold_start is None:
            return
        r.handle_time_ms += t - self.hold_start
        stint = r.agent_stints[-1]
        stint.ended_at = t
        stint.handle_time_ms = t - self.hold_start
        self.hold_start = None
        r.agent_id = None

    def _leave_group(self, t: int, *, transferred: bool) -> None:
        stint = self._stint()
        if stint is None:
            return
        r = self.r
        if r.queue_since is not None:
            stint.queue_time_ms += t - max(r.queue_since, stint.started_at)
        stint.ended_at = t
        stint.transferred_out = transferred

    def _enter_group(self, group_id: str, t: int) -> None:
        self.r.group_id = group_id
        self.r.group_stints.append(GroupStint(group_id=group_id, started_at=t))

    def _reopen(self) -> None:
        self.r.closed_at = None
        self.r.closing_agent_id = None

    # -- transitions -------------------------------------------------------
    def created(self, e: dict[str, Any], t: int) -> None:
        r = self.r
        if r.status != "partial":
            return  # only the earliest creation routes the ticket
        r.status = "waiting"
        r.channel = e["channel"]
        r.first_group_id = e["group_id"]
        r.queue_since = t
        self._enter_group(e["group_id"], t)

    def assign(self, agent_id: str, t: int) -> None:
        r = self.r
        if r.status == "assigned" and r.agent_id == agent_id:
            return
        if r.status == "closed":
            self._reopen()
            assert r.group_id is not None
            self._enter_group(r.group_id, t)
        elif r.status == "waiting":
            self._end_queue(t)
        else:
            self._end_hold(t)
        stint = self._stint()
        if stint is not None:
            stint.answered = True
        if r.first_assigned_at is None:
            r.first_assigned_at = t
        r.status = "assigned"
        r.agent_id = agent_id
        r.last_agent_id = agent_id
        r.agents.add(agent_id)
        self.hold_start = t
        r.agent_stints.append(AgentStint(agent_id=agent_id, started_at=t))

    def transferred(self, e: dict[str, Any], t: int) -> None:
        r = self.r
        r.transfers += 1
        to_group: str | None = e.get("to_group_id")
        to_agent: str | None = e.get("to_agent_id")
        if to_agent is not None:
            if to_group is not None and to_group != r.group_id:
                if r.status == "closed":
                    r.group_id = to_group  # the reopening stint starts in the new group
                else:
                    self._leave_group(t, transferred=True)
                    self._enter_group(to_group, t)
            self.assign(to_agent, t)
            stint = self._stint()
            if stint is not None:
                stint.answered = True  # held by an agent from its first instant
            return
        assert to_group is not None
        if r.status == "assigned":
            self._end_hold(t)
            r.queue_since = t
        elif r.status == "closed":
            self._reopen()
            r.queue_since = t
        if self._stint() is None or to_group != r.group_id:
            self._leave_group(t, transferred=True)
            self._enter_group(to_group, t)
        r.status = "waiting"

    def message(self, e: dict[str, Any], t: int) -> None:
        r = self.r
        sender: str = e["sender"]
        agent_id: str | None = e.get("agent_id")
        r.messages.append((t, sender, agent_id))
        if sender == "customer":
            r.customer_messages += 1
            if self.pending_customer is None:
                self.pending_customer = t
        elif sender == "bot":
            r.bot_messages += 1
        else:
            r.agent_messages += 1
            if r.first_response_at is None:
                r.first_response_at = t
                r.first_response_agent_id = agent_id
            if self.pending_customer is not None:
                r.replies.append((t, t - self.pending_customer))
                self.pending_customer = None
            if self.hold_start is not None and r.agent_id == agent_id:
                r.agent_stints[-1].messages += 1

    def closed(self, t: int) -> None:
        r = self.r
        if r.status != "closed":
            if r.status == "waiting":
                stint = self._stint()
                if stint is not None:
                    stint.abandoned = True
                self._end_queue(t)
            else:
                r.closing_agent_id = r.agent_id
                self._end_hold(t)
            self._leave_group(t, transferred=False)
            r.status = "closed"
        r.closed_at = t


def evaluate(events: Iterable[dict[str, Any]]) -> TicketResult:
    """Metrics of one ticket from its distinct events (see `dedupe`)."""
    created_at, order = evaluation_order(list(events))
    r = TicketResult(created_at=created_at, events=[item[3] for item in order])
    if created_at is None:
        for t, _, _, e in order:  # evaluation order, so `messages` is arrival-independent
            if e["type"] == "ticket_transferred":
                r.transfers += 1
            elif e["type"] == "message_sent":
                sender = e["sender"]
                r.messages.append((t, sender, e.get("agent_id")))
                if sender == "customer":
                    r.customer_messages += 1
                elif sender == "agent":
                    r.agent_messages += 1
                else:
                    r.bot_messages += 1
        return r
    walk = _Walk(r)
    for t, _, _, e in order:
        etype = e["type"]
        if etype == "ticket_created":
            walk.created(e, t)
        elif etype == "ticket_assigned":
            walk.assign(e["agent_id"], t)
        elif etype == "ticket_transferred":
            walk.transferred(e, t)
        elif etype == "message_sent":
            walk.message(e, t)
        else:
            walk.closed(t)
    return r
