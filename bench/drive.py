"""What the fault suite and the soak share: the local stack of `telemetry up`
in a folder of its own, simulated traffic whose 202s are recorded, draining,
and the verdict of every ticket and report against the reference.

The stack is `telemetry.up.LocalStack` itself (moto, pgserver's PostgreSQL,
every stage as its own process, the emulator saved at each clean stop), on
free ports so it runs beside anyone's `make up`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.check import Truth, exact, wrong_tickets
from bench.probes import AcceptLog
from bench.reference import HOUR_MS, Window, agents, differences, groups, hourly, open_now, today
from bench.reference import summary as summary_of
from shared.aws import open_aws
from shared.layout import PARKED, decode_ndjson_lines
from shared.objects import get_bytes
from shared.pipeline import QUEUES, SERVICES
from shared.settings import Settings
from telemetry.keys import create_key
from telemetry.simulate import SendStats, send_traffic
from telemetry.traffic import Traffic
from telemetry.up import LocalStack, free_port

PATIENCE_RETRIES = 400  # of one body: minutes of a stack restarting, never give up early


def local_stack(folder: Path, settings: dict[str, str]) -> LocalStack:
    """A stack of `telemetry up` in `folder` (data and logs), on free ports, with
    the default settings but `settings` (environment variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEMETRY_"))}
    env.update(settings)
    env.update(
        TELEMETRY_MOTO_PORT=str(free_port()),
        TELEMETRY_COLLECTOR_PORT=str(free_port()),
        TELEMETRY_REPORT_PORT=str(free_port()),
    )
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in SERVICES}
    return LocalStack(env, folder, ports, logs)


def urls(settings: Settings) -> dict[str, str]:
    base = f"http://{settings.host}"
    return {"collector": f"{base}:{settings.collector_port}",
            "report": f"{base}:{settings.report_port}"}  # fmt: skip


async def tenant_keys(settings: Settings, tenants: list[str]) -> dict[str, str]:
    return {t: await create_key(settings, t, "ingest,read") for t in tenants}


async def send(
    url: str, keys: dict[str, str], rate: float, duration_s: float, seed: int, log: AcceptLog
) -> SendStats:
    """`telemetry simulate`'s traffic; each body lands in `log` right after its 202."""
    traffic = Traffic(random.Random(seed), sorted(keys), rate, duration_s, int(time.time() * 1000))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await send_traffic(traffic, client, keys, rate=rate, duration=duration_s, out=log,
                                  progress=False, max_retries=PATIENCE_RETRIES)  # fmt: skip


async def backlog(settings: Settings) -> dict[str, int]:
    """Messages in every queue and dead-letter queue: visible, in flight or delayed."""
    names = [n for q in QUEUES for n in (q.name(settings), q.dlq_name(settings))]
    attrs: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                  "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
    out: dict[str, int] = {}
    async with open_aws(settings) as aws:
        for name in names:
            url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
            got = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=attrs)
            out[name] = sum(int(v) for v in got.get("Attributes", {}).values())
    return out


async def parked(settings: Settings) -> Counter[str]:
    """Tickets a stage set aside (operations.md, "Parked tickets"), by stage and reason."""
    out: Counter[str] = Counter()
    async with open_aws(settings) as aws:
        resp = await aws.s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"{PARKED}/")
        for item in resp.get("Contents", []):
            stage = item["Key"].split("/")[2]
            data = await get_bytes(aws.s3, settings.bucket, item["Key"])
            for line in decode_ndjson_lines(data):
                out[f"{stage}: {orjson.loads(line).get('reason', '?')[:160]}"] += 1
    return out


async def drain(settings: Settings, last_202: float, timeout_s: float) -> dict[str, int]:
    """Until every work queue is empty three checks in a row (DLQs may hold something,
    which the caller reports); the dumper's buffer first gets its time to flush."""
    await asyncio.sleep(max(0.0, last_202 + settings.buffer_max_age_s + 2 - time.monotonic()))
    deadline = time.monotonic() + timeout_s
    empty = 0
    while True:
        depths = await backlog(settings)
        work = {k: v for k, v in depths.items() if not k.endswith("-dlq")}
        empty = empty + 1 if not any(work.values()) else 0
        if empty >= 3 or time.monotonic() > deadline:
            return depths
        await asyncio.sleep(2)


@dataclass
class Verdict:
    tickets: int
    wrong: list[str]  # "tenant/ticket", wrong or missing
    details: list[str] = field(default_factory=list)  # of the first wrong tickets
    reports: list[str] = field(default_factory=list)  # differences, "tenant report.path: ..."

    def line(self) -> str:
        return f"tickets checked {self.tickets}, tickets wrong {len(self.wrong)}"


async def verify(
    http: httpx.AsyncClient, report_url: str, keys: dict[str, str], events: list[dict[str, Any]],
    retries: int = 4, pause_s: float = 15.0,
) -> Verdict:  # fmt: skip
    """Every ticket (`GET /tickets/{id}`) and the reports of every tenant against
    the reference computed from `events` (those that got a 202); what is not
    right yet is checked again after a pause (a last batch may still load)."""
    truth = exact(events)
    todo = truth
    bad: list[tuple[str, str]] = []
    for attempt in range(retries):
        wrong, missing = await wrong_tickets(http, report_url, keys, todo)
        bad = wrong + missing
        if not bad:
            break
        todo = {k: truth[k] for k in bad}
        if attempt < retries - 1:
            await asyncio.sleep(pause_s)
    verdict = Verdict(len(truth), [f"{t}/{k}" for t, k in sorted(bad)])
    for _ in range(10 if bad else 0):  # what is wrong with the first few
        t, k = sorted(bad)[len(verdict.details)]
        verdict.details.append(await ticket_difference(http, report_url, keys[t], t, k, truth))
        if len(verdict.details) == len(bad):
            break
    for attempt in range(retries):
        verdict.reports = await report_differences(http, report_url, keys, truth)
        if not verdict.reports:
            break
        if attempt < retries - 1:
            await asyncio.sleep(pause_s)
    return verdict


async def ticket_difference(
    http: httpx.AsyncClient, report_url: str, key: str, tenant: str, ticket: str, truth: Truth
) -> str:
    resp = await http.get(f"{report_url}/v1/tenants/{tenant}/tickets/{ticket}",
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    r = truth[(tenant, ticket)]
    if resp.status_code != 200:
        return f"{tenant}/{ticket}: {resp.status_code} ({len(r.events)} events accepted)"
    doc = resp.json()
    want = {"metrics": r.metrics(), "group_stints": [s.to_json() for s in r.group_stints],
            "agent_stints": [s.to_json() for s in r.agent_stints]}  # fmt: skip
    diff = differences(want, doc)
    ids = {e["event_id"] for e in r.events} ^ {e["event_id"] for e in doc.get("events", [])}
    return f"{tenant}/{ticket}: {'; '.join(diff[:6])}; events differing: {sorted(ids)[:6]}"


async def report_differences(
    http: httpx.AsyncClient, report_url: str, keys: dict[str, str], truth: Truth
) -> list[str]:
    """summary, hourly timeseries, groups and agents over yesterday to tomorrow (UTC),
    and /realtime (open tickets, today's counts), per tenant."""
    now = datetime.now(UTC)
    first = datetime.combine(now.date() - timedelta(days=1), datetime.min.time(), UTC)
    lo = int(first.timestamp() * 1000)
    hi = lo + 72 * HOUR_MS
    dates = {"from": first.date().isoformat(), "to": (now.date() + timedelta(days=1)).isoformat()}
    out: list[str] = []
    for tenant, key in sorted(keys.items()):
        results = [r for (t, _), r in truth.items() if t == tenant]
        w = Window(lo, hi)
        expected = {
            "summary": summary_of(results, w),
            "timeseries": {"points": hourly(results, lo, hi)},
            "groups": {"rows": groups(results, w)},
            "agents": {"rows": agents(results, w)},
        }
        headers = {"Authorization": f"Bearer {key}"}
        base = f"{report_url}/v1/tenants/{tenant}"
        for name, want in expected.items():
            params = {**dates, **({"granularity": "hour"} if name == "timeseries" else {})}
            resp = await http.get(f"{base}/reports/{name}", params=params, headers=headers)
            got = resp.json() if resp.status_code == 200 else {"status": resp.status_code}
            out += [f"{tenant} {name}{d}" for d in differences(want, got)]
        resp = await http.get(f"{base}/realtime", headers=headers)
        got = resp.json() if resp.status_code == 200 else {"status": resp.status_code}
        want = {**open_now(results), **today(results, now)}
        out += [f"{tenant} realtime{d}" for d in differences(want, got)]
    return out
