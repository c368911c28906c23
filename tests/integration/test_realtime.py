"""The real-time store against the moto server and PostgreSQL: whatever the order,
the duplicates and the concurrency of the loaders, `/realtime`'s day equals
the exact view of every ticket's newest version; its index holds the open
tickets only; a quarter is never left stale by a publisher's race or failure."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.enricher.handler import ticket_record
from services.enricher.metrics import TicketResult, evaluate
from services.loader.quarters import CLAIM_SQL, DONE_SQL, enqueue, publish, quarter_item
from services.loader.realtime import realtime_item
from services.loader.reports import load_records
from services.report.realtime import realtime_view
from services.report.stats import stats
from shared.aws import Aws, open_aws
from shared.db import make_engine
from shared.events import event_ms, format_ms, to_ms
from shared.realtime import OPEN_INDEX, OPEN_KEY, put_if_newer, quarter_key, quarters_partition
from shared.rollups import Rollup
from shared.settings import Settings
from telemetry.provision import ensure_realtime_table, ensure_table
from telemetry.simulate import ticket_life

ZONES = ("UTC", "Asia/Kathmandu", "America/Sao_Paulo")  # +5:45, -3:00


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of its own: `publish` sends every pending quarter of the
    database, and the services' stack shares the session's."""
    engine = make_engine(fresh_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def aws(moto_url: str) -> AsyncIterator[Aws]:
    settings = Settings(
        AWS_ENDPOINT_URL=moto_url, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test"
    )
    async with open_aws(settings) as aws:
        yield aws


def versions(tenant: str, n: int, rng: random.Random, end: datetime) -> list[dict[str, Any]]:
    """The enriched records of one ticket, one per prefix of its events in time order."""
    events = sorted(ticket_life(rng, tenant, n, end), key=event_ms)
    return [
        ticket_record(tenant, events[0]["ticket_id"], i, evaluate(events[:i]))
        for i in range(1, len(events) + 1)
    ]


def exact_view(results: list[TicketResult], start: int, end: int) -> dict[str, Any]:
    def today(t: int | None) -> bool:
        return t is not None and start <= t < end

    closed = [r for r in results if r.status == "closed" and today(r.closed_at)]
    waiting = [r for r in results if r.status == "waiting"]
    assigned = [r for r in results if r.status == "assigned"]
    return {
        "tickets_created": sum(today(r.created_at) for r in results),
        "tickets_closed": len(closed),
        "tickets_abandoned": sum(r.abandoned for r in closed),
        "waiting_now": {"total": len(waiting), "by_group": dict(sorted(
            Counter(str(r.group_id) for r in waiting).items()))},
        "assigned_now": {"total": len(assigned), "by_agent": dict(sorted(
            Counter(str(r.agent_id) for r in assigned).items()))},
        "oldest_waiting_since": None,  # compared separately
        "wait_time": stats([r.metrics()["wait_time_ms"] for r in results
                            if r.created_at is not None and today(r.first_assigned_at)]),
        "first_response_time": stats([r.metrics()["first_response_time_ms"] for r in results
                                      if r.created_at is not None and today(r.first_response_at)]),
    }  # fmt: skip


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal, except percentiles: within 2% (histogram bins), never another rank."""
    for name in ("wait_time", "first_response_time"):
        g, w = got.pop(name), want.pop(name)
        assert (g["count"], g["avg_ms"]) == (w["count"], w["avg_ms"]), name
        for p in ("p50_ms", "p90_ms", "p95_ms"):
            assert (g[p] is None) == (w[p] is None)
            if w[p] is not None:
                assert abs(g[p] - w[p]) <= 0.02 * w[p] + 1, (name, p, g[p], w[p])
    got.pop("oldest_waiting_since"), want.pop("oldest_waiting_since")
    assert got == want


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_the_day_equals_the_newest_versions_whatever_the_delivery(
    engine: AsyncEngine, aws: Aws, seed: int
) -> None:
    rng = random.Random(seed)
    table = f"realtime-{uuid.uuid4().hex[:8]}"
    await ensure_realtime_table(aws, table)
    now = datetime.now(UTC)
    tenants = [f"rt-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    # Lives cut at a random version: many tickets are still waiting or held.
    lives = {t: [life[: rng.randint(1, len(life))]
                 for life in (versions(t, n, rng, now - timedelta(minutes=rng.randrange(600)))
                              for n in range(40))] for t in tenants}  # fmt: skip
    records = [r for t in tenants for life in lives[t] for r in life]
    sent = records + rng.sample(records, len(records) // 3)  # duplicates
    rng.shuffle(sent)
    batches: list[list[dict[str, Any]]] = []  # as enriched objects: a ticket once per batch
    for rec in sent:
        free = [b for b in batches if len(b) < 40 and all(r["ticket_id"] != rec["ticket_id"]
                                                          for r in b)]  # fmt: skip
        if free and rng.random() < 0.9:
            rng.choice(free).append(rec)
        else:
            batches.append([rec])
    slots = asyncio.Semaphore(4)  # four loaders at once

    async def loader(batch: list[dict[str, Any]]) -> None:
        async with slots:
            await load_records(engine, batch)
            await publish(engine, aws.dynamodb, table)
            for rec in batch:
                await put_if_newer(aws.dynamodb, table, realtime_item(rec))

    await asyncio.gather(*(loader(b) for b in batches))
    for tenant in tenants:
        newest = [life[-1] for life in lives[tenant]]
        results = [evaluate(r["events"]) for r in newest]
        indexed = await aws.dynamodb.query(
            TableName=table, IndexName=OPEN_INDEX, KeyConditionExpression=f"{OPEN_KEY} = :t",
            ExpressionAttributeValues={":t": {"S": tenant}},
        )  # fmt: skip
        open_now = {
            r["ticket_id"] for r in newest if r["facts"]["status"] in ("waiting", "assigned")
        }
        assert {i["ticket_id"]["S"] for i in indexed["Items"]} == open_now
        assert open_now, "some tickets must be open for the test to mean anything"
        for name in ZONES:
            zone = ZoneInfo(name)
            # The day that holds the middle of the lives' 10-hour spread holds
            # at least half of it, whatever the hour the test runs at (the
            # day of `now` holds nothing just after a zone's midnight).
            day = (now - timedelta(minutes=300)).astimezone(zone).date()
            start = to_ms(datetime.combine(day, time(), zone))
            end = to_ms(datetime.combine(day + timedelta(days=1), time(), zone))
            got = await realtime_view(aws.dynamodb, table, tenant, start, end)
            assert got["tickets_created"] > 0 and got["wait_time"]["count"] > 0, name
            waiting = [r for r in newest if r["facts"]["status"] == "waiting"]
            since = [r["facts"]["queue_since"] for r in waiting if r["facts"]["queue_since"]]
            assert got["oldest_waiting_since"] == (format_ms(min(since)) if since else None)
            assert_same(got, exact_view(results, start, end))


async def outbox(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM realtime_outbox"))).scalar_one())


async def test_a_failed_publish_leaves_its_quarters_for_the_next(
    engine: AsyncEngine, aws: Aws
) -> None:
    """The loader's batch is committed; DynamoDB fails (here: no such table).
    The quarters stay in the outbox, and the next publish sends them. An older
    snapshot never replaces a newer one."""
    rng = random.Random(3)
    tenant, table = f"rt-{uuid.uuid4().hex[:6]}", f"realtime-{uuid.uuid4().hex[:8]}"
    await ensure_realtime_table(aws, table)
    now = datetime.now(UTC)
    life = versions(tenant, 0, rng, now)
    await load_records(engine, [life[-1]])
    waiting = await outbox(engine)
    assert waiting >= 1
    with pytest.raises(ExceptionGroup):
        await publish(engine, aws.dynamodb, "realtime-missing")
    assert await outbox(engine) == waiting
    assert await publish(engine, aws.dynamodb, table) == waiting
    assert await outbox(engine) == 0
    start = to_ms(datetime.combine(now.date(), time(), UTC)) - 86_400_000
    got = await realtime_view(aws.dynamodb, table, tenant, start, start + 3 * 86_400_000)
    assert got["tickets_created"] == 1
    assert got["wait_time"]["count"] == (evaluate(life[-1]["events"]).first_assigned_at is not None)
    created = evaluate(life[-1]["events"]).created_at
    assert created is not None
    quarter = created // 1000 - created // 1000 % 900
    stored = await aws.dynamodb.get_item(
        TableName=table,
        Key={
            "tenant_id": {"S": quarters_partition(tenant)},
            "ticket_id": {"S": quarter_key(quarter)},
        },
    )
    older = int(stored["Item"]["version"]["N"]) - 1
    stale = quarter_item(tenant, quarter, {"created": [5, 0]}, b"", version=older)
    assert not await put_if_newer(aws.dynamodb, table, stale)  # a slower publisher's snapshot
    again = await realtime_view(aws.dynamodb, table, tenant, start, start + 3 * 86_400_000)
    assert again == got


async def test_a_claimed_quarter_is_leased_and_a_later_change_stays_queued(
    engine: AsyncEngine,
) -> None:
    """A publisher claimed a quarter (others do not put it meanwhile); a loader
    then changed it. The publisher's delete must leave it queued, claimable at
    once, for the newer snapshot."""
    tenant = f"rt-{uuid.uuid4().hex[:6]}"
    bucket = int(datetime.now(UTC).timestamp()) // 900 * 900
    delta = {tenant: {("all", 0, bucket, ""): Rollup({"created": [1, 0]})}}

    async def claim() -> list[Any]:
        async with engine.begin() as conn:
            rows = (await conn.execute(CLAIM_SQL, {"lease_s": 30, "limit": 10_000})).all()
        return [r for r in rows if r.tenant_id == tenant]

    async with engine.begin() as conn:
        await enqueue(conn, delta)
    [claimed] = await claim()
    assert await claim() == []  # leased: a concurrent publisher skips it
    async with engine.begin() as conn:  # a lease that has ended: claimable again
        await conn.execute(text("UPDATE realtime_outbox SET lease = now() - interval '1 s'"
                                " WHERE tenant_id = :t"), {"t": tenant})  # fmt: skip
    [claimed] = await claim()

    async def done(row: Any) -> None:
        keys = {"tenants": [row.tenant_id], "buckets": [row.bucket], "seqs": [row.seq],
                "leases": [row.lease]}  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(DONE_SQL, keys)

    async with engine.begin() as conn:
        await enqueue(conn, delta)  # the loader's later change of the same quarter
    await done(claimed)
    [again] = await claim()
    assert again.seq > claimed.seq
    await done(again)
    assert await claim() == []


async def test_a_table_made_before_the_index_gets_it_with_its_open_tickets(aws: Aws) -> None:
    tenant, table = "rt-upgrade", f"realtime-{uuid.uuid4().hex[:8]}"
    await ensure_table(  # as provisioned before the index existed
        aws, table,
        [{"AttributeName": "tenant_id", "KeyType": "HASH"},
         {"AttributeName": "ticket_id", "KeyType": "RANGE"}],
        [{"AttributeName": "tenant_id", "AttributeType": "S"},
         {"AttributeName": "ticket_id", "AttributeType": "S"}],
    )  # fmt: skip
    for ticket, status in (("t-open", "waiting"), ("t-held", "assigned"), ("t-done", "closed")):
        await aws.dynamodb.put_item(TableName=table, Item={
            "tenant_id": {"S": tenant}, "ticket_id": {"S": ticket}, "version": {"N": "3"},
            "status": {"S": status}})  # fmt: skip
    await ensure_realtime_table(aws, table)
    await ensure_realtime_table(aws, table)  # again: the marker says it was done
    indexed = await aws.dynamodb.query(
        TableName=table, IndexName=OPEN_INDEX, KeyConditionExpression=f"{OPEN_KEY} = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
    )  # fmt: skip
    assert sorted(i["ticket_id"]["S"] for i in indexed["Items"]) == ["t-held", "t-open"]

    # Provisioning that stopped before indexing the open tickets (the index was
    # still being built) indexes them when it runs again.
    await aws.dynamodb.put_item(TableName=table, Item={
        "tenant_id": {"S": tenant}, "ticket_id": {"S": "t-late"}, "version": {"N": "2"},
        "status": {"S": "waiting"}})  # fmt: skip
    await aws.dynamodb.delete_item(
        TableName=table, Key={"tenant_id": {"S": "#provision"}, "ticket_id": {"S": OPEN_INDEX}}
    )
    await ensure_realtime_table(aws, table)
    indexed = await aws.dynamodb.query(
        TableName=table, IndexName=OPEN_INDEX, KeyConditionExpression=f"{OPEN_KEY} = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
    )  # fmt: skip
    assert sorted(i["ticket_id"]["S"] for i in indexed["Items"]) == ["t-held", "t-late", "t-open"]
