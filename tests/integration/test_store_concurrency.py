"""The store's one promise under concurrency: the views of a ticket are ordered by inclusion.

Several consolidators (each with its own small cache) merge batches at once,
some batches twice, some cut short (a crash: the task is cancelled at any
await and the batch redelivered later), while compactors run and are cut
short too: minor and major merges, sealing of closed tickets, late events of
sealed tickets, splits, cold merges, each possibly interrupted half-way.
Every view a batch returns must contain its own lines, the views of each
ticket must form a chain under inclusion, and the last one must be all the
ticket's lines; full scans running meanwhile must give each ticket as one
of the sets of that chain would be (comparable with every view).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import Counter

import pytest

import services.consolidator.store as store_module
from services.consolidator.store import EventLine, StoreRaceError, TicketStore
from shared.layout import new_batch_id, ticket_token
from tests.integration.test_store import DAY_MS, NOW_MS, aws_for, event, store_of, tenant

TICKETS = 24
CONSOLIDATORS = 3
COMPACTORS = 2


def workload(rng: random.Random) -> list[list[EventLine]]:
    """Lives of old tickets (sealable once closed, or at once if idle for years) and of
    open recent ones (kept hot, so partitions split), cut into small batches."""
    lines = []
    for n in range(TICKETS):
        recent = n % 3 == 0
        start = NOW_MS - (60_000 if recent else rng.randint(2, 4000) * DAY_MS)
        ticket = f"k{n}"
        lines.append(event(ticket, 0, start, "ticket_created", channel="webchat", group_id="g"))
        lines += [event(ticket, i, start + i * 1000) for i in range(1, rng.randint(4, 14))]
        if not recent and rng.random() < 0.8:
            lines.append(event(ticket, 99, start + 90_000, "ticket_closed", closed_by="agent"))
    rng.shuffle(lines)
    cuts = sorted(rng.sample(range(1, len(lines)), 40))
    return [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_views_are_ordered_by_inclusion_under_concurrency_and_crashes(
    moto_url: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "FREEZE_TIMEOUT_MS", 300)  # crashed splits are finished soon
    rng = random.Random(seed)
    batches = workload(rng)
    views: dict[bytes, list[frozenset[EventLine]]] = {}
    cut_short: Counter[str] = Counter()
    async with aws_for(moto_url) as aws:
        t = tenant()
        policy = {"fanout": 3, "major_min_bytes": 1, "partition_bytes": 2_500, "retention_ms": 0}
        stores = [store_of(aws, 30_000, **policy) for _ in range(CONSOLIDATORS + COMPACTORS)]
        queue: list[tuple[str, list[EventLine]]] = [(new_batch_id(), b) for b in batches]
        queue += rng.sample(queue, len(queue) // 4)  # redeliveries
        rng.shuffle(queue)
        lock = asyncio.Lock()

        async def consolidator(store: TicketStore) -> None:
            while True:
                async with lock:
                    if not queue:
                        return
                    batch, lines = queue.pop()
                try:
                    if rng.random() < 0.15:  # a crash somewhere in the batch
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                store.merge(t, batch, lines), rng.random() * 0.05
                            )
                        cut_short["batch"] += 1
                        raise StoreRaceError("crashed")
                    view = await store.merge(t, batch, lines)
                except StoreRaceError:
                    async with lock:
                        queue.insert(0, (batch, lines))  # redelivered later
                    continue
                assert set(lines) <= view
                for token in {tok for tok, _ in lines}:
                    views.setdefault(token, []).append(frozenset(x for x in view if x[0] == token))

        async def compactor(store: TicketStore, done: asyncio.Event) -> None:
            while not done.is_set():
                job = asyncio.ensure_future(store.compactor.compact_all(t))
                if rng.random() < 0.3:  # a crash at any await
                    await asyncio.sleep(rng.random() * 0.1)
                    job.cancel()
                    cut_short["compaction"] += 1
                with contextlib.suppress(asyncio.CancelledError):
                    await job
                await asyncio.sleep(0.01)

        scanned: list[dict[bytes, frozenset[EventLine]]] = []

        async def scanner(done: asyncio.Event) -> None:
            """Full scans while everything runs: each ticket must be one of its views."""
            while not done.is_set():
                seen = {}
                async for token, events in store_of(aws, 0, **policy).scan(t):
                    seen[token] = frozenset((token, e) for e in events)
                    await asyncio.sleep(0)
                scanned.append(seen)

        done = asyncio.Event()
        compactors = [asyncio.create_task(compactor(s, done)) for s in stores[CONSOLIDATORS:]]
        scanning = asyncio.create_task(scanner(done))
        await asyncio.gather(*(consolidator(s) for s in stores[:CONSOLIDATORS]))
        done.set()
        await asyncio.gather(*compactors, scanning)
        await stores[0].compactor.compact_all(t)

        everything = {line for b in batches for line in b}
        for token, seen in views.items():
            mine = {x for x in everything if x[0] == token}
            chain = sorted(seen, key=len)
            for smaller, larger in itertools.pairwise(chain):
                assert smaller <= larger, f"{token!r}: two views not ordered by inclusion"
            assert chain[-1] == mine, f"{token!r}: the last view misses lines"
        for seen in scanned:
            for token, lines in seen.items():
                assert all(lines <= v or v <= lines for v in views[token]), token
        fresh = store_of(aws)
        assert {tok: set(lines) async for tok, lines in fresh.scan(t)} == {
            ticket_token(f"k{n}"): {e for tok, e in everything if tok == ticket_token(f"k{n}")}
            for n in range(TICKETS)
        }
        counts = sum((s.compactor.counts for s in stores), Counter())
        state = await fresh.state(t)
        print(f"seed {seed}: {dict(counts)}, cut short {dict(cut_short)}, scans {len(scanned)}")
        assert counts["sealed lines"] and counts["split"] and state.manifest and scanned
