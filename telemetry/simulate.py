"""`telemetry simulate`: contact-centre traffic sent to the collector at a target rate.

Each simulated ticket is a full life: creation in a group, a bot greeting,
queueing, assignment, a conversation, sometimes a transfer, sometimes an
abandonment, close. Its events carry the times they happened in the last
minutes; a few are re-sent, as real producers do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from tqdm import tqdm

from shared.events import format_ms, to_ms
from shared.settings import Settings
from telemetry.commands import create_key

BATCH = 200
CHANNELS = ("whatsapp", "whatsapp", "webchat", "email", "other")


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


def traffic(rng: random.Random, tenants: list[str]) -> Iterator[dict[str, Any]]:
    """An endless, lightly shuffled stream with about 2% duplicates."""
    n = 0
    while True:
        n += 1
        events = ticket_life(rng, rng.choice(tenants), n, datetime.now(UTC))
        rng.shuffle(events)
        for event in events:
            yield event
            if rng.random() < 0.02:
                yield event


async def simulate_command(settings: Settings, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    tenants = [f"sim-{i + 1}" for i in range(args.tenants)]
    keys = {t: await create_key(settings, t, "ingest,read") for t in tenants}
    url = args.collector or f"http://127.0.0.1:{settings.collector_port}"
    total = int(args.rate * args.duration)
    stream = traffic(rng, tenants)
    sent = rejected = 0
    started = time.monotonic()
    with contextlib.ExitStack() as files:
        out = files.enter_context(Path(args.out).open("wb")) if args.out else None  # noqa: ASYNC230
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            with tqdm(total=total, unit="ev", desc="simulate") as bar:
                while sent < total:
                    batch = [next(stream) for _ in range(min(BATCH, total - sent))]
                    by_tenant: dict[str, list[dict[str, Any]]] = {}
                    for event in batch:
                        by_tenant.setdefault(event["tenant_id"], []).append(event)
                    for tenant, events in by_tenant.items():
                        resp = await client.post(
                            "/v1/events",
                            content=orjson.dumps(events),
                            headers={"Authorization": f"Bearer {keys[tenant]}",
                                     "Content-Type": "application/json"},
                        )  # fmt: skip
                        resp.raise_for_status()
                        rejected += len(resp.json()["rejected"])
                        if out:
                            out.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
                    sent += len(batch)
                    bar.update(len(batch))
                    ahead = sent / args.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
    print(f"sent {sent} events for tenants {', '.join(tenants)}; {rejected} rejected")
    for tenant, key in keys.items():
        print(f"  {tenant}: {key}")
    return 0
