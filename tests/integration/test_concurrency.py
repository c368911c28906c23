"""Four workers per stage, injected redeliveries and crashes: every ticket exact.

Principle 1 of DEVELOPERS.md: duplicates, reordering, retries, crashes and N
concurrent workers per stage never change a number.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from services.consolidator.state import StateTable, TenantState
from services.enricher.metrics import TicketResult, dedupe, evaluate
from shared.aws import Aws, open_aws
from shared.events import canonical
from shared.layout import CONSOLIDATED, ENRICHED, FILTERED, RAW
from shared.objects import list_keys
from shared.pipeline import DLQ_SUFFIX, queue_names
from shared.service import queue_backlog
from shared.settings import Settings
from telemetry.commands import provision_command
from telemetry.keys import create_key
from telemetry.simulate import ticket_life
from telemetry.up import free_port
from tests.integration.conftest import ServiceProcesses, settings_of
from tests.integration.helpers import eventually

WORKERS = 4
TENANTS = ("conc-a", "conc-b")
TICKETS_PER_TENANT = 30


@pytest.fixture(scope="module")
def scaled_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Resources of its own, so the one-of-each stack never sees these messages."""
    names = {
        "TELEMETRY_BUCKET": "telemetry-scaled",
        "TELEMETRY_STREAM": "scaled-events",
        "TELEMETRY_TOPIC": "scaled-tickets",
        "TELEMETRY_FILTER_QUEUE": "scaled-filter",
        "TELEMETRY_CONSOLIDATOR_QUEUE": "scaled-consolidator",
        "TELEMETRY_ENRICHER_QUEUE": "scaled-enricher",
        "TELEMETRY_REALTIME_QUEUE": "scaled-realtime",
        "TELEMETRY_REPORTS_QUEUE": "scaled-reports",
        "TELEMETRY_KEYS_TABLE": "scaled-keys",
        "TELEMETRY_CHECKPOINTS_TABLE": "scaled-checkpoints",
        "TELEMETRY_REALTIME_TABLE": "scaled-realtime",
        "TELEMETRY_COLLECTOR_PORT": str(free_port()),
        "TELEMETRY_REPORT_PORT": str(free_port()),
        "TELEMETRY_VISIBILITY_TIMEOUT_S": "5",
        "TELEMETRY_WORKER_CONCURRENCY": "2",
        # A store this small seals closed tickets and splits partitions within the test.
        "TELEMETRY_STORE_TABLE": "scaled-store",
        "TELEMETRY_STORE_RETENTION_S": "0",
        "TELEMETRY_STORE_PARTITION_BYTES": "20000",
    }
    return {**stack_env, **names}


@pytest.fixture(scope="module")
def scaled(
    scaled_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    asyncio.run(provision_command(settings_of(scaled_env)))
    group = ServiceProcesses(scaled_env, tmp_path_factory.mktemp("scaled-logs"))
    for service in ("collector", "dumper", "report"):
        group.start(service)
    for service in ("filter", "consolidator", "enricher", "loader"):
        for i in range(WORKERS):
            group.start(service, i)
    try:  # a stack that never became ready is stopped too
        group.wait_ready(timeout_s=120)  # 20 processes importing at once on 2 cores
        yield group
    finally:
        group.stop()


def workload(rng: random.Random) -> list[dict[str, Any]]:
    """Full lives and lives cut short (still waiting or held), several tenants."""
    now = datetime.now(UTC)
    events = []
    for tenant in TENANTS:
        for n in range(TICKETS_PER_TENANT):
            life = ticket_life(rng, tenant, n, now)
            events += life[: rng.randint(2, len(life))] if rng.random() < 0.3 else life
    return events


def expected(events: list[dict[str, Any]]) -> dict[tuple[str, str], TicketResult]:
    lines: dict[tuple[str, str], set[bytes]] = {}
    for e in events:
        lines.setdefault((e["tenant_id"], e["ticket_id"]), set()).add(canonical(e))
    return {k: evaluate(dedupe(v)[0]) for k, v in lines.items()}


async def inject_redeliveries(aws: Aws, settings: Settings, at_least: int) -> int:
    """Send again, at random, the messages of objects already processed."""
    routes = [
        (RAW, [settings.filter_queue]),
        (FILTERED, [settings.consolidator_queue]),
        (CONSOLIDATED, [settings.enricher_queue]),
        (ENRICHED, [settings.realtime_queue, settings.reports_queue]),
    ]
    urls = {
        q: (await aws.sqs.get_queue_url(QueueName=q))["QueueUrl"]
        for _, queues in routes
        for q in queues
    }
    rng = random.Random(5)
    sent = 0
    while sent < at_least:
        for prefix, queues in routes:
            keys = await list_keys(aws.s3, settings.bucket, f"{prefix}/")
            for key in rng.sample(keys, min(2, len(keys))):
                for q in queues:
                    await aws.sqs.send_message(
                        QueueUrl=urls[q], MessageBody=orjson.dumps({"keys": [key]}).decode()
                    )
                    sent += 1
        await asyncio.sleep(0.3)
    return sent


async def drained(aws: Aws, queue: str) -> None:
    for _ in range(240):
        if await queue_backlog(aws.sqs, queue) == 0:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{queue} did not drain")


async def test_four_workers_per_stage_with_redeliveries_and_crashes(
    scaled: ServiceProcesses, scaled_env: dict[str, str]
) -> None:
    settings = settings_of(scaled_env)
    rng = random.Random(11)
    events = workload(rng)
    truth = expected(events)
    sent = events + rng.sample(events, len(events) // 5)
    rng.shuffle(sent)
    keys = {t: await create_key(settings, t, "ingest,read") for t in TENANTS}
    async with open_aws(settings) as aws, httpx.AsyncClient(timeout=30) as http:
        chaos = asyncio.create_task(inject_redeliveries(aws, settings, at_least=150))
        for i in range(0, len(sent), 60):
            if i == 360:  # crash a worker of two stages mid-run, then restart it
                scaled.kill("consolidator", 1)
                scaled.kill("loader", 2)
                scaled.start("consolidator", 1)
                scaled.start("loader", 2)
            chunk = sent[i : i + 60]
            for tenant in TENANTS:
                batch = [e for e in chunk if e["tenant_id"] == tenant]
                if batch:
                    resp = await http.post(
                        scaled.urls["collector"] + "/v1/events",
                        content=orjson.dumps(batch),
                        headers={"Authorization": f"Bearer {keys[tenant]}"},
                    )
                    assert resp.status_code == 202 and not resp.json()["rejected"]
            await asyncio.sleep(0.2)

        async def wrong_tickets() -> list[tuple[str, str]]:
            wrong = []
            for (tenant, ticket), result in truth.items():
                resp = await http.get(
                    f"{scaled.urls['report']}/v1/tenants/{tenant}/tickets/{ticket}",
                    headers={"Authorization": f"Bearer {keys[tenant]}"},
                )
                doc = resp.json() if resp.status_code == 200 else None
                if doc is None or (
                    doc["metrics"] != result.metrics()
                    or doc["group_stints"] != [s.to_json() for s in result.group_stints]
                    or doc["agent_stints"] != [s.to_json() for s in result.agent_stints]
                ):
                    wrong.append((tenant, ticket))
            return wrong

        async def settled() -> list[tuple[str, str]]:
            """The wrong tickets once none are left, or after two minutes."""
            for _ in range(120):
                wrong = await wrong_tickets()
                if not wrong:
                    break
                await asyncio.sleep(1)
            return wrong

        redelivered = await chaos
        assert redelivered >= 150
        wrong = await settled()
        assert wrong == [], f"{len(wrong)} of {len(truth)} tickets wrong"

        # The worst redelivery: every older batch again, after the newest was loaded.
        loader_queues = [settings.realtime_queue, settings.reports_queue]
        old = await list_keys(aws.s3, settings.bucket, f"{ENRICHED}/")
        rng.shuffle(old)
        for queue in loader_queues:
            url = (await aws.sqs.get_queue_url(QueueName=queue))["QueueUrl"]
            for key in old:
                await aws.sqs.send_message(
                    QueueUrl=url, MessageBody=orjson.dumps({"keys": [key]}).decode()
                )
        for queue in loader_queues:
            await drained(aws, queue)
        assert await wrong_tickets() == []

        for tenant in TENANTS:
            mine = [r for (t, _), r in truth.items() if t == tenant]
            headers = {"Authorization": f"Bearer {keys[tenant]}"}
            rt = (
                await http.get(
                    f"{scaled.urls['report']}/v1/tenants/{tenant}/realtime", headers=headers
                )
            ).json()
            assert rt["waiting_now"]["total"] == sum(r.status == "waiting" for r in mine)
            assert rt["assigned_now"]["total"] == sum(r.status == "assigned" for r in mine)
            days = sorted({datetime.fromtimestamp(t / 1000, UTC).date().isoformat()
                           for r in mine for t in (r.created_at, r.closed_at) if t})  # fmt: skip
            summary = (
                await http.get(
                    f"{scaled.urls['report']}/v1/tenants/{tenant}/reports/summary",
                    params={"from": days[0], "to": days[-1]},
                    headers=headers,
                )
            ).json()
            assert summary["tickets_created"] == sum(r.created_at is not None for r in mine)
            assert summary["tickets_closed"] == sum(r.status == "closed" for r in mine)
            assert summary["tickets_abandoned"] == sum(r.abandoned for r in mine)
            assert summary["customer_messages"] == sum(r.customer_messages for r in mine)
            assert summary["transfers"] == sum(r.transfers for r in mine if r.status == "closed")

        # Late events of tickets closed long enough to be sealed, through every stage.
        table = StateTable(aws.dynamodb, settings.store_table)

        async def shapes() -> list[TenantState | None]:
            return [await table.read(t) for t in TENANTS]

        states = await eventually(
            shapes,
            lambda ss: all(s and s.manifest for s in ss) and any(len(s.parts) > 1 for s in ss if s),
            90,
        )
        print("store states:", states)
        late = [
            {"event_id": f"{e['ticket_id']}-late", "tenant_id": e["tenant_id"],
             "ticket_id": e["ticket_id"], "type": "message_sent",
             "occurred_at": e["occurred_at"], "sender": "customer"}
            for e in events
            if e["type"] == "ticket_created"
            and truth[(e["tenant_id"], e["ticket_id"])].status == "closed"
        ]  # fmt: skip
        for tenant in TENANTS:
            resp = await http.post(
                scaled.urls["collector"] + "/v1/events",
                content=orjson.dumps([e for e in late if e["tenant_id"] == tenant]),
                headers={"Authorization": f"Bearer {keys[tenant]}"},
            )
            assert resp.status_code == 202
        truth = expected(events + late)
        wrong = await settled()
        assert wrong == [], f"{len(wrong)} of {len(truth)} tickets wrong after late events"

        for queue in queue_names(settings):
            url = (await aws.sqs.get_queue_url(QueueName=queue + DLQ_SUFFIX))["QueueUrl"]
            attrs = await aws.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0", queue
