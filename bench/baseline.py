"""The design the seed article replaced, fed the same events: how fast, how wrong.

For each event a processor reads the ticket's state from PostgreSQL, updates it
as the event says, and writes it back — no batching, no ordering, no guard —
with 1 and with 8 concurrent workers. Its tickets are then compared with the
exact metrics of the same events (the engine of `services/enricher`).

    .venv/bin/python -m bench.baseline [--tickets 1000]

It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.stack import stop_on_sigterm
from services.enricher.metrics import dedupe, evaluate
from shared.events import canonical, event_ms, format_ms
from telemetry.simulate import ticket_life
from telemetry.up import start_postgres

FIELDS = ("status", "created_at", "closed_at", "first_assigned_at", "first_response_at",
          "transfers", "customer_messages", "agent_messages", "bot_messages")  # fmt: skip


def deliveries(tickets: int, seed: int) -> list[dict[str, Any]]:
    """Ticket lives interleaved, locally shuffled, 2% sent twice: what producers send."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = [e for n in range(tickets) for e in ticket_life(rng, "acme", n, now)]
    events.sort(key=event_ms)
    events += rng.sample(events, len(events) // 50)
    keyed = [(i + rng.uniform(-20, 20), e) for i, e in enumerate(events)]  # local disorder
    return [e for _, e in sorted(keyed, key=lambda k: k[0])]


def apply(state: dict[str, Any], e: dict[str, Any]) -> dict[str, Any]:
    """The old processor: infer the ticket's step from its stored state."""
    s = dict(state) or {f: 0 if f.endswith(("transfers", "messages")) else None for f in FIELDS}
    t = e["occurred_at"]
    if e["type"] == "ticket_created":
        s.update(status="waiting", created_at=t)
    elif e["type"] == "ticket_assigned":
        s["status"] = "assigned"
        s["first_assigned_at"] = s["first_assigned_at"] or t
    elif e["type"] == "ticket_transferred":
        s["transfers"] += 1
        s["status"] = "assigned" if "to_agent_id" in e else "waiting"
    elif e["type"] == "message_sent":
        s[f"{e['sender']}_messages"] += 1
        if e["sender"] == "agent":
            s["first_response_at"] = s["first_response_at"] or t
    else:
        s.update(status="closed", closed_at=t)
    return s


async def run_old(
    dsn: str, events: list[dict[str, Any]], workers: int
) -> tuple[float, dict[str, Any]]:
    pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers)
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS old_tickets")
        await conn.execute("CREATE TABLE old_tickets (ticket_id text PRIMARY KEY, state jsonb)")
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for e in events:
        queue.put_nowait(e)

    async def worker() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                e = queue.get_nowait()
                row = await conn.fetchrow(
                    "SELECT state FROM old_tickets WHERE ticket_id = $1", e["ticket_id"]
                )
                state = apply(orjson.loads(row["state"]) if row else {}, e)
                await conn.execute(
                    "INSERT INTO old_tickets VALUES ($1, $2) ON CONFLICT (ticket_id) "
                    "DO UPDATE SET state = excluded.state",
                    e["ticket_id"], orjson.dumps(state).decode(),
                )  # fmt: skip

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - start
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT ticket_id, state FROM old_tickets")
    await pool.close()
    return elapsed, {r["ticket_id"]: orjson.loads(r["state"]) for r in rows}


def exact(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    lines: dict[str, set[bytes]] = {}
    for e in events:
        lines.setdefault(e["ticket_id"], set()).add(canonical(e))
    out = {}
    for ticket, variants in lines.items():
        r = evaluate(dedupe(variants)[0])
        m = r.metrics()
        first_response = None if r.first_response_at is None else format_ms(r.first_response_at)
        out[ticket] = {**{f: m[f] for f in FIELDS if f in m}, "first_response_at": first_response}
    return out


def wrong_tickets(truth: dict[str, dict[str, Any]], states: dict[str, Any]) -> int:
    """Tickets whose stored state differs from the exact metrics in any of FIELDS."""
    return sum(
        1 for t, want in truth.items() if {f: states.get(t, {}).get(f) for f in want} != want
    )


@dataclass(frozen=True)
class BaselineRun:
    workers: int
    events_per_s: float
    wrong: int
    tickets: int


async def run_baseline(
    dsn: str, events: list[dict[str, Any]], workers: tuple[int, ...] = (1, 8)
) -> list[BaselineRun]:
    """The old design on `events` (as delivered), once per worker count."""
    truth = exact(events)
    runs = []
    for n in workers:
        elapsed, states = await run_old(dsn, events, n)
        runs.append(BaselineRun(n, len(events) / elapsed, wrong_tickets(truth, states), len(truth)))
    return runs


async def main_async(args: argparse.Namespace, dsn: str) -> None:
    events = deliveries(args.tickets, args.seed)
    runs = await run_baseline(dsn, events)
    print(f"\n# The old design on {len(events)} deliveries of {runs[0].tickets} tickets\n")
    print("| workers | events/s | wrong tickets |")
    print("|---:|---:|---:|")
    for run in runs:
        print(f"| {run.workers} | {run.events_per_s:,.0f} | {run.wrong} of {run.tickets} |")
    print("\nWrong means any of " + ", ".join(FIELDS) + " differs from the exact metrics.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    stop_on_sigterm()
    with tempfile.TemporaryDirectory() as tmp:
        pg, url = start_postgres(Path(tmp) / "pg")
        try:
            asyncio.run(main_async(args, url))
        finally:
            pg.cleanup()


if __name__ == "__main__":
    main()
