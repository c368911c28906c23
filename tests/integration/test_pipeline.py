"""End to end: events posted to the collector come out as exact metrics."""

from __future__ import annotations

import gzip
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from shared.aws import Aws
from shared.events import format_ms, to_ms
from shared.layout import QUARANTINE, decode_ndjson_lines, new_batch_id, raw_key, stage_key
from shared.objects import get_bytes
from shared.settings import Settings
from tests.integration.helpers import event, eventually

KeyMaker = Callable[..., Awaitable[str]]


def at(base: int, seconds: float) -> str:
    return format_ms(base + int(seconds * 1000))


def recent_base() -> int:
    """A start 12 minutes ago, whole seconds, so the whole story is in the past."""
    return to_ms(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12))


def story(tenant: str, ticket: str, b: int) -> list[dict[str, Any]]:
    """A ticket with a transfer; its metrics are computed by hand in the test."""

    def e(n: int, etype: str, s: float, **f: Any) -> dict[str, Any]:
        return event(tenant, ticket, f"{ticket}-{n}", etype, at(b, s), **f)

    return [
        e(1, "ticket_created", 0, channel="whatsapp", group_id="g1"),
        e(2, "message_sent", 10, sender="customer"),
        e(3, "message_sent", 11, sender="bot"),
        e(4, "ticket_assigned", 120, agent_id="a1"),
        e(5, "message_sent", 180, sender="agent", agent_id="a1"),
        e(6, "message_sent", 240, sender="customer"),
        e(7, "message_sent", 270, sender="customer"),
        e(8, "message_sent", 300, sender="agent", agent_id="a1"),
        e(9, "ticket_transferred", 360, to_group_id="g2"),
        e(10, "ticket_assigned", 420, agent_id="a2"),
        e(11, "message_sent", 480, sender="agent", agent_id="a2"),
        e(12, "ticket_closed", 540, closed_by="agent"),
    ]


async def post(http: httpx.AsyncClient, url: str, key: str, events: list[Any]) -> dict[str, Any]:
    resp = await http.post(
        url + "/v1/events",
        content=orjson.dumps(events),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def get_ticket(
    http: httpx.AsyncClient, url: str, key: str, tenant: str, ticket: str
) -> dict[str, Any] | None:
    resp = await http.get(
        f"{url}/v1/tenants/{tenant}/tickets/{ticket}", headers={"Authorization": f"Bearer {key}"}
    )
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_ticket_metrics_end_to_end(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    tenant = "e2e-metrics"
    await ticket_metrics_end_to_end(services, tenant, await new_key(tenant), http)


async def ticket_metrics_end_to_end(
    services: dict[str, str], tenant: str, key: str, http: httpx.AsyncClient
) -> None:
    """A story through every stage, checked at every endpoint (also run on the
    resources the CloudFormation template makes: tests/deploy)."""
    ticket = "T-1"
    b = recent_base()
    events = story(tenant, ticket, b)
    shuffled = events + random.sample(events, 4)  # duplicates
    random.Random(7).shuffle(shuffled)
    bad = event("someone-else", ticket, "x-1", "ticket_closed", at(b, 1))
    first = await post(http, services["collector"], key, [*shuffled[:8], bad])
    assert first["accepted"] == 8
    assert [(r["index"], r["code"]) for r in first["rejected"]] == [(8, "tenant_mismatch")]
    second = await post(http, services["collector"], key, shuffled[8:])
    assert second["accepted"] == len(shuffled) - 8

    doc = await eventually(
        lambda: get_ticket(http, services["report"], key, tenant, ticket),
        lambda d: d is not None and len(d["events"]) == 12,
    )
    assert doc is not None
    assert doc["metrics"] == {
        "created_at": at(b, 0),
        "closed_at": at(b, 540),
        "status": "closed",
        "channel": "whatsapp",
        "first_group_id": "g1",
        "last_group_id": "g2",
        "last_agent_id": "a2",
        "first_assigned_at": at(b, 120),
        "wait_time_ms": 120_000,
        "abandoned": False,
        "abandon_time_ms": None,
        "queue_time_ms": 180_000,
        "first_response_time_ms": 180_000,
        "handle_time_ms": 360_000,
        "resolution_time_ms": 540_000,
        "transfers": 1,
        "customer_messages": 3,
        "agent_messages": 3,
        "bot_messages": 1,
        "avg_reply_time_ms": 115_000,
        "replies": 2,
        "agents_involved": 2,
    }
    assert [e["event_id"] for e in doc["events"]] == [e["event_id"] for e in events]
    assert [(s["group_id"], s["queue_time_ms"], s["answered"]) for s in doc["group_stints"]] == [
        ("g1", 120_000, True),
        ("g2", 60_000, True),
    ]
    assert [(s["agent_id"], s["handle_time_ms"], s["messages"]) for s in doc["agent_stints"]] == [
        ("a1", 240_000, 2),
        ("a2", 120_000, 1),
    ]

    day = datetime.fromtimestamp(b / 1000, UTC).date().isoformat()
    resp = await http.get(
        f"{services['report']}/v1/tenants/{tenant}/reports/summary",
        params={"from": day, "to": day},
        headers={"Authorization": f"Bearer {key}"},
    )
    summary = resp.json()
    assert summary["tickets_created"] == 1
    assert summary["tickets_closed"] == 1
    assert summary["transfers"] == 1
    assert (summary["customer_messages"], summary["agent_messages"]) == (3, 3)
    assert summary["wait_time"] == {
        "count": 1, "avg_ms": 120_000, "p50_ms": 120_000, "p90_ms": 120_000, "p95_ms": 120_000
    }  # fmt: skip
    assert summary["avg_reply_time"]["count"] == 2
    assert summary["avg_reply_time"]["avg_ms"] == 115_000
    assert summary["service_level"] == 0.0  # first response after 180 s > 60 s

    async def report(name: str, **params: str) -> Any:
        resp = await http.get(
            f"{services['report']}/v1/tenants/{tenant}/reports/{name}",
            params={"from": day, "to": day, **params},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    groups = (await report("groups"))["rows"]
    assert [(g["group_id"], g["stints"], g["answered"], g["transferred_out"]) for g in groups] == [
        ("g1", 1, 1, 1),
        ("g2", 1, 1, 0),
    ]
    assert [g["queue_time"]["p50_ms"] for g in groups] == [120_000, 60_000]
    agents = {a["agent_id"]: a for a in (await report("agents"))["rows"]}
    assert {a: (r["stints"], r["handle_time"]["avg_ms"], r["agent_messages"],
                r["first_responses"], r["tickets_closed"]) for a, r in agents.items()} == {
        "a1": (1, 240_000, 2, 1, 0),
        "a2": (1, 120_000, 1, 0, 1),
    }  # fmt: skip
    points = (await report("timeseries", granularity="hour"))["points"]
    assert len(points) == 24
    assert sum(p["tickets_created"] for p in points) == 1
    assert sum(p["customer_messages"] for p in points) == 3

    async def realtime() -> dict[str, Any]:
        resp = await http.get(
            f"{services['report']}/v1/tenants/{tenant}/realtime",
            headers={"Authorization": f"Bearer {key}"},
        )
        body: dict[str, Any] = resp.json()
        return body

    if day == datetime.now(UTC).date().isoformat():  # published right after the reports
        now = await eventually(realtime, lambda r: r["tickets_closed"] == 1)
        assert now["wait_time"] == summary["wait_time"]
    assert (await realtime())["waiting_now"] == {"total": 0, "by_group": {}}


async def test_late_close_replaces_the_open_ticket(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    tenant, ticket = "e2e-late", "T/late"  # any id, even with a slash
    key = await new_key(tenant)
    b = recent_base()
    events = [
        event(tenant, ticket, "l1", "ticket_created", at(b, 0), channel="webchat", group_id="g"),
        event(tenant, ticket, "l2", "ticket_assigned", at(b, 30), agent_id="ann"),
    ]
    await post(http, services["collector"], key, events)
    rt_url = f"{services['report']}/v1/tenants/{tenant}/realtime"
    headers = {"Authorization": f"Bearer {key}"}

    async def realtime() -> dict[str, Any]:
        body: dict[str, Any] = (await http.get(rt_url, headers=headers)).json()
        return body

    now = await eventually(realtime, lambda r: r["assigned_now"]["total"] == 1)
    assert now["assigned_now"]["by_agent"] == {"ann": 1}

    close = event(tenant, ticket, "l3", "ticket_closed", at(b, 90))
    await post(http, services["collector"], key, [close])
    doc = await eventually(
        lambda: get_ticket(http, services["report"], key, tenant, ticket),
        lambda d: d is not None and d["metrics"]["status"] == "closed",
    )
    assert doc is not None
    assert doc["metrics"]["handle_time_ms"] == 60_000
    assert doc["metrics"]["resolution_time_ms"] == 90_000
    after = await eventually(realtime, lambda r: r["assigned_now"]["total"] == 0)
    assert after["assigned_now"] == {"total": 0, "by_agent": {}}

    # The open version was counted, then retracted: the reports count the ticket once.
    day = datetime.fromtimestamp(b / 1000, tz=UTC).date()
    reports = f"{services['report']}/v1/tenants/{tenant}/reports"
    dates = {"from": str(day - timedelta(days=1)), "to": str(day + timedelta(days=1))}
    summary = (await http.get(f"{reports}/summary", params=dates, headers=headers)).json()
    assert (summary["tickets_created"], summary["tickets_closed"]) == (1, 1)
    assert summary["wait_time"] == {"count": 1, "avg_ms": 30_000, "p50_ms": 30_000,
                                    "p90_ms": 30_000, "p95_ms": 30_000}  # fmt: skip
    assert summary["handle_time"]["p95_ms"] == 60_000  # one value: exact, not a bin's middle
    agents = (await http.get(f"{reports}/agents", params=dates, headers=headers)).json()
    assert [(a["agent_id"], a["stints"], a["tickets_closed"]) for a in agents["rows"]] == [
        ("ann", 1, 1)
    ]


async def test_filter_quarantines_bad_lines_and_keeps_the_good(
    services: dict[str, str],
    new_key: KeyMaker,
    http: httpx.AsyncClient,
    aws: Aws,
    settings: Settings,
) -> None:
    """Events that fail after the collector are kept with the reason, never block others."""
    tenant = "e2e-quarantine"
    key = await new_key(tenant)
    b = recent_base()
    good = event(tenant, "T-q", "q1", "message_sent", at(b, 0), sender="customer")
    lines = [
        orjson.dumps(good),
        b"{not json",
        orjson.dumps({**good, "event_id": "q2", "colour": "red"}),
        orjson.dumps({**good, "event_id": "q3", "tenant_id": "another"}),
    ]
    batch = new_batch_id()
    await aws.s3.put_object(
        Bucket=settings.bucket, Key=raw_key(tenant, batch), Body=gzip.compress(b"\n".join(lines))
    )
    doc = await eventually(
        lambda: get_ticket(http, services["report"], key, tenant, "T-q"), lambda d: d is not None
    )
    assert doc is not None
    assert doc["metrics"]["status"] == "partial"
    assert doc["metrics"]["customer_messages"] == 1
    data = await get_bytes(aws.s3, settings.bucket, stage_key(QUARANTINE, tenant, batch))
    reasons = [orjson.loads(line)["reason"].split(":")[0] for line in decode_ndjson_lines(data)]
    assert reasons == ["invalid_json", "unknown_field", "tenant_mismatch"]


async def test_poison_message_goes_to_the_dead_letter_queue_with_its_reason(
    services: dict[str, str], aws: Aws, settings: Settings
) -> None:
    queue = (await aws.sqs.get_queue_url(QueueName=settings.filter_queue))["QueueUrl"]
    dlq = (await aws.sqs.get_queue_url(QueueName=settings.filter_queue + "-dlq"))["QueueUrl"]
    await aws.sqs.send_message(QueueUrl=queue, MessageBody='{"keys": ["no/such key"]}')

    async def receive() -> list[Any]:
        resp = await aws.sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )  # fmt: skip
        return list(resp.get("Messages", []))

    messages = await eventually(receive, lambda m: len(m) > 0)
    assert messages[0]["Body"] == '{"keys": ["no/such key"]}'
    assert messages[0]["MessageAttributes"]["reason"]["StringValue"].startswith("poison:")


async def test_api_errors_follow_the_contract(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    reader = await new_key("e2e-auth", "read")
    ingester = await new_key("e2e-auth", "ingest")
    report, collector = services["report"], services["collector"]
    base = f"{report}/v1/tenants/e2e-auth"
    params = {"from": "2026-01-02", "to": "2026-01-01"}

    async def status(method: str, url: str, key: str | None, **kw: Any) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = await http.request(method, url, headers=headers, **kw)
        return resp.status_code, resp.json()["error"]["code"]

    summary, events_url = f"{base}/reports/summary", f"{collector}/v1/events"
    day = {"from": "2026-01-01", "to": "2026-01-01"}
    cases: list[tuple[str, str, str | None, dict[str, Any], tuple[int, str]]] = [
        ("GET", f"{base}/realtime", None, {}, (401, "unauthorized")),
        ("GET", f"{base}/realtime", "tlm_unknown", {}, (401, "unauthorized")),
        ("GET", f"{base}/realtime", ingester, {}, (403, "forbidden")),
        ("GET", f"{report}/v1/tenants/acme/realtime", reader, {}, (403, "forbidden")),
        ("GET", f"{report}/v1/tenants/{'x' * 80}/realtime", reader, {}, (403, "forbidden")),
        ("GET", summary, reader, {"params": params}, (400, "invalid_range")),
        ("GET", summary, reader, {"params": {**day, "tz": "Mars/Olympus"}}, (400, "invalid_tz")),
        ("GET", summary, reader, {}, (400, "invalid_request")),
        ("GET", summary, reader, {"params": {"from": "2026-01-01", "to": "9999-12-31"}},
         (400, "invalid_date")),
        ("GET", f"{base}/reports/timeseries", reader,
         {"params": {"from": "0001-01-01", "to": "9000-12-31", "granularity": "hour"}},
         (400, "too_many_points")),
        ("GET", summary, reader, {"params": {**day, "group_id": "g\x00"}},
         (400, "invalid_filter")),
        ("GET", summary, reader, {"params": {"from": "1900-01-01", "to": "1900-01-02",
                                             "tz": "Asia/Kolkata"}}, (400, "invalid_range")),
        ("GET", summary, reader, {"params": {"from": "9999-12-01", "to": "9999-12-30"}},
         (400, "invalid_range")),
        ("GET", f"{base}/tickets/nope", reader, {}, (404, "not_found")),
        ("POST", events_url, reader, {"content": b"[]"}, (403, "forbidden")),
        ("POST", events_url, ingester, {"content": b"[]"}, (400, "invalid_batch")),
        ("POST", events_url, ingester, {"content": b"{"}, (400, "invalid_json")),
    ]  # fmt: skip
    for method, url, key, kw, expected in cases:
        assert await status(method, url, key, **kw) == expected, (method, url, kw)
    too_big = b"[" + b" " * (1024 * 1024) + b"]"
    assert await status("POST", events_url, ingester, content=too_big) == (413, "too_large")


async def test_every_service_counts_its_aws_requests_on_metrics(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    key = await new_key("e2e-metrics-endpoint")
    b = recent_base()
    created = event("e2e-metrics-endpoint", "T-m", "m1", "ticket_created", at(b, 0),
                    channel="other", group_id="g")  # fmt: skip
    await post(http, services["collector"], key, [created])
    expected = {
        "collector": 'operation="PutRecords"',
        "dumper-metrics": 'operation="PutObject"',
        "filter-metrics": 'outcome="done"',
        "consolidator-metrics": 'operation="ListObjectsV2"',
        "enricher-metrics": 'operation="Publish"',
        "loader-metrics": 'queue="telemetry-load-realtime",outcome="done"',
        "report": 'service="dynamodb"',
    }
    for name, needle in expected.items():
        url = services[name] if name.endswith("metrics") else services[name] + "/metrics"

        async def scrape(url: str = url) -> str:
            return (await http.get(url)).text

        text = await eventually(scrape, lambda t, needle=needle: needle in t)
        assert "telemetry_aws_requests_total" in text
