import argparse
import contextlib
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import telemetry.simulate
from shared.events import format_ms, parse_timestamp, to_ms, validate
from shared.settings import Settings
from telemetry.simulate import (
    MAX_RETRIES,
    SendStats,
    post_body,
    read_ndjson,
    retry_after_s,
    send_traffic,
    simulate_command,
    ticket_life,
)
from telemetry.traffic import DEFAULT, ContactCentre, Params, Traffic, daily_curve

Event = dict[str, Any]
START = to_ms(datetime(2026, 11, 20, 14, 0, tzinfo=UTC))  # 11:00 at UTC-3, a busy hour
HOUR = 3_600_000


def run_model(
    params: Params = DEFAULT, rate: float = 10.0, hours: float = 1.0, seed: int = 7
) -> list[tuple[int, Event]]:
    model = ContactCentre(random.Random(seed), ["a", "b"], rate, START, hours * 3600, params)
    out = []
    while model.next_time() <= START + hours * HOUR:
        out.append(model.pop())
    return out


def by_ticket(events: list[tuple[int, Event]]) -> dict[str, list[tuple[int, Event]]]:
    """Tickets created in the first 80% of the run: their lives are (nearly) complete."""
    first, last = events[0][0], events[-1][0]
    tickets: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for t, e in events:
        tickets[e["ticket_id"]].append((t, e))
    end = first + 0.8 * (last - first)
    return {
        k: v for k, v in tickets.items() if v[0][1]["type"] == "ticket_created" and v[0][0] < end
    }


@pytest.fixture(scope="module")
def model_events() -> list[tuple[int, Event]]:
    return run_model()


def first_assignment(life: list[tuple[int, Event]]) -> int | None:
    for t, e in life:
        if e["type"] == "ticket_assigned" or "to_agent_id" in e:
            return t
    return None


def test_every_simulated_event_is_valid_and_in_the_past() -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    for n in range(300):
        events = ticket_life(rng, "sim-1", n, now)
        assert events[0]["type"] == "ticket_created"
        for e in events:
            assert validate(e, now)["occurred_at"] == e["occurred_at"]
            assert e["occurred_at"] <= now.isoformat().replace("+00:00", "Z")


def test_model_events_are_valid_and_happen_at_their_time(
    model_events: list[tuple[int, Event]],
) -> None:
    assert len(model_events) > 20_000
    times = [t for t, _ in model_events]
    assert all(b >= a - 1 for a, b in itertools.pairwise(times))  # time order, ±1 ms
    for t, e in model_events:
        assert e["occurred_at"] == format_ms(t)
        assert validate(e, datetime.fromtimestamp(t / 1000, UTC)) == e  # never in the future
    ids = [(e["tenant_id"], e["event_id"]) for _, e in model_events]
    assert len(set(ids)) == len(ids)


def test_each_ticket_follows_its_lifecycle(model_events: list[tuple[int, Event]]) -> None:
    tickets = by_ticket(model_events)
    assert len(tickets) > 1000
    for life in tickets.values():
        times = [t for t, _ in life]
        assert times == sorted(times) and len(set(times)) == len(times)
        created = life[0][1]
        group, holder, closed = created["group_id"], None, False
        for _, e in life[1:]:
            kind = e["type"]
            assert kind != "ticket_created"
            if kind == "message_sent" and e["sender"] == "agent":
                assert not closed and e["agent_id"] == holder
            elif kind == "ticket_assigned":
                assert holder is None and e["group_id"] == group
                holder, closed = e["agent_id"], False
            elif kind == "ticket_transferred":
                group = e["to_group_id"]
                holder, closed = e.get("to_agent_id"), False
                assert holder is None or holder.startswith(group)
            elif kind == "ticket_closed":
                assert not closed
                holder, closed = None, True


def test_agents_never_hold_more_chats_than_their_capacity(
    model_events: list[tuple[int, Event]],
) -> None:
    load: Counter[tuple[str, str]] = Counter()
    holder: dict[str, str | None] = {}
    busiest = 0
    for _, e in model_events:
        ticket, tenant = e["ticket_id"], e["tenant_id"]
        new = e["agent_id"] if e["type"] == "ticket_assigned" else e.get("to_agent_id")
        if e["type"] in ("ticket_assigned", "ticket_transferred", "ticket_closed"):
            old = holder.get(ticket)
            if old is not None:
                load[tenant, old] -= 1
            holder[ticket] = new
            if new is not None:
                load[tenant, new] += 1
                busiest = max(busiest, load[tenant, new])
    assert busiest == DEFAULT.capacity  # they get busy, and never busier


def test_queues_abandonments_transfers_reopens_and_bots(
    model_events: list[tuple[int, Event]],
) -> None:
    tickets = by_ticket(model_events)
    waits, abandoned, to_group, to_agent, reopened, greeted = [], 0, 0, 0, 0, 0
    for life in tickets.values():
        kinds = [e["type"] for _, e in life]
        assigned = first_assignment(life)
        if assigned is not None:
            waits.append(assigned - life[0][0])
        elif kinds[-1] == "ticket_closed":
            assert life[-1][1]["closed_by"] == "customer"
            abandoned += 1
        to_group += any(e["type"] == "ticket_transferred" and "to_agent_id" not in e
                        for _, e in life)  # fmt: skip
        to_agent += any("to_agent_id" in e for _, e in life)
        closes = [i for i, k in enumerate(kinds) if k == "ticket_closed"]
        reopened += len(closes) == 2
        greeted += life[1][1].get("sender") == "bot"
    n = len(tickets)
    assert sum(w > 60_000 for w in waits) > 0.05 * n  # queues form
    assert 0.01 * n < abandoned < 0.2 * n
    assert 0.02 * n < to_group and 0.005 * n < to_agent
    assert 0.005 * n < reopened < 0.1 * n
    assert 0.7 * n < greeted < 0.95 * n  # chats, not emails


def test_queues_form_only_when_arrivals_exceed_capacity() -> None:
    def long_waits(staffing: float) -> tuple[float, int]:
        tickets = by_ticket(run_model(replace(DEFAULT, staffing=staffing), 5.0, 0.5, 3))
        waits = [first_assignment(life) for life in tickets.values()]
        starts = [life[0][0] for life in tickets.values()]
        late = sum(w is not None and w - s > 30_000 for w, s in zip(waits, starts, strict=True))
        abandoned = sum(w is None and life[-1][1]["type"] == "ticket_closed"
                        for w, life in zip(waits, tickets.values(), strict=True))  # fmt: skip
        return late / len(tickets), abandoned

    assert long_waits(3.0) == (0.0, 0)
    crowded, abandoned = long_waits(0.7)
    assert crowded > 0.3 and abandoned > 0


def test_arrivals_follow_the_daily_curve() -> None:
    def local(hour: int) -> int:
        return to_ms(datetime(2026, 11, 20, hour, tzinfo=UTC)) + 3 * HOUR  # UTC-3

    assert daily_curve(local(3), DEFAULT.utc_offset_h) < 0.1
    assert daily_curve(local(11), DEFAULT.utc_offset_h) > 0.9
    assert daily_curve(local(15), DEFAULT.utc_offset_h) > 0.9
    model = ContactCentre(random.Random(5), ["a"], 1.0, local(3), 86_400)
    created: Counter[int] = Counter()
    while model.next_time() < local(12):
        t, e = model.pop()
        if e["type"] == "ticket_created":
            created[(t - local(0)) // HOUR] += 1
    assert created[3] * 10 < created[10]
    assert created[6] < created[8] < created[10]


def deliveries(traffic: Traffic, start: int, end: int, step: int = 1000) -> list[tuple[int, Event]]:
    """(the time it was pulled, event) for each delivery, pulling every `step` ms."""
    out = []
    for now in range(start, end, step):
        out += [(now, e) for e in traffic.pull(now, 10**6)]
    return out


@pytest.fixture(scope="module")
def delivered() -> tuple[Traffic, list[tuple[int, Event]]]:
    traffic = Traffic(random.Random(11), ["a", "b", "c"], 10.0, 1200, START)
    return traffic, deliveries(traffic, START - 600_000, START + 1_200_000)


def test_deliveries_duplicate_and_delay_a_few_events(
    delivered: tuple[Traffic, list[tuple[int, Event]]],
) -> None:
    traffic, sent = delivered
    assert {e["tenant_id"] for _, e in sent} == {"a", "b", "c"}
    lag = [now - to_ms(parse_timestamp(e["occurred_at"])) for now, e in sent]
    assert min(lag) >= 0  # nothing is sent before it happens
    first: dict[str, int] = {}
    for (_, e), late in zip(sent, lag, strict=True):
        first.setdefault(e["event_id"], late)
    n = len(first)
    assert 0.015 * n < len(sent) - n < 0.025 * n  # about 2% duplicates
    assert 0.006 * n < sum(late >= 60_000 for late in first.values()) < 0.014 * n  # about 1% late
    assert max(first.values()) <= 600_000
    assert len(sent) - n <= traffic.stats["duplicates"]  # some are still to come
    assert sum(late < 1000 for late in first.values()) > 0.98 * n  # the rest, as they happen


def test_the_run_produces_about_rate_times_duration_events(
    delivered: tuple[Traffic, list[tuple[int, Event]]],
) -> None:
    _, sent = delivered
    assert 0.85 * 12_000 < len(sent) < 1.15 * 12_000


def test_same_seed_same_traffic() -> None:
    def run() -> list[Event]:
        traffic = Traffic(random.Random(4), ["a"], 20.0, 60, START)
        return [e for _, e in deliveries(traffic, START - 600_000, START + 60_000, 5000)]

    assert run() == run()


def test_bodies_hold_one_tenant_at_most_500_events_slightly_shuffled() -> None:
    traffic = Traffic(random.Random(2), ["a", "b"], 1.0, 10, START)
    events = [{"tenant_id": "ab"[i % 2], "event_id": str(i)} for i in range(1800)]
    bodies = traffic.bodies(events)
    assert [len(b) for _, b in bodies] == [500, 400, 500, 400]
    assert all({e["tenant_id"] for e in body} == {tenant} for tenant, body in bodies)
    flat = [int(e["event_id"]) for _, body in bodies for e in body]
    assert sorted(flat) == list(range(1800))
    moved = sum(a > b for a, b in itertools.pairwise(flat))
    assert 0.05 * len(flat) < moved < 0.4 * len(flat)


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://sim")


class FakeClock:
    """A fixed start: the traffic follows a daily curve, so a test must not
    depend on the hour it runs at."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC).timestamp()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_send_traffic_paces_posts_and_writes_what_it_sends(tmp_path: Path) -> None:
    clock = FakeClock()
    posted: list[Event] = []

    def collector(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        assert 1 <= len(body) <= 500
        tenant = body[0]["tenant_id"]
        assert request.headers["Authorization"] == f"Bearer key-{tenant}"
        now = datetime.fromtimestamp(clock.now, UTC)
        for e in body:
            assert e["tenant_id"] == tenant
            assert validate(e, now) == e
            assert parse_timestamp(e["occurred_at"]) <= now
        posted.extend(body)
        return httpx.Response(202, json={"accepted": len(body), "rejected": []})

    tenants = ["sim-1", "sim-2"]
    traffic = Traffic(random.Random(3), tenants, 50.0, 20, int(clock.now * 1000))
    keys = {t: f"key-{t}" for t in tenants}
    path = tmp_path / "traffic.ndjson"
    started = clock.now
    with path.open("wb") as out:
        async with mock_client(collector) as client:
            stats = await send_traffic(traffic, client, keys, rate=50.0, duration=20, out=out,
                                       clock=clock, sleep=clock.sleep, progress=False)  # fmt: skip
    assert 0.8 * 1000 < stats.sent == len(posted) < 1.1 * 1000
    assert 19 < clock.now - started < 21
    assert stats.bodies > 20 and stats.retries == stats.rejected == 0
    assert read_ndjson(path) == posted  # duplicates included, in the order sent
    assert len({e["event_id"] for e in posted}) < len(posted)


async def test_a_503_is_retried_with_the_same_body_after_retry_after() -> None:
    bodies: list[bytes] = []

    def collector(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) < 3:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"error": {}})
        return httpx.Response(202, json={"accepted": 1, "rejected": [{"index": 0}]})

    clock, stats = FakeClock(), SendStats()
    async with mock_client(collector) as c:
        await post_body(c, "k", b'[{"a": 1}]', stats, clock.sleep)
    assert bodies == [b'[{"a": 1}]'] * 3
    assert clock.slept == [2.0, 2.0]
    assert (stats.retries, stats.rejected, stats.bodies) == (2, 1, 1)


async def test_retries_of_a_503_are_bounded() -> None:
    def collector(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "0"})

    clock = FakeClock()
    async with mock_client(collector) as c:
        with pytest.raises(httpx.HTTPStatusError):
            await post_body(c, "k", b"[]", SendStats(), clock.sleep)
    assert len(clock.slept) == MAX_RETRIES


async def test_a_failed_connection_is_retried_with_the_same_body_after_a_doubling_pause() -> None:
    """The collector restarting (refused, reset): the answer is unknown, so send again."""
    bodies: list[bytes] = []

    def collector(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) < 4:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(202, json={"accepted": 1, "rejected": []})

    clock, stats = FakeClock(), SendStats()
    async with mock_client(collector) as c:
        await post_body(c, "k", b'[{"a": 1}]', stats, clock.sleep)
    assert bodies == [b'[{"a": 1}]'] * 4
    assert clock.slept == [0.25, 0.5, 1.0]
    assert (stats.retries, stats.bodies) == (3, 1)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with mock_client(down) as c:
        with pytest.raises(httpx.ConnectError):
            await post_body(c, "k", b"[]", SendStats(), clock.sleep, max_retries=2)


def test_retry_after_in_seconds_or_as_a_date_within_bounds() -> None:
    def after(value: str | None) -> float:
        headers = {} if value is None else {"Retry-After": value}
        return retry_after_s(httpx.Response(503, headers=headers))

    assert after("3") == 3.0
    assert after(None) == after("soon") == 1.0
    assert after("-5") == 0.0 and after("86400") == 30.0
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8 < after(in_ten) <= 10


async def test_simulate_command_sends_to_the_collector_and_writes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    posted: list[Event] = []

    def collector(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "http://127.0.0.1:8080/v1/events"
        posted.extend(orjson.loads(request.content))
        return httpx.Response(202, json={"accepted": 1, "rejected": []})

    @contextlib.asynccontextmanager
    async def temporary_keys(
        settings: Settings, tenants: list[str], scopes: str, lifetime: timedelta
    ) -> AsyncIterator[dict[str, str]]:
        assert scopes == "ingest" and lifetime < timedelta(minutes=11)  # no full-scope key
        yield {t: f"key-{t}" for t in tenants}
        revoked.extend(tenants)

    revoked: list[str] = []

    real_client = httpx.AsyncClient

    def client(base_url: str, timeout: float) -> httpx.AsyncClient:
        return real_client(transport=httpx.MockTransport(collector), base_url=base_url)

    monkeypatch.setattr(telemetry.simulate, "temporary_keys", temporary_keys)
    monkeypatch.setattr(httpx, "AsyncClient", client)
    out = tmp_path / "sim.ndjson"
    args = argparse.Namespace(tenants=3, rate=400.0, duration=0.5, collector=None,
                              out=str(out), seed=1)  # fmt: skip
    assert await simulate_command(Settings(), args) == 0
    assert 50 < len(posted) < 250  # about 200 (0.5 s at 400/s), from a small model: it varies
    assert read_ndjson(out) == posted
    printed = capsys.readouterr().out
    assert f"sent {len(posted)} events" in printed and "key-sim" not in printed
    assert revoked == ["sim-1", "sim-2", "sim-3"]
