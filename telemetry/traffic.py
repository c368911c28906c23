"""Realistic contact-centre traffic: a discrete-event model and how its events are delivered.

Everything here is a pure function of a `random.Random` and a start time in epoch
milliseconds, so tests drive it without a clock or a network.

`ContactCentre` simulates, per tenant, groups of agents with a limited number of
concurrent chats. Tickets arrive along a daily curve; a bot greets the customer;
the ticket waits in its group's queue until an agent has room (the customer may
abandon first); agent and customer exchange messages; some tickets are
transferred (to a group, and queue again, or straight to a free agent); the
ticket is closed, and a few are reopened later.

`Traffic` turns the model's events into deliveries: most at once, some
duplicated (the same event re-sent), some late, in slightly shuffled bodies of
at most 500 events per tenant.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from shared.events import format_ms

# Relative ticket arrivals by local hour (linear in between): quiet at night,
# peaks late morning and mid-afternoon, a dip at lunch.
DAILY_CURVE: Final = (
    0.06, 0.04, 0.03, 0.03, 0.04, 0.07, 0.15, 0.32, 0.58, 0.84, 1.00, 0.97,
    0.78, 0.74, 0.88, 0.95, 0.90, 0.74, 0.55, 0.42, 0.32, 0.22, 0.14, 0.09,
)  # fmt: skip
HOUR_MS: Final = 3_600_000
CHAT_CHANNELS: Final = frozenset({"whatsapp", "webchat", "other"})
Span = tuple[float, float]  # seconds, drawn uniformly


@dataclass(frozen=True)
class Params:
    """Knobs of the model and of delivery; the defaults are what `telemetry simulate` uses."""

    groups: tuple[tuple[str, float], ...] = (("sales", 0.3), ("support", 0.5), ("billing", 0.2))
    channels: tuple[tuple[str, float], ...] = (
        ("whatsapp", 0.5), ("webchat", 0.3), ("email", 0.12), ("other", 0.08))  # fmt: skip
    capacity: int = 2  # concurrent chats per agent
    staffing: float = 0.9  # agents' capacity / offered load at the busiest time of the run
    utc_offset_h: float = -3.0  # local time of the tenants, for the daily curve
    warmup_s: float = 600.0  # the model starts this long before the run (see Traffic)
    bot_greeting_s: Span = (0.3, 1.5)
    first_message_s: Span = (2.0, 20.0)
    p_bot_menu: float = 0.5  # a second bot message ("connecting you to ...") on chats
    p_bot_busy: float = 0.8  # a bot message when the ticket has to wait
    p_nudge: float = 0.3  # the customer writes again while waiting
    nudge_s: Span = (20.0, 90.0)
    patience_mean_s: float = 150.0  # exponential; waiting longer than this abandons
    routing_s: Span = (0.2, 2.0)  # from a free agent to the assignment
    agent_reply_s: Span = (5.0, 45.0)
    customer_reply_s: Span = (5.0, 90.0)
    p_customer_burst: float = 0.2  # the customer sends two messages in a row
    exchanges_mean: float = 3.0  # customer/agent exchanges after the first agent message
    p_transfer: float = 0.12
    p_transfer_to_agent: float = 0.35  # of transfers, straight to a free agent of another group
    closers: tuple[tuple[str, float, Span], ...] = (
        ("agent", 0.85, (3.0, 30.0)), ("customer", 0.10, (5.0, 60.0)),
        ("system", 0.05, (120.0, 300.0)))  # fmt: skip
    p_reopen: float = 0.04
    reopen_s: Span = (30.0, 600.0)
    p_duplicate: float = 0.02
    duplicate_s: Span = (1.0, 120.0)
    p_late: float = 0.01
    late_s: Span = (60.0, 600.0)
    max_body: int = 500
    p_swap: float = 0.2  # shuffling: chance to swap each pair of neighbours in a body


DEFAULT: Final = Params()


def daily_curve(t_ms: int, utc_offset_h: float) -> float:
    hour = (t_ms / HOUR_MS + utc_offset_h) % 24
    i = int(hour)
    frac = hour - i
    return DAILY_CURVE[i] * (1 - frac) + DAILY_CURVE[(i + 1) % 24] * frac


def _mean(span: Span) -> float:
    return (span[0] + span[1]) / 2


def _exchanges(p: Params) -> float:
    """Mean of the number of exchanges, an exponential rounded down."""
    return 1 / math.expm1(1 / p.exchanges_mean)


def hold_s(p: Params) -> float:
    """Rough mean time an agent holds a ticket: sizes the staff."""
    exchange = _mean(p.customer_reply_s) + _mean(p.agent_reply_s) + p.p_customer_burst * 8.5
    close = sum(w * _mean(s) for _, w, s in p.closers)
    return _mean(p.routing_s) + _mean(p.agent_reply_s) + _exchanges(p) * exchange + close


def events_per_ticket(p: Params) -> float:
    """Rough mean number of events per ticket: turns an event rate into arrivals."""
    chat = sum(w for c, w in p.channels if c in CHAT_CHANNELS)
    queued, abandoned = 0.4, 0.04  # shares of tickets; they depend on the load, hence rough
    opening = 2 + chat * (1 + p.p_bot_menu) + queued * (chat * p.p_bot_busy + p.p_nudge)
    talk = 3 + _exchanges(p) * (2 + p.p_customer_burst) + p.p_transfer * 5 + p.p_reopen * 6
    return opening + (1 - abandoned) * talk - abandoned * 0.5


def mean_event_age_s(p: Params) -> float:
    """Rough mean time from a ticket's creation to one of its events."""
    wait = 15.0  # mean time in queue; it depends on the load, hence rough
    return _mean(p.bot_greeting_s) + _mean(p.first_message_s) + wait + hold_s(p) / 2


@dataclass(eq=False, slots=True)
class _Agent:
    id: str
    group: _Group
    load: int = 0
    slot: int = 0  # index in its group's bucket of agents with this load


@dataclass(eq=False, slots=True)
class _Group:
    name: str
    by_load: list[list[_Agent]]  # agents by number of chats held, 0 to capacity
    queue: deque[tuple[_Ticket, int]] = field(default_factory=deque)
    waiting: int = 0

    def move(self, agent: _Agent, load: int) -> None:
        """Give the agent a new load, in O(1)."""
        bucket = self.by_load[agent.load]
        last = bucket.pop()
        if last is not agent:
            bucket[agent.slot] = last
            last.slot = agent.slot
        agent.load = load
        agent.slot = len(self.by_load[load])
        self.by_load[load].append(agent)


@dataclass(eq=False, slots=True)
class _Tenant:
    id: str
    groups: dict[str, _Group]
    arrivals_per_s: float  # at the curve's mean over the run


@dataclass(eq=False, slots=True)
class _Ticket:
    tenant: _Tenant
    id: str
    channel: str
    group: _Group
    seq: int = 0
    last_ms: int = -1
    token: int = 0  # bumped on every change of state: actions scheduled before are dropped
    state: str = "new"  # new, waiting, routing, assigned, closed
    agent: _Agent | None = None
    exchanges: int = 0
    transferred: bool = False
    reopened: bool = False


class ContactCentre:
    """The discrete-event model of every tenant; events come out in time order (±1 ms).

    Arrivals are scaled so that `rate` events/s come out on average over
    [start_ms, start_ms + span_s], the daily curve shaping them within it.
    """

    def __init__(
        self,
        rng: random.Random,
        tenants: list[str],
        rate: float,
        start_ms: int,
        span_s: float,
        params: Params = DEFAULT,
    ) -> None:
        self.rng = rng
        self.p = params
        self.now = start_ms
        self.stats: Counter[str] = Counter()
        self._actions: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._ready: deque[tuple[int, dict[str, Any]]] = deque()
        self._run = f"{start_ms // 1000:x}"
        self._tickets = 0
        samples = [start_ms + int(i * 60_000) for i in range(int(span_s // 60) + 1)]
        curve = [daily_curve(t, params.utc_offset_h) for t in samples]
        self._mean_curve = sum(curve) / len(curve)
        peak = max(curve) / self._mean_curve
        sizes = [rng.uniform(0.5, 1.5) for _ in tenants]
        self.tenants: list[_Tenant] = []
        for tenant_id, size in zip(tenants, sizes, strict=True):
            arrivals = rate * size / sum(sizes) / events_per_ticket(params)
            groups = {}
            for name, share in params.groups:
                group = _Group(name, [[] for _ in range(params.capacity + 1)])
                needed = arrivals * peak * share * hold_s(params) / params.capacity
                for i in range(max(1, round(params.staffing * needed))):
                    group.by_load[0].append(_Agent(f"{name}-agent-{i + 1}", group, slot=i))
                groups[name] = group
            tenant = _Tenant(tenant_id, groups, arrivals)
            self.tenants.append(tenant)
            self._next_arrival(tenant)

    # -- the event loop ---------------------------------------------------------------

    def next_time(self) -> int:
        """Time of the next event to come out (it may be run now, or later)."""
        self._fill()
        return self._ready[0][0]

    def pop(self) -> tuple[int, dict[str, Any]]:
        """The next event and its time in epoch ms."""
        self._fill()
        return self._ready.popleft()

    def _fill(self) -> None:
        while not self._ready:
            self.now, _, action = heapq.heappop(self._actions)
            action()

    def _at(self, t_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._actions, (t_ms, self._seq, action))

    def _after(self, ticket: _Ticket, span: Span, step: Callable[[_Ticket], None]) -> None:
        """Run `step` a random time later, unless the ticket changed state meanwhile."""
        token = ticket.token

        def action() -> None:
            if ticket.token == token:
                step(ticket)

        self._at(self.now + max(1, self._ms(span)), action)

    def _ms(self, span: Span) -> int:
        return int(self.rng.uniform(*span) * 1000)

    def _pick(self, weighted: tuple[tuple[str, float], ...]) -> str:
        names = [n for n, _ in weighted]
        return self.rng.choices(names, [w for _, w in weighted])[0]

    def _emit(self, ticket: _Ticket, etype: str, **fields: Any) -> None:
        t = max(self.now, ticket.last_ms + 1)  # a ticket's events are strictly ordered
        ticket.last_ms = t
        ticket.seq += 1
        event = {"event_id": f"{ticket.id}-{ticket.seq}", "tenant_id": ticket.tenant.id,
                 "ticket_id": ticket.id, "type": etype, "occurred_at": format_ms(t),
                 **fields}  # fmt: skip
        self._ready.append((t, event))
        self.stats[etype] += 1

    def _change(self, ticket: _Ticket, state: str) -> None:
        ticket.state = state
        ticket.token += 1

    # -- arrivals ---------------------------------------------------------------------

    def _rate_at(self, tenant: _Tenant, t_ms: int) -> float:
        curve = daily_curve(t_ms, self.p.utc_offset_h) / self._mean_curve
        return tenant.arrivals_per_s * curve

    def _next_arrival(self, tenant: _Tenant) -> None:
        """Thinning: candidates at the curve's maximum, kept in proportion to the curve."""
        top = tenant.arrivals_per_s * max(DAILY_CURVE) / self._mean_curve
        t = self.now + max(1, int(self.rng.expovariate(top) * 1000))

        def arrive() -> None:
            if self.rng.random() * top < self._rate_at(tenant, self.now):
                self._create(tenant)
            self._next_arrival(tenant)

        self._at(t, arrive)

    def _create(self, tenant: _Tenant) -> None:
        self._tickets += 1
        group = tenant.groups[self._pick(self.p.groups)]
        ticket_id = f"t{self._run}-{self._tickets:07d}-{self.rng.randrange(16**4):04x}"
        ticket = _Ticket(tenant, ticket_id, self._pick(self.p.channels), group)
        self._emit(ticket, "ticket_created", channel=ticket.channel, group_id=group.name)
        self.stats["tickets"] += 1
        if ticket.channel in CHAT_CHANNELS:
            self._after(ticket, self.p.bot_greeting_s, self._greet)
        else:
            self._after(ticket, (0.1, 1.0), self._first_message)

    def _greet(self, ticket: _Ticket) -> None:
        self._emit(ticket, "message_sent", sender="bot")
        self._after(ticket, self.p.first_message_s, self._first_message)

    def _first_message(self, ticket: _Ticket) -> None:
        self._emit(ticket, "message_sent", sender="customer")
        if ticket.channel in CHAT_CHANNELS and self.rng.random() < self.p.p_bot_menu:
            self._after(ticket, (0.5, 2.0), self._menu)
        else:
            self._enqueue(ticket, ticket.group)

    def _menu(self, ticket: _Ticket) -> None:
        self._emit(ticket, "message_sent", sender="bot")
        self._enqueue(ticket, ticket.group)

    # -- queues and agents ------------------------------------------------------------

    def _free_agent(self, group: _Group) -> _Agent | None:
        """One of the least busy agents, if any has room."""
        for bucket in group.by_load[:-1]:
            if bucket:
                return bucket[self.rng.randrange(len(bucket))]
        return None

    def _reserve(self, ticket: _Ticket, agent: _Agent) -> None:
        agent.group.move(agent, agent.load + 1)
        ticket.agent = agent
        ticket.group = agent.group

    def _release(self, ticket: _Ticket) -> None:
        agent, ticket.agent = ticket.agent, None
        if agent is not None:
            agent.group.move(agent, agent.load - 1)
            self._dispatch(agent.group)

    def _enqueue(self, ticket: _Ticket, group: _Group) -> None:
        ticket.group = group
        self._change(ticket, "waiting")
        agent = self._free_agent(group)
        if agent is not None:
            self._route(ticket, agent)
            return
        group.queue.append((ticket, ticket.token))
        group.waiting += 1
        self.stats["queued"] += 1
        self.stats["max_waiting"] = max(self.stats["max_waiting"], group.waiting)
        if ticket.channel in CHAT_CHANNELS and self.rng.random() < self.p.p_bot_busy:
            self._after(ticket, (0.5, 3.0), self._bot_busy)
        if self.rng.random() < self.p.p_nudge:
            self._after(ticket, self.p.nudge_s, self._nudge)
        patience = self.rng.expovariate(1 / self.p.patience_mean_s)
        self._after(ticket, (patience, patience), self._abandon)

    def _bot_busy(self, ticket: _Ticket) -> None:
        self._emit(ticket, "message_sent", sender="bot")

    def _nudge(self, ticket: _Ticket) -> None:
        self._emit(ticket, "message_sent", sender="customer")

    def _abandon(self, ticket: _Ticket) -> None:
        ticket.group.waiting -= 1
        self._change(ticket, "closed")
        self._emit(ticket, "ticket_closed", closed_by="customer")
        self.stats["abandoned"] += 1

    def _dispatch(self, group: _Group) -> None:
        while group.queue:
            ticket, token = group.queue[0]
            if ticket.token != token:  # abandoned or moved since it queued
                group.queue.popleft()
                continue
            agent = self._free_agent(group)
            if agent is None:
                return
            group.queue.popleft()
            group.waiting -= 1
            self._route(ticket, agent)

    def _route(self, ticket: _Ticket, agent: _Agent) -> None:
        self._reserve(ticket, agent)
        self._change(ticket, "routing")
        self._after(ticket, self.p.routing_s, self._assign)

    def _assign(self, ticket: _Ticket) -> None:
        assert ticket.agent is not None
        self._change(ticket, "assigned")
        self._emit(ticket, "ticket_assigned", agent_id=ticket.agent.id, group_id=ticket.group.name)
        self._converse(ticket)

    def _converse(self, ticket: _Ticket) -> None:
        """A new agent takes over: a first answer, then some exchanges."""
        if ticket.transferred or ticket.reopened:
            ticket.exchanges = self.rng.randint(0, 2)
        else:
            ticket.exchanges = min(8, int(self.rng.expovariate(1 / self.p.exchanges_mean)))
        self._after(ticket, self.p.agent_reply_s, self._agent_message)

    # -- the conversation -------------------------------------------------------------

    def _agent_message(self, ticket: _Ticket) -> None:
        assert ticket.agent is not None
        self._emit(ticket, "message_sent", sender="agent", agent_id=ticket.agent.id)
        if ticket.exchanges > 0:
            ticket.exchanges -= 1
            self._after(ticket, self.p.customer_reply_s, self._customer_message)
        elif not ticket.transferred and self.rng.random() < self.p.p_transfer:
            self._after(ticket, (2.0, 15.0), self._transfer)
        else:
            closer = self.rng.choices(self.p.closers, [w for _, w, _ in self.p.closers])[0]
            self._after(ticket, closer[2], lambda t: self._close(t, closer[0]))

    def _customer_message(self, ticket: _Ticket, burst: bool = True) -> None:
        self._emit(ticket, "message_sent", sender="customer")
        if burst and self.rng.random() < self.p.p_customer_burst:
            self._after(ticket, (2.0, 15.0), lambda t: self._customer_message(t, burst=False))
        else:
            self._after(ticket, self.p.agent_reply_s, self._agent_message)

    def _transfer(self, ticket: _Ticket) -> None:
        ticket.transferred = True
        self.stats["transfers"] += 1
        others = [g for g in ticket.tenant.groups.values() if g is not ticket.group]
        target = self.rng.choice(others)
        agent = self._free_agent(target)
        if agent is not None and self.rng.random() < self.p.p_transfer_to_agent:
            self._emit(ticket, "ticket_transferred", to_agent_id=agent.id, to_group_id=target.name)
            self._release(ticket)
            self._reserve(ticket, agent)
            self._change(ticket, "assigned")
            self._converse(ticket)
            return
        self._emit(ticket, "ticket_transferred", to_group_id=target.name)
        self._release(ticket)
        self._enqueue(ticket, target)

    def _close(self, ticket: _Ticket, closed_by: str) -> None:
        self._change(ticket, "closed")
        self._emit(ticket, "ticket_closed", closed_by=closed_by)
        self._release(ticket)
        if not ticket.reopened and self.rng.random() < self.p.p_reopen:
            self._after(ticket, self.p.reopen_s, self._reopen)

    def _reopen(self, ticket: _Ticket) -> None:
        """The customer writes back; an agent takes the ticket again, or it queues again."""
        ticket.reopened = True
        self.stats["reopens"] += 1
        self._emit(ticket, "message_sent", sender="customer")
        self._after(ticket, self.p.routing_s, self._take_back)

    def _take_back(self, ticket: _Ticket) -> None:
        agent = self._free_agent(ticket.group)
        if agent is None:
            self._emit(ticket, "ticket_transferred", to_group_id=ticket.group.name)
            self._enqueue(ticket, ticket.group)
            return
        self._reserve(ticket, agent)
        self._change(ticket, "assigned")
        self._emit(ticket, "ticket_assigned", agent_id=agent.id, group_id=ticket.group.name)
        self._converse(ticket)


class Traffic:
    """The model's events as a collector receives them.

    The model starts `params.warmup_s` before `start_ms`, so that the first
    deliveries already show busy agents, queues and closing tickets; its rate is
    scaled so that `rate * duration_s` events cover the warm-up and the run, and
    a sender that delivers `rate` events/s catches up with the wall clock by the
    end. Each event is delivered at its time, except about `p_late` of them,
    held 1 to 10 minutes, and about `p_duplicate`, delivered once more a little
    later.
    """

    def __init__(
        self,
        rng: random.Random,
        tenants: list[str],
        rate: float,
        duration_s: float,
        start_ms: int,
        params: Params = DEFAULT,
    ) -> None:
        self.params = params
        warmup = params.warmup_s
        # The model starts empty: its first minutes miss the later events of older tickets.
        ramp = min(warmup, mean_event_age_s(params))
        model_rate = rate * duration_s / max(duration_s + warmup - ramp, 1.0)
        model_start = start_ms - int(warmup * 1000)
        model_rng = random.Random(rng.getrandbits(64))
        self.model = ContactCentre(
            model_rng, tenants, model_rate, model_start, warmup + duration_s, params
        )
        self._rng = random.Random(rng.getrandbits(64))
        self._pending: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = 0
        self.stats: Counter[str] = Counter()

    def _deliver(self, at_ms: int, event: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (at_ms, self._seq, event))

    def _generate(self) -> None:
        t, event = self.model.pop()
        r = self._rng.random()
        if r < self.params.p_late:
            self.stats["late"] += 1
            self._deliver(t + self._ms(self.params.late_s), event)
        else:
            self._deliver(t, event)
        if self._rng.random() < self.params.p_duplicate:
            self.stats["duplicates"] += 1
            self._deliver(t + self._ms(self.params.duplicate_s), dict(event))

    def _ms(self, span: Span) -> int:
        return int(self._rng.uniform(*span) * 1000)

    def pull(self, now_ms: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events due by `now_ms`, in delivery order (none occurs after it)."""
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            horizon = min(now_ms, self._pending[0][0]) if self._pending else now_ms
            while self.model.next_time() <= horizon:
                self._generate()
                horizon = min(now_ms, self._pending[0][0])
            if not self._pending or self._pending[0][0] > now_ms:
                break
            out.append(heapq.heappop(self._pending)[2])
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Everything generated but not delivered yet (late events, pending duplicates)."""
        out = [e for _, _, e in sorted(self._pending)]
        self._pending.clear()
        return out

    def bodies(self, events: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
        """Per tenant, bodies of at most `max_body` events, slightly shuffled."""
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_tenant.setdefault(event["tenant_id"], []).append(event)
        out = []
        size = self.params.max_body
        for tenant, mine in by_tenant.items():
            for i in range(0, len(mine), size):
                body = mine[i : i + size]
                for j in range(len(body) - 1):
                    if self._rng.random() < self.params.p_swap:
                        body[j], body[j + 1] = body[j + 1], body[j]
                out.append((tenant, body))
        return out
