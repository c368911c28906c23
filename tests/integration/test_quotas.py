"""Quotas and fairness (issue 12): a per-key rate limit answered 429 with
Retry-After, a cap on a body's JSON values, a cap on a timeseries' buckets,
against the services as processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson

from services.collector.limits import MAX_NODES
from telemetry.up import free_port
from tests.integration.conftest import ServiceProcesses
from tests.integration.helpers import event, samples
from tests.integration.test_pipeline import KeyMaker, at, recent_base


def batch(tenant: str, n: int, prefix: str) -> bytes:
    b = recent_base()
    return orjson.dumps([event(tenant, f"T-{prefix}", f"{prefix}-{i}", "message_sent",
                               at(b, i), sender="customer") for i in range(n)])  # fmt: skip


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    stack_env: dict[str, str], new_key: KeyMaker, tmp_path: Path
) -> None:
    """1 event/s with bursts of 500, in one collector process: the first batch of
    500 goes, the next would wait about 500 s; another key is not held back."""
    port, metrics = free_port(), free_port()
    group = ServiceProcesses(stack_env, tmp_path)
    group.start("collector", 0, TELEMETRY_COLLECTOR_PORT=str(port),
                TELEMETRY_METRICS_PORT=str(metrics), TELEMETRY_COLLECTOR_RATE_LIMIT="1",
                TELEMETRY_COLLECTOR_RATE_BURST="500")  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/events"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(150):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            busy, calm = (
                await new_key("quota-busy", "ingest"),
                await new_key("quota-calm", "ingest"),
            )

            async def post(key: str, body: bytes) -> httpx.Response:
                return await http.post(
                    url, content=body, headers={"Authorization": f"Bearer {key}"}
                )

            assert (await post(busy, batch("quota-busy", 500, "a"))).status_code == 202
            refused = await post(busy, batch("quota-busy", 500, "b"))
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 490 <= int(refused.headers["retry-after"]) <= 500
            assert (await post(calm, batch("quota-calm", 500, "c"))).status_code == 202
            one = await post(busy, batch("quota-busy", 1, "d"))
            assert one.status_code == 429 and one.headers["retry-after"] == "1"
            await asyncio.sleep(1.2)  # another event's worth
            assert (await post(busy, batch("quota-busy", 1, "e"))).status_code == 202
            text = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
    finally:
        group.stop()
    events = {(s["outcome"], s["reason"]): v for s, v in samples(text, "telemetry_events_total")}
    assert events[("refused", "rate_limited")] == 501
    assert events[("accepted", "")] == 1001


async def test_too_many_values_or_buckets_are_refused(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    key = await new_key("quota-caps")
    headers = {"Authorization": f"Bearer {key}"}
    b = recent_base()
    nested = event("quota-caps", "T", "x", "message_sent", at(b, 0), sender="customer",
                   attributes={"a": [0] * 1000})  # fmt: skip
    body = orjson.dumps([{**nested, "event_id": f"x{i}"} for i in range(MAX_NODES // 1000 + 1)])
    resp = await http.post(f"{services['collector']}/v1/events", content=body, headers=headers)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "too_complex"

    resp = await http.get(
        f"{services['report']}/v1/tenants/quota-caps/reports/timeseries",
        params={
            "from": "2000-01-01",
            "to": "2054-01-01",
            "tz": "Asia/Kolkata",
            "granularity": "day",
        },
        headers=headers,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "too_many_buckets"


async def test_readyz_costs_no_aws_request_between_checks(
    services: dict[str, str], http: httpx.AsyncClient
) -> None:
    """Unauthenticated probes hit the cache: 30 of them within the cache time
    (TELEMETRY_READYZ_CACHE_S, 5 s) cost at most two checks."""

    async def checks() -> float:
        text = (await http.get(services["collector-metrics"])).text
        return sum(v for labels, v in samples(text, "telemetry_aws_requests_total")
                   if labels["operation"] == "DescribeStreamSummary")  # fmt: skip

    before = await checks()
    for _ in range(30):
        assert (await http.get(f"{services['collector']}/readyz")).status_code == 200
    assert await checks() - before <= 2
