"""What operators see (issue 12, "observability"): Prometheus metrics with HELP
and TYPE, freshness per queue, the lag from acceptance, HTTP latency by route
template, events and quarantined lines by reason, and JSON log lines that say
which tenant, object and message they are about."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest

from services.filter.handler import FilterDeps
from services.filter.handler import handle as filter_handle
from shared.aws import Aws
from shared.events import format_ms, to_ms
from shared.layout import QUARANTINE, decode_ndjson_lines, encode_ndjson, raw_key, stage_key
from shared.logs import JsonFormatter
from shared.objects import get_bytes, put_bytes
from shared.observe import Exposition
from shared.settings import Settings
from shared.worker import Worker, WorkerOptions
from tests.integration.helpers import event, eventually, samples
from tests.integration.test_pipeline import KeyMaker, at, recent_base

OPTIONS = WorkerOptions(concurrency=2, wait_s=1, visibility_timeout_s=30, max_receives=1)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _queues(aws: Aws) -> tuple[str, str]:
    name = f"observe-{uuid.uuid4().hex[:8]}"
    dlq = (await aws.sqs.create_queue(QueueName=name + "-dlq"))["QueueUrl"]
    url = (await aws.sqs.create_queue(QueueName=name))["QueueUrl"]
    return url, dlq


async def _run_until(worker: Worker, done: asyncio.Event, timeout_s: float = 20) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout_s)
    stop.set()
    await asyncio.wait_for(task, 10)


def batch_id(ago_s: float) -> str:
    ms = int((time.time() - ago_s) * 1000)
    return f"{ms:013d}-{uuid.uuid4().hex[:12]}"


async def test_a_worker_logs_json_with_its_work_and_measures_lag_and_wait(aws: Aws) -> None:
    url, dlq = await _queues(aws)
    queue = url.rsplit("/", 1)[-1]
    key = raw_key("obs-tenant", batch_id(ago_s=3))
    sent = await aws.sqs.send_message(
        QueueUrl=url, MessageBody=orjson.dumps({"keys": [key]}).decode()
    )
    await aws.sqs.send_message(QueueUrl=url, MessageBody='{"keys": ["poison-key"]}')
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    done = asyncio.Event()

    async def handle(k: str) -> None:
        if k == "poison-key":
            raise ValueError("no such thing")
        logging.getLogger("deep.inside").warning("something about %s", k)
        done.set()

    worker = Worker(aws.sqs, url, dlq, handle, OPTIONS, stage="filter")
    lag_before = value("telemetry_batch_lag_seconds_count", stage="filter", queue=queue)
    try:
        await _run_until(worker, done)
    finally:
        root.removeHandler(handler)
        root.level = level
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    inside = next(line for line in lines if line["logger"] == "deep.inside")
    assert inside["level"] == "WARNING" and inside["service"] == "test"
    assert (inside["tenant"], inside["key"], inside["queue"]) == ("obs-tenant", key, queue)
    assert inside["message_id"] == sent["MessageId"]
    [handled] = [line for line in lines if line["message"].startswith("handled ")]
    assert handled["level"] == "INFO" and handled["key"] == key and handled["lag_s"] >= 3
    [failed] = [line for line in lines if line["message"].startswith("handler failed")]
    assert failed["level"] == "ERROR" and failed["key"] == "poison-key"
    assert "ValueError: no such thing" in failed["error"] and "tenant" not in failed
    assert value("telemetry_messages_total", queue=queue, outcome="done") == 1
    assert value("telemetry_messages_total", queue=queue, outcome="dead_lettered") == 1
    assert value("telemetry_handle_seconds_count", stage="filter", queue=queue) == 2
    assert value("telemetry_queue_wait_seconds_count", queue=queue) == 2
    assert value("telemetry_batch_lag_seconds_count", stage="filter", queue=queue) == lag_before + 1
    # at least 3 s late: the 1, 2 and 3 s buckets do not hold it, the 5 s one does
    assert value("telemetry_batch_lag_seconds_bucket", stage="filter", queue=queue, le="2.0") == 0
    assert value("telemetry_batch_lag_seconds_bucket", stage="filter", queue=queue, le="5.0") == 1


async def test_a_queue_s_freshness_and_its_dead_letters_are_on_metrics(aws: Aws) -> None:
    """The oldest message a worker holds is as old as its SentTimestamp says; the
    DLQ's depth and the age of its oldest message are read from SQS."""
    url, dlq = await _queues(aws)
    await aws.sqs.send_message(QueueUrl=url, MessageBody='{"keys": ["slow"]}')
    await aws.sqs.send_message(QueueUrl=url, MessageBody="not json")  # poison: DLQ at once
    await asyncio.sleep(1.5)
    seen: list[float] = []
    done = asyncio.Event()

    async def handle(key: str) -> None:
        seen.append(worker.watch.oldest_in_flight_s())
        done.set()

    worker = Worker(aws.sqs, url, dlq, handle, OPTIONS, stage="filter")
    await _run_until(worker, done)
    await eventually(lambda: _dlq_total(aws, dlq), lambda n: n == 1)
    assert seen and seen[0] >= 1.4  # sent 1.5 s before the worker started
    assert worker.watch.oldest_in_flight_s() == 0.0  # holds nothing now
    await asyncio.sleep(1.1)
    await worker.watch.refresh_stats()
    text = generate_latest(Exposition([worker.watch])).decode()
    assert "# HELP telemetry_dlq_oldest_age_seconds" in text
    assert "# TYPE telemetry_dlq_messages gauge" in text
    [(_, parked)] = samples(text, "telemetry_dlq_messages")
    [(_, age)] = samples(text, "telemetry_dlq_oldest_age_seconds")
    assert parked == 1 and age >= 1.0
    depths = {labels["state"]: v for labels, v in samples(text, "telemetry_queue_messages")}
    assert depths == {"visible": 0, "in_flight": 0, "delayed": 0}


async def _dlq_total(aws: Aws, url: str) -> int:
    attrs = await aws.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


async def test_http_latency_is_by_route_template_and_events_by_outcome(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    tenant = "obs-http"
    key = await new_key(tenant)
    headers = {"Authorization": f"Bearer {key}"}
    route = {"route": "/v1/tenants/{tenant_id}/tickets/{ticket_id:path}", "method": "GET",
             "status": "404"}  # fmt: skip

    async def not_found() -> float:  # other tests of the session may have asked too
        text = (await http.get(services["report-metrics"])).text
        found = samples(text, "telemetry_http_request_seconds_count")
        return next((v for labels, v in found if labels == route), 0.0)

    before = await not_found()
    for ticket in ("T-secret-1", "T-secret-2"):
        resp = await http.get(f"{services['report']}/v1/tenants/{tenant}/tickets/{ticket}",
                              headers=headers)  # fmt: skip
        assert resp.status_code == 404
    await http.get(f"{services['report']}/no/such/path-{uuid.uuid4().hex}")
    await http.request("BREW", f"{services['report']}/healthz")
    b = recent_base()
    good = event(tenant, "T-1", "o1", "ticket_created", at(b, 0), channel="other", group_id="g")
    resp = await http.post(f"{services['collector']}/v1/events", headers=headers,
                           content=orjson.dumps([good, {**good, "type": "nope"}]))  # fmt: skip
    assert resp.status_code == 202

    text = (await http.get(services["report-metrics"])).text
    routes = samples(text, "telemetry_http_request_seconds_count")
    assert await not_found() - before == 2
    assert any(labels["route"] == "unmatched" for labels, _ in routes)
    assert any(labels["method"] == "other" for labels, _ in routes)
    assert "secret" not in text and "path-" not in text

    text = (await http.get(services["collector-metrics"])).text
    events = {(labels["outcome"], labels["reason"]): v
              for labels, v in samples(text, "telemetry_events_total")}  # fmt: skip
    assert events[("accepted", "")] >= 1 and events[("rejected", "invalid_value")] >= 1


async def test_the_filter_counts_what_it_quarantines_by_reason(
    aws: Aws, provisioned: Settings
) -> None:
    """An event the collector took (its clock) that the batch's own time puts in
    the future is quarantined and counted as in_future."""
    tenant = f"obs-{uuid.uuid4().hex[:6]}"
    batch = batch_id(ago_s=3 * 3600)  # the batch was written 3 hours ago
    written = datetime.now(UTC) - timedelta(hours=3)
    soon = format_ms(to_ms(written + timedelta(hours=2)))
    fine = format_ms(to_ms(written))
    lines: list[dict[str, Any]] = [
        event(tenant, "T", "e1", "ticket_created", fine, channel="other", group_id="g"),
        event(tenant, "T", "e2", "ticket_closed", soon),
    ]
    key = raw_key(tenant, batch)
    await put_bytes(aws.s3, provisioned.bucket, key, encode_ndjson(lines))
    before = value("telemetry_quarantined_lines_total", reason="in_future")
    await filter_handle(FilterDeps(s3=aws.s3, bucket=provisioned.bucket), key)
    assert value("telemetry_quarantined_lines_total", reason="in_future") == before + 1
    quarantined = decode_ndjson_lines(
        await get_bytes(aws.s3, provisioned.bucket, stage_key(QUARANTINE, tenant, batch))
    )
    assert [orjson.loads(q)["reason"].split(":")[0] for q in quarantined] == ["in_future"]
