"""The API for dashboards on the real stack: every answer matches its OpenAPI
model, errors have the contract's shape, ETag/304, gzip, CSV by link, 15- and
30-minute series, paged groups and agents; and the drill-down lists exactly
the tickets behind every countable number (disordered, duplicated input)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from pydantic import BaseModel
from sqlalchemy import text

from services.collector.models import Accepted
from services.enricher.metrics import TicketResult, dedupe, evaluate
from services.report import models
from services.report.drill import AGENT, GROUP, SUMMARY
from shared.db import make_engine
from shared.events import canonical
from shared.openapi import ErrorBody, Health, Ready
from shared.settings import Settings
from telemetry.simulate import ticket_life
from tests.integration.helpers import eventually

KeyMaker = Callable[..., Awaitable[str]]
TENANT = "e2e-drill"
# Fields counted once per ticket: the listed tickets are the number itself.
PER_TICKET = {"tickets_created", "tickets_closed", "tickets_abandoned", "wait_time",
              "first_response_time", "service_level", "handle_time", "resolution_time"}  # fmt: skip


def number(row: dict[str, Any], field: str) -> int:
    """The report's number behind `field`: a count, a stats object's count, or
    the first responses within the SLA that `service_level` divides."""
    if field == "service_level":
        count = row["first_response_time"]["count"]
        return 0 if not count else round(row["service_level"] * count)
    value = row[field]
    return int(value["count"] if isinstance(value, dict) else value)


class Client:
    def __init__(self, http: httpx.AsyncClient, base: str, key: str, dates: dict[str, str]):
        self.http, self.base, self.dates = http, base, dates
        self.headers = {"Authorization": f"Bearer {key}"}

    async def get(self, path: str, model: type[BaseModel] | None = None, **params: Any) -> Any:
        resp = await self.http.get(f"{self.base}/{path}", params={**self.dates, **params},
                                   headers=self.headers)  # fmt: skip
        assert resp.status_code == 200, resp.text
        if model is not None:
            model.model_validate(resp.json())
        return resp.json()

    async def drill(self, **params: Any) -> tuple[int, int, list[dict[str, Any]]]:
        """(total, tickets, every row over all pages), checking each page's model."""
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            page = await self.get("drill", models.Drill, limit=7, **params, **extra)
            rows.extend(page["rows"])
            cursor = page.get("next_cursor")
            if cursor is None:
                return page["total"], page["tickets"], rows


def check_drill(
    total: int, tickets: int, rows: list[dict[str, Any]], want: int, field: str
) -> None:
    ids = [r["ticket_id"] for r in rows]
    assert len(ids) == len(set(ids)) == tickets, field
    assert total == sum(r["count"] for r in rows) == want, field
    if field in PER_TICKET:
        assert len(rows) == want, field


async def send_traffic(
    http: httpx.AsyncClient, url: str, key: str, now: datetime, tenant: str = TENANT
) -> dict[str, TicketResult]:
    """40 ticket lives, a quarter of them re-sent, in random order."""
    rng = random.Random(14)
    events = [e for n in range(40) for e in ticket_life(rng, tenant, n, now)]
    sent = events + rng.sample(events, len(events) // 4)
    rng.shuffle(sent)
    for i in range(0, len(sent), 120):
        resp = await http.post(f"{url}/v1/events", content=orjson.dumps(sent[i : i + 120]),
                               headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert resp.status_code == 202
        assert Accepted.model_validate(resp.json()).rejected == []
    lines: dict[str, set[bytes]] = {}
    for e in events:
        lines.setdefault(e["ticket_id"], set()).add(canonical(e))
    return {t: evaluate(dedupe(v)[0]) for t, v in lines.items()}


async def test_dashboard_api_and_drill_down(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    key = await new_key(TENANT)
    now = datetime.now(UTC)
    truth = await send_traffic(http, services["collector"], key, now)
    dates = {"from": (now - timedelta(days=1)).date().isoformat(),
             "to": (now + timedelta(days=1)).date().isoformat()}  # fmt: skip
    api = Client(http, f"{services['report']}/v1/tenants/{TENANT}", key, dates)
    summary = await eventually(
        lambda: api.get("reports/summary"),
        lambda s: (
            s["tickets_created"] == len(truth)
            and s["customer_messages"] == sum(r.customer_messages for r in truth.values())
        ),
        timeout_s=60,
    )
    models.Summary.model_validate(summary)

    # Every countable number of the summary, with and without a filter.
    # A report zone (local day rows) and a zone of UTC buckets read the same ledger rows.
    agent = max(r.last_agent_id or "" for r in truth.values())
    cases: list[dict[str, Any]] = [
        {}, {"group_id": "support"}, {"channel": "whatsapp", "sla_seconds": 30},
        {"tz": "America/Sao_Paulo"}, {"tz": "Asia/Kathmandu", "agent_id": agent},
    ]  # fmt: skip
    for filters in cases:
        row = await api.get("reports/summary", **filters)
        for field in SUMMARY:
            got = await api.drill(report="summary", field=field, **filters)
            check_drill(*got, number(row, field), f"{field} {filters}")
    abandoned = await api.drill(report="summary", field="tickets_abandoned")
    assert abandoned[0] > 0 and summary["transfers"] > 0
    assert {r["ticket_id"] for r in abandoned[2]} == {t for t, r in truth.items() if r.abandoned}
    for r in abandoned[2]:
        models.Metrics.model_validate(r["metrics"])
        assert r["metrics"]["abandoned"] is True
    within = await api.drill(report="summary", field="first_response_time", sla="within")
    over = await api.drill(report="summary", field="first_response_time", sla="over")
    assert within[0] + over[0] == summary["first_response_time"]["count"]
    assert all(m["value_ms"] <= 60_000 for r in within[2] for m in r["measurements"])
    assert all(m["value_ms"] > 60_000 for r in over[2] for m in r["measurements"])

    # Timeseries points, 15 and 30 minutes included: each point's numbers too.
    for granularity in ("15m", "30m", "hour"):
        points = (await api.get("reports/timeseries", models.Timeseries,
                                granularity=granularity))["points"]  # fmt: skip
        assert sum(p["tickets_created"] for p in points) == summary["tickets_created"]
        assert sum(p["agent_messages"] for p in points) == summary["agent_messages"]
    busy = sorted(points, key=lambda p: -p["tickets_closed"])[:2]
    for point in busy:
        for field in SUMMARY:
            got = await api.drill(report="timeseries", field=field, granularity="hour",
                                  start=point["start"])  # fmt: skip
            check_drill(*got, number(point, field), f"{field} at {point['start']}")

    groups = (await api.get("reports/groups", models.Groups))["rows"]
    assert len(groups) > 1 and busy[0]["tickets_closed"] > 0
    for g in groups:
        for field in GROUP:
            got = await api.drill(report="groups", field=field, group_id=g["group_id"])
            check_drill(*got, number(g, field), f"{g['group_id']} {field}")
    agents = (await api.get("reports/agents", models.Agents))["rows"]
    assert len(agents) > 1
    for a in agents:
        for field in AGENT:
            got = await api.drill(report="agents", field=field, agent_id=a["agent_id"])
            check_drill(*got, number(a, field), f"{a['agent_id']} {field}")

    # Paged and sorted: every row once, in the asked order.
    paged: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await api.get("reports/agents", models.Agents, sort="-stints", limit=2,
                             **({"cursor": cursor} if cursor else {}))  # fmt: skip
        paged.extend(page["rows"])
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert sorted(paged, key=lambda a: a["agent_id"]) == agents
    assert [a["stints"] for a in paged] == sorted((a["stints"] for a in agents), reverse=True)

    ticket_id = abandoned[2][0]["ticket_id"]
    ticket = await api.get(f"tickets/{ticket_id}", models.Ticket, **{"from": None, "to": None})
    assert ticket["metrics"]["abandoned"] is True
    await api.get("realtime", models.Realtime, **{"from": None, "to": None})

    await check_http(api, key)
    await check_collector(http, services, key, await new_key(TENANT, "read"))


async def check_collector(
    http: httpx.AsyncClient, services: dict[str, str], key: str, read_only: str
) -> None:
    """The collector's answers and errors match its OpenAPI models; probes too."""
    url = f"{services['collector']}/v1/events"
    bad = {"event_id": "x", "tenant_id": TENANT, "ticket_id": "t", "type": "nope",
           "occurred_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    resp = await http.post(
        url, content=orjson.dumps([bad]), headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status_code == 202
    assert Accepted.model_validate(resp.json()).rejected[0].code == "invalid_value"
    for status, body, token in ((400, b"[", key), (400, b"[]", key), (401, b"[]", "nope"),
                                (403, b"[]", read_only)):  # fmt: skip
        resp = await http.post(url, content=body, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == status, resp.text
        ErrorBody.model_validate(resp.json())
    for service in ("collector", "report"):
        Health.model_validate((await http.get(f"{services[service]}/healthz")).json())
        Ready.model_validate((await http.get(f"{services[service]}/readyz")).json())


async def check_http(api: Client, key: str) -> None:
    """CSV by link, ETag and 304, gzip, and errors in the contract's shape."""
    url = f"{api.base}/reports/timeseries"
    params = {**api.dates, "granularity": "15m"}
    csv = await api.http.get(url, params={**params, "format": "csv"}, headers=api.headers)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.startswith("start,tickets_created,")
    first = await api.http.get(url, params=params, headers=api.headers)
    assert first.headers["cache-control"].startswith("private")
    assert first.headers["content-encoding"] == "gzip"  # httpx asks for it and decodes it
    etag = first.headers["etag"]
    again = await api.http.get(url, params=params, headers={**api.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert csv.headers["etag"] != etag  # CSV and JSON are different representations

    async def error(status: int, path: str, headers: dict[str, str], **extra: str) -> str:
        resp = await api.http.get(f"{api.base}/{path}", params={**api.dates, **extra},
                                  headers=headers)  # fmt: skip
        assert resp.status_code == status, resp.text
        return ErrorBody.model_validate(resp.json()).error.code

    assert await error(401, "reports/summary", {}) == "unauthorized"
    assert await error(400, "reports/timeseries", api.headers, granularity="minute")
    assert await error(400, "reports/summary", api.headers, channel="fax")
    assert await error(400, "reports/groups", api.headers, sort="nope") == "invalid_sort"
    assert await error(400, "drill", api.headers, report="groups", field="stints")
    assert await error(400, "drill", api.headers, report="summary", field="nope")
    quarter = {"report": "summary", "field": "transfers", "from": "2026-01-01"}
    await api.get("drill", models.Drill, **quarter, to="2026-04-02")  # 92 days
    too_long = await error(400, "drill", api.headers, **quarter, to="2026-04-03")
    assert too_long == "range_too_long"
    assert await error(404, "tickets/none", api.headers) == "not_found"
    other = f"{api.base.rsplit('/', 1)[0]}/e2e-drill-other"
    drill = {**api.dates, "report": "summary", "field": "transfers"}
    resp = await api.http.get(f"{other}/drill", headers=api.headers, params=drill)
    assert resp.status_code == 403 and ErrorBody.model_validate(resp.json())
    assert key not in resp.text


async def test_the_no_group_row_of_realtime_lists_the_tickets_without_a_group(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient, provisioned: Settings
) -> None:
    """`/realtime` keys a waiting ticket with no group "None"; drilling that row
    lists it (a ticket row written directly: valid events always name a group)."""
    tenant = "e2e-drill-none"
    key = await new_key(tenant)
    engine = make_engine(provisioned.require_database_url())
    rows = [("no-group", {}), ("group-none", {"last_group_id": "None"}),
            ("sales", {"last_group_id": "sales"})]  # fmt: skip
    try:
        async with engine.begin() as conn:
            for ticket, metrics in rows:
                doc = orjson.dumps({"metrics": {"status": "waiting", **metrics}}).decode()
                await conn.execute(
                    text("INSERT INTO tickets (tenant_id, ticket_id, version, status, doc)"
                         " VALUES (:tenant, :ticket, 1, 'waiting', CAST(:doc AS json))"),
                    {"tenant": tenant, "ticket": ticket, "doc": doc},
                )  # fmt: skip
    finally:
        await engine.dispose()
    url = f"{services['report']}/v1/tenants/{tenant}/drill"
    headers = {"Authorization": f"Bearer {key}"}
    listed: dict[str, list[str]] = {}
    for group in ("None", "sales"):
        params = {"report": "now", "field": "waiting", "group_id": group,
                  "from": "2026-01-01", "to": "2026-01-01"}  # fmt: skip
        resp = await http.get(url, params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()  # metrics of these hand-written rows are not whole
        assert body["total"] == len(body["rows"])
        listed[group] = sorted(r["ticket_id"] for r in body["rows"])
    assert listed == {"None": ["group-none", "no-group"], "sales": ["sales"]}
