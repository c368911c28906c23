"""The ticket store against the moto server: views, compaction, sealing, late events,
splitting, migration of the old layout, the full scan and the cache bound."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

import services.consolidator.scan as scan_module
from services.consolidator.partition import Policy, list_partition
from services.consolidator.state import now_ms
from services.consolidator.store import EventLine, TicketStore, build_store
from shared.aws import Aws, open_aws
from shared.events import canonical, format_ms
from shared.layout import encode_lines, legacy_store_prefix, new_batch_id, ticket_token
from shared.objects import ObjectMissingError, list_keys
from shared.settings import Settings
from tests.integration.helpers import bucket_and_store_table

BUCKET = "telemetry-store-test"
TABLE = "telemetry-store-test"
TENANTS = itertools.count()
DAY_MS = 86_400_000
NOW_MS = now_ms()


def event(ticket: str, n: int, at_ms: int, etype: str = "message_sent", **extra: Any) -> EventLine:
    doc = {"event_id": f"{ticket}-{n}", "tenant_id": "x", "ticket_id": ticket, "type": etype,
           "occurred_at": format_ms(at_ms), **extra}  # fmt: skip
    if etype == "message_sent":
        doc.setdefault("sender", "customer")
    return ticket_token(ticket), canonical(doc)


def life(ticket: str, start_ms: int, messages: int = 3, closed: bool = True) -> list[EventLine]:
    lines = [event(ticket, 0, start_ms, "ticket_created", channel="webchat", group_id="g")]
    lines += [event(ticket, i, start_ms + i * 1000) for i in range(1, messages + 1)]
    if closed:
        lines.append(event(ticket, 99, start_ms + 60_000, "ticket_closed", closed_by="agent"))
    return lines


def of(lines: Iterable[EventLine], *tickets: str) -> set[EventLine]:
    tokens = {ticket_token(t) for t in tickets}
    return {line for line in lines if line[0] in tokens}


@contextlib.asynccontextmanager
async def aws_for(moto_url: str) -> AsyncIterator[Aws]:
    settings = Settings.model_validate(
        {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}
    )
    async with open_aws(settings) as aws:
        await bucket_and_store_table(aws, BUCKET, TABLE)
        yield aws


def store_of(aws: Aws, cache_bytes: int = 64 << 20, **policy: Any) -> TicketStore:
    return build_store(aws.s3, aws.dynamodb, BUCKET, TABLE, Policy(**policy), cache_bytes)


def tenant() -> str:
    return f"st-{next(TENANTS)}-{new_batch_id()[-6:]}"


def gets(aws: Aws) -> int:
    return aws.counter.counts[("s3", "GetObject")]


async def test_a_batch_sees_every_line_of_its_tickets_and_reads_only_what_is_new(
    moto_url: str,
) -> None:
    async with aws_for(moto_url) as aws:
        t, store = tenant(), store_of(aws)
        a, b = life("a", NOW_MS), life("b", NOW_MS)
        assert await store.merge(t, new_batch_id(), a[:2] + b) == set(a[:2] + b)
        before = gets(aws)
        assert await store.merge(t, new_batch_id(), a[2:]) == set(a)  # b is not touched
        assert gets(aws) == before  # its own delta and the first are cached
        other = store_of(aws)  # another worker, nothing cached
        assert await other.merge(t, new_batch_id(), [a[0]]) == set(a)
        assert await store.merge(t, new_batch_id(), [b[0]]) == set(b)


async def test_compaction_keeps_every_line_and_bounds_the_objects(moto_url: str) -> None:
    async with aws_for(moto_url) as aws:
        t, store = tenant(), store_of(aws, fanout=3, major_min_bytes=20_000)
        sent: set[EventLine] = set()
        for n in range(40):
            batch = life(f"t{n}", NOW_MS + n * 1000) + life(f"t{n // 2}", NOW_MS)[:2]
            sent |= set(batch)
            await store.merge(t, new_batch_id(), batch)
            await store.compactor.compact_all(t)
        assert store.compactor.counts["minor"] > 0 and store.compactor.counts["major"] > 0
        listing = await list_partition(store.io, t, "r")
        assert len(listing.objects) <= 8
        fresh = store_of(aws, fanout=3)
        for n in range(40):
            ticket = f"t{n}"
            assert of(
                await fresh.merge(t, new_batch_id(), life(ticket, NOW_MS + n * 1000)[:1]), ticket
            ) == of(sent, ticket)
        assert [tok async for tok, _ in fresh.scan(t)] == sorted(
            ticket_token(f"t{n}") for n in range(40)
        )


async def test_closed_idle_tickets_are_sealed_and_a_years_late_event_finds_them(
    moto_url: str,
) -> None:
    async with aws_for(moto_url) as aws:
        t = tenant()
        store = store_of(aws, major_min_bytes=1)
        old = [life(f"old{n}", NOW_MS - 3000 * DAY_MS + n) for n in range(200)]
        open_old = life("open-old", NOW_MS - 3000 * DAY_MS, closed=False)  # open, idle 8 years
        recent = life("recent", NOW_MS - DAY_MS // 2)  # closed but not idle long enough
        for lines in [*old, open_old, recent]:
            await store.merge(t, new_batch_id(), lines)
        await store.compactor.compact_all(t)
        assert store.compactor.counts["sealed lines"] == sum(map(len, old)) + len(open_old)
        hot = await list_partition(store.io, t, "r")
        fresh = store_of(aws)  # a worker that never saw the tenant
        hot_tickets = {tok async for tok, _ in fresh.scan(t)}
        assert len(hot_tickets) == 202
        state = await fresh.state(t)
        assert state.manifest and len(hot.objects) == 1

        late = event("old7", 50, NOW_MS - 2900 * DAY_MS)  # nine years late, of a sealed ticket
        before = gets(aws)
        view = await fresh.merge(t, new_batch_id(), [late])
        assert view == set(old[7]) | {late}
        # the manifest, the cold file's footer and one block; the hot run is read whole
        assert gets(aws) - before <= 4
        assert await fresh.merge(t, new_batch_id(), [recent[0]]) == set(recent)


async def test_partitions_split_as_the_active_set_grows(moto_url: str) -> None:
    async with aws_for(moto_url) as aws:
        t = tenant()
        store = store_of(aws, major_min_bytes=1, partition_bytes=10_000)
        sent: set[EventLine] = set()
        for n in range(60):
            batch = life(f"s{n}", NOW_MS, closed=False) + life(f"s{n // 3}", NOW_MS)[-1:]
            sent |= set(batch)
            await store.merge(t, new_batch_id(), batch)
            await store.compactor.compact_all(t)
        state = await store.state(t)
        assert len(state.parts) >= 4 and store.compactor.counts["split"] >= 3
        fresh = store_of(aws)
        puts = aws.counter.counts[("s3", "PutObject")]
        tickets = [f"s{n}" for n in range(60)]
        view = await fresh.merge(t, new_batch_id(), [life(x, NOW_MS)[0] for x in tickets])
        assert view == sent
        assert aws.counter.counts[("s3", "PutObject")] - puts == len(state.parts)
        dead = await list_partition(store.io, t, "r")
        assert dead.objects == [] and dead.mark is not None and dead.mark > 10**11  # tombstone


async def test_the_old_layout_is_migrated_without_losing_or_doubling_a_line(
    moto_url: str,
) -> None:
    async with aws_for(moto_url) as aws:
        t = tenant()
        a, b, c = life("a", NOW_MS), life("b", NOW_MS), life("c", NOW_MS - 400 * DAY_MS)
        old = {
            f"{legacy_store_prefix(t, 0)}c-1.lines.gz": sorted(a[:3] + c),
            f"{legacy_store_prefix(t, 0)}d-2.lines.gz": sorted(a[2:]),
            f"{legacy_store_prefix(t, 1)}d-3.lines.gz": sorted(b[:2]),
        }
        for key, lines in old.items():
            await aws.s3.put_object(Bucket=BUCKET, Key=key, Body=encode_lines(lines))
        store = store_of(aws)
        assert await store.merge(t, new_batch_id(), b[2:]) == set(b)
        assert await store.merge(t, new_batch_id(), a[:1]) == set(a)
        assert await list_keys(aws.s3, BUCKET, legacy_store_prefix(t, 0)) == []
        assert {tok: lines async for tok, lines in store.scan(t)} == {
            ticket_token(x): sorted(e for _, e in lines)
            for x, lines in (("a", a), ("b", b), ("c", c))
        }


async def test_a_lost_cold_manifest_is_an_error_not_a_loop(moto_url: str) -> None:
    async with aws_for(moto_url) as aws:
        t = tenant()
        store = store_of(aws, major_min_bytes=1)
        for n in range(3):
            await store.merge(t, new_batch_id(), life(f"lost{n}", NOW_MS - 3000 * DAY_MS))
            await store.compactor.compact_all(t)
        state = await store.state(t)
        assert state.manifest
        await aws.s3.delete_object(Bucket=BUCKET, Key=state.manifest)
        with pytest.raises(ObjectMissingError):  # looking again would find it missing forever
            await store_of(aws).compactor.compact_cold(t)


async def test_a_scan_goes_on_when_compaction_removes_what_it_reads(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_module, "SCAN_MIN_CHUNK_BYTES", 1)  # a block at a time
    monkeypatch.setattr(scan_module, "SCAN_BUFFER_BYTES", 1)
    async with aws_for(moto_url) as aws:
        t = tenant()
        store = store_of(aws, major_min_bytes=1)
        sent: set[EventLine] = set()
        for n in range(0, 300, 50):
            batch = [x for k in range(n, n + 50) for x in life(f"s{k:03d}", NOW_MS, messages=8)]
            sent |= set(batch)
            await store.merge(t, new_batch_id(), batch)
        await store.compactor.major(t)  # one major file of many blocks
        reader = store_of(aws, cache_bytes=0)  # nothing cached: every block is a GET
        opened = []
        inputs = scan_module._inputs
        monkeypatch.setattr(scan_module, "_inputs", lambda *a: opened.append(a) or inputs(*a))
        seen: dict[bytes, list[bytes]] = {}
        async for token, lines in reader.scan(t):
            seen[token] = lines
            if len(seen) == 100:  # halfway, the file it reads is merged away
                await store.merge(t, new_batch_id(), [life("s000", NOW_MS, messages=9)[-2]])
                await store.compactor.major(t)
        assert len(opened) == 2  # it listed again, from the 100th ticket on
        assert {(tok, e) for tok, lines in seen.items() for e in lines} == sent


async def test_the_cache_is_bounded_in_bytes(moto_url: str) -> None:
    async with aws_for(moto_url) as aws:
        t = tenant()
        store = store_of(aws, cache_bytes=200_000)
        for n in range(50):
            await store.merge(t, new_batch_id(), life(f"c{n}", NOW_MS, messages=20))
            assert store.reader.cache.bytes <= 200_000
        assert of(await store.merge(t, new_batch_id(), [life("c3", NOW_MS)[0]]), "c3") == set(
            life("c3", NOW_MS, messages=20)
        )
