"""`telemetry simulate`: realistic contact-centre traffic sent to the collector at a target rate.

The traffic comes from the discrete-event model of `telemetry.traffic`: tenants
whose groups of agents have limited room, so queues form; arrivals along a
daily curve; bot messages, transfers, abandonments, reopens; a few events
duplicated or delivered late, bodies slightly shuffled. The sender posts what
is due at `--rate` events/s (never an event before it happens), retries a body
answered 503 after its Retry-After, and with `--out` writes every event as sent
(NDJSON, duplicates included) so a benchmark can replay the same traffic.

Event times are the model's clock, which is the wall clock except at the start:
the model starts ten minutes early, so that the first posts already show busy
agents, queues and closing tickets, and its volume is such that, sent at
`--rate`, it catches up with the wall clock by the end of the run. In a short
run most events are therefore minutes old when sent; none is ever sent before
it happens.

`ticket_life` and `_life` are simpler, self-contained ticket lives kept for the
tests and benchmarks that build their own traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from tqdm import tqdm

from shared.events import format_ms, to_ms
from shared.settings import Settings
from telemetry.commands import UsageError
from telemetry.keys import temporary_keys
from telemetry.traffic import Traffic

CHANNELS = ("whatsapp", "whatsapp", "webchat", "email", "other")
TICK_S = 0.25  # the sender posts what is due this often
MAX_PULL = 10_000  # most events taken at once
MAX_RETRIES = 8  # of one body answered 503 or 429, or whose connection failed
MAX_RETRY_AFTER_S = 30.0
KEY_MARGIN = timedelta(minutes=10)  # the keys outlive the run by this much, at most

Sleep = Callable[[float], Awaitable[None]]


def ticket_life(rng: random.Random, tenant: str, n: int, end: datetime) -> list[dict[str, Any]]:
    """One ticket's events, the last of them a few seconds before `end`."""
    events = _life(rng, tenant, n)
    shift = to_ms(end) - rng.randint(1_000, 5_000) - max(e["occurred_at"] for e in events)
    for e in events:
        e["occurred_at"] = format_ms(e["occurred_at"] + shift)
    return events


def _life(rng: random.Random, tenant: str, n: int) -> list[dict[str, Any]]:
    """Events with relative times (ms) in `occurred_at`, made absolute by the caller."""
    ticket = f"t-{n:08d}-{rng.randrange(16**6):06x}"
    groups = ["sales", "support", "billing"]
    group = rng.choice(groups)
    t = 0
    seq = 0

    def ev(etype: str, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {"event_id": f"{ticket}-{seq}", "tenant_id": tenant, "ticket_id": ticket,
                "type": etype, "occurred_at": t, **fields}  # fmt: skip

    events = [ev("ticket_created", channel=rng.choice(CHANNELS), group_id=group)]
    t += rng.randint(200, 2_000)
    events.append(ev("message_sent", sender="bot"))
    t += rng.randint(1_000, 30_000)
    events.append(ev("message_sent", sender="customer"))
    if rng.random() < 0.1:  # abandoned in the queue
        t += rng.randint(30_000, 180_000)
        events.append(ev("ticket_closed", closed_by="customer"))
        return events
    t += rng.randint(5_000, 120_000)
    agent = f"{group}-agent-{rng.randrange(8)}"
    events.append(ev("ticket_assigned", agent_id=agent, group_id=group))
    for _ in range(rng.randint(1, 6)):
        t += rng.randint(5_000, 60_000)
        events.append(ev("message_sent", sender="agent", agent_id=agent))
        t += rng.randint(5_000, 90_000)
        events.append(ev("message_sent", sender="customer"))
    if rng.random() < 0.15:
        new_group = rng.choice([g for g in groups if g != group])
        t += rng.randint(1_000, 10_000)
        events.append(ev("ticket_transferred", to_group_id=new_group))
        agent = f"{new_group}-agent-{rng.randrange(8)}"
        t += rng.randint(5_000, 120_000)
        events.append(ev("ticket_assigned", agent_id=agent, group_id=new_group))
        t += rng.randint(5_000, 60_000)
        events.append(ev("message_sent", sender="agent", agent_id=agent))
    t += rng.randint(2_000, 30_000)
    events.append(ev("ticket_closed", closed_by="agent"))
    return events


def write_ndjson(out: IO[bytes], events: Iterable[dict[str, Any]]) -> None:
    out.write(b"".join(orjson.dumps(e) + b"\n" for e in events))


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def retry_after_s(resp: httpx.Response, default: float = 1.0) -> float:
    """Seconds to wait from a Retry-After header (seconds or HTTP date), within bounds."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class SendStats:
    sent: int = 0
    bodies: int = 0
    retries: int = 0
    rejected: int = 0


async def post_body(
    client: httpx.AsyncClient,
    key: str,
    body: bytes,
    stats: SendStats,
    sleep: Sleep,
    max_retries: int = MAX_RETRIES,
) -> None:
    """POST one body; a 503 or a 429 is retried with the same body after its
    Retry-After, a connection that fails (the collector restarting) after a
    doubling pause: the answer is unknown, and the same event ids make a
    second delivery harmless."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for attempt in range(max_retries + 1):
        try:
            resp = await client.post("/v1/events", content=body, headers=headers)
        except httpx.TransportError:
            if attempt == max_retries:
                raise
            stats.retries += 1
            await sleep(min(2.0**attempt, MAX_RETRY_AFTER_S) / 4)
            continue
        if resp.status_code not in (429, 503) or attempt == max_retries:
            break
        stats.retries += 1
        await sleep(retry_after_s(resp))
    resp.raise_for_status()
    stats.rejected += len(resp.json()["rejected"])
    stats.bodies += 1


async def send_traffic(
    traffic: Traffic,
    client: httpx.AsyncClient,
    keys: dict[str, str],
    *,
    rate: float,
    duration: float,
    out: IO[bytes] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
    progress: bool = True,
    max_retries: int = MAX_RETRIES,
) -> SendStats:
    """Post what `traffic` has due, `rate` events/s, until `rate * duration` are sent.

    It stops earlier when the time is up and the model has nothing more due; then
    whatever is still held back (late events, pending duplicates) is sent.
    `max_retries` bounds the retries of one body (503, 429, a failed connection).
    """
    total = max(1, round(rate * duration))
    stats = SendStats()
    with tqdm(total=total, unit="ev", desc="simulate", disable=not progress) as bar:

        async def post(events: list[dict[str, Any]]) -> None:
            for tenant, body in traffic.bodies(events):
                await post_body(client, keys[tenant], orjson.dumps(body), stats, sleep, max_retries)
                if out is not None:
                    write_ndjson(out, body)
            stats.sent += len(events)
            bar.update(len(events))
            bar.set_postfix(retries=stats.retries, rejected=stats.rejected, refresh=False)

        start = clock()
        while stats.sent < total:
            now = clock()
            wanted = min(MAX_PULL, min(total, int(rate * (now - start + TICK_S))) - stats.sent)
            events = traffic.pull(int(now * 1000), wanted) if wanted > 0 else []
            if events:
                await post(events)
            if len(events) < wanted:  # the model holds back, not the pace
                if now - start >= duration:
                    break
                await sleep(TICK_S)
            else:  # about a tick, until the pace allows a tick's worth of events
                await sleep(max(start + stats.sent / rate - clock(), TICK_S / 10))
        rest = traffic.flush()
        if rest:
            bar.total = stats.sent + len(rest)
            await post(rest)
    return stats


async def simulate_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.tenants < 1 or args.rate <= 0 or args.duration <= 0:
        raise UsageError("--tenants, --rate and --duration must be positive")
    rng = random.Random(args.seed)
    tenants = [f"sim-{i + 1}" for i in range(args.tenants)]
    url = args.collector or f"http://127.0.0.1:{settings.collector_port}"
    traffic = Traffic(rng, tenants, args.rate, args.duration, int(time.time() * 1000))
    # Ingest-only keys that expire soon after the run and are revoked at its end.
    lifetime = timedelta(seconds=args.duration) + KEY_MARGIN
    async with temporary_keys(settings, tenants, "ingest", lifetime) as keys:
        with contextlib.ExitStack() as files:
            out = files.enter_context(Path(args.out).open("wb")) if args.out else None  # noqa: ASYNC230
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                stats = await send_traffic(
                    traffic, client, keys, rate=args.rate, duration=args.duration, out=out
                )
    model = traffic.model.stats
    print(f"sent {stats.sent} events in {stats.bodies} bodies for tenants {', '.join(tenants)}; "
          f"{stats.rejected} rejected, {stats.retries} retries "
          "(503, 429, failed connections)")  # fmt: skip
    print(f"  tickets {model['tickets']}, abandoned {model['abandoned']}, transfers "
          f"{model['transfers']}, reopens {model['reopens']}; duplicates "
          f"{traffic.stats['duplicates']}, late {traffic.stats['late']}")  # fmt: skip
    print(f"  its keys are revoked; to read the reports: telemetry keys create --tenant "
          f"{tenants[0]} --scopes read --expires 1d")  # fmt: skip
    return 0
