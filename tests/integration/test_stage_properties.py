"""Property: the real filter, consolidator and enricher, against the moto server,
give every ticket exactly the metrics of its set of distinct events, whatever the
order, the duplicates, the split into objects, the redeliveries and the
concurrency (SPEC §1)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.consolidator import handler as consolidator
from services.consolidator.partition import Policy
from services.consolidator.store import StoreRaceError, TicketStore, build_store
from services.enricher import handler as enricher
from services.enricher.handler import ticket_record
from services.enricher.metrics import dedupe, evaluate
from services.filter import handler as filter_stage
from services.loader.realtime import realtime_item
from shared.aws import Aws, open_aws
from shared.events import canonical
from shared.layout import (
    CONSOLIDATED,
    ENRICHED,
    FILTERED,
    decode_ndjson_lines,
    new_batch_id,
    raw_key,
)
from shared.objects import get_bytes, list_keys
from shared.settings import Settings
from tests.integration.helpers import bucket_and_store_table
from tests.unit.test_metrics_properties import DAY_MS, histories

BUCKET = "telemetry-properties"
TABLE = "telemetry-properties-store"
# Small enough that these few events are merged, sealed (closed a day ago) and split.
POLICY = Policy(fanout=3, retention_ms=DAY_MS, major_min_bytes=1, partition_bytes=1_500)
TENANTS = itertools.count()
CONCURRENCY = 4


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[dict[str, Any]]], list[list[bytes]]]:
    """Tickets' histories, then what producers sent: shuffled, repeated, some ids
    re-sent with different content, split into raw objects."""
    drawn = draw(st.lists(histories(), min_size=1, max_size=4))
    tickets = [[{**e, "ticket_id": f"t-{i}"} for e in h] for i, h in enumerate(drawn)]
    sent = [e for h in tickets for e in h]
    sent += draw(st.lists(st.sampled_from(sent), max_size=6)) if sent else []
    for e in draw(st.lists(st.sampled_from(sent), max_size=2)) if sent else []:
        sent.append({**e, "attributes": {"variant": draw(st.integers(0, 3))}})
    order = draw(st.permutations(sent))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    bounds = [0, *cuts, len(order)]
    objects = [
        [orjson.dumps(e) for e in order[a:b]] for a, b in itertools.pairwise(bounds) if b > a
    ]
    return tickets, objects


async def run_redelivered(
    handle: Callable[[str], Awaitable[None]], keys: list[str], rng: random.Random
) -> None:
    """Every key at least once, some twice, in any order, CONCURRENCY at a time."""
    schedule = keys + rng.sample(keys, k=len(keys) // 2)
    rng.shuffle(schedule)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(key: str) -> None:
        async with slots:
            for _ in range(5):  # the worker retries a message the store raced
                try:
                    await handle(key)
                    return
                except StoreRaceError:
                    await asyncio.sleep(0.1)
            await handle(key)

    await asyncio.gather(*(one(k) for k in schedule))


async def run_stages(
    aws: Aws,
    topic: str,
    tenant: str,
    objects: list[list[bytes]],
    rng: random.Random,
    done: set[str] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every stage over every object of the tenant not in `done` (which it extends)."""
    done = set() if done is None else done

    async def new(prefix: str) -> list[str]:
        keys = [k for k in await list_keys(aws.s3, BUCKET, f"{prefix}/{tenant}/") if k not in done]
        done.update(keys)
        return keys

    for lines in objects:
        body = gzip.compress(b"\n".join(lines))
        await aws.s3.put_object(Bucket=BUCKET, Key=raw_key(tenant, new_batch_id()), Body=body)
    raw = await new("raw")
    await run_redelivered(
        partial(filter_stage.handle, filter_stage.FilterDeps(aws.s3, BUCKET)), raw, rng
    )
    # Two consolidators (caches of their own) while two compactors run throughout.
    stores = [store_of(aws, 20_000) for _ in range(2)]
    deps = [consolidator.ConsolidatorDeps(store=s) for s in stores]
    filtered = await new(FILTERED)
    compactors = asyncio.Event()

    async def compact(store: TicketStore) -> None:
        while not compactors.is_set():
            await store.compactor.compact_all(tenant)
            await asyncio.sleep(0.01)

    running = [asyncio.create_task(compact(s)) for s in stores]

    async def either(key: str) -> None:
        await consolidator.handle(deps[rng.randrange(2)], key)

    try:
        await run_redelivered(either, filtered, rng)
    finally:
        compactors.set()
        await asyncio.gather(*running)
    consolidated = await new(CONSOLIDATED)
    edeps = enricher.EnricherDeps(aws.s3, aws.sns, BUCKET, topic)
    await run_redelivered(partial(enricher.handle, edeps), consolidated, rng)
    latest: dict[str, dict[str, Any]] = {}
    realtime: dict[str, dict[str, Any]] = {}
    for key in await list_keys(aws.s3, BUCKET, f"{ENRICHED}/{tenant}/"):
        for line in decode_ndjson_lines(await get_bytes(aws.s3, BUCKET, key)):
            rec = orjson.loads(line)
            # What the loaders keep: the highest version (real time: of those it writes).
            for kept, wanted in ((latest, True), (realtime, rec["realtime"])):
                old = kept.get(rec["ticket_id"])
                if wanted and (old is None or rec["version"] > old["version"]):
                    kept[rec["ticket_id"]] = rec
    return latest, realtime


def store_of(aws: Aws, cache_bytes: int) -> TicketStore:
    return build_store(aws.s3, aws.dynamodb, BUCKET, TABLE, POLICY, cache_bytes)


async def prepare(aws: Aws) -> str:
    """The bucket, the store's table and the topic; the topic's ARN."""
    await bucket_and_store_table(aws, BUCKET, TABLE)
    return (await aws.sns.create_topic(Name="telemetry-properties"))["TopicArn"]


@pytest.fixture(scope="module")
def stage_settings(moto_url: str) -> Settings:
    return Settings(
        AWS_ENDPOINT_URL=moto_url, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test"
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=deliveries(), seed=st.integers(0, 2**32))
def test_stages_compute_the_metrics_of_the_event_set(
    stage_settings: Settings,
    case: tuple[list[list[dict[str, Any]]], list[list[bytes]]],
    seed: int,
) -> None:
    _, objects = case
    tenant = f"prop-{next(TENANTS)}"
    objects = [[orjson.dumps({**orjson.loads(line), "tenant_id": tenant}) for line in obj]
               for obj in objects]  # fmt: skip

    async def scenario() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        async with open_aws(stage_settings) as aws:
            topic = await prepare(aws)
            # Some objects first, then the store compacted (closed tickets sealed,
            # partitions split), then the rest: late events of sealed tickets.
            cut = random.Random(seed).randint(0, len(objects))
            done: set[str] = set()
            await run_stages(aws, topic, tenant, objects[:cut], random.Random(seed), done)
            await store_of(aws, 0).compactor.compact_all(tenant)
            return await run_stages(aws, topic, tenant, objects[cut:], random.Random(seed), done)

    latest, realtime = asyncio.run(scenario())

    sent: dict[str, set[bytes]] = {}
    for obj in objects:
        for line in obj:
            e = orjson.loads(line)
            sent.setdefault(e["ticket_id"], set()).add(canonical(e))
    assert set(latest) == set(sent)
    assert len(sent) == len([h for h in case[0] if h])
    for ticket, lines in sent.items():
        events, version = dedupe(lines)
        expected = evaluate(events)
        got = latest[ticket]
        assert got["version"] == version
        assert got["metrics"] == expected.metrics()
        assert got["group_stints"] == [s.to_json() for s in expected.group_stints]
        assert got["agent_stints"] == [s.to_json() for s in expected.agent_stints]
        assert [e["event_id"] for e in got["events"]] == [e["event_id"] for e in expected.events]
        if expected.created_at is not None:  # what /realtime shows of the ticket
            want = realtime_item(ticket_record(tenant, ticket, version, expected))
            have = realtime_item(realtime[ticket])
            assert {**have, "version": None} == {**want, "version": None}


def test_batches_of_messages_alone_skip_the_realtime_write(
    stage_settings: Settings,
) -> None:
    """Batches that only add messages, the first response included, leave the
    real-time item as it was: they skip its write, and the item stays exact."""
    tenant = f"prop-{next(TENANTS)}"
    base = {"tenant_id": tenant, "ticket_id": "t-0"}
    batches = [
        [
            {**base, "event_id": "c", "type": "ticket_created",
             "occurred_at": "2026-11-20T10:00:00.000Z", "channel": "webchat", "group_id": "g"},
            {**base, "event_id": "a", "type": "ticket_assigned",
             "occurred_at": "2026-11-20T10:01:00.000Z", "agent_id": "ann"},
        ],
        [{**base, "event_id": "m1", "type": "message_sent",
          "occurred_at": "2026-11-20T10:02:00.000Z", "sender": "agent", "agent_id": "ann"}],
        [{**base, "event_id": "m2", "type": "message_sent",
          "occurred_at": "2026-11-20T10:03:00.000Z", "sender": "customer"}],
    ]  # fmt: skip

    async def scenario() -> list[bool]:
        async with open_aws(stage_settings) as aws:
            topic = await prepare(aws)
            flags = []
            done: set[str] = set()
            for batch in batches:  # one batch at a time, through every stage
                _, realtime = await run_stages(
                    aws, topic, tenant, [[orjson.dumps(e) for e in batch]], random.Random(0), done
                )
                flags.append(realtime.get("t-0", {}).get("version", 0))
            return flags

    versions = asyncio.run(scenario())
    assert versions == [2, 2, 2]  # written by the first batch only
