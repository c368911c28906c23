"""Reports agree with themselves and with the per-ticket metrics (issue: numbers reconcile)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from services.enricher.metrics import dedupe, evaluate
from services.report.stats import nearest_rank
from shared.events import canonical
from telemetry.simulate import ticket_life
from tests.integration.helpers import eventually

KeyMaker = Callable[..., Awaitable[str]]
ADDITIVE = ("tickets_created", "tickets_closed", "tickets_abandoned", "transfers",
            "customer_messages", "agent_messages", "bot_messages")  # fmt: skip
STATS = ("wait_time", "first_response_time", "handle_time", "resolution_time", "avg_reply_time")


def additive(summary: dict[str, Any]) -> dict[str, int]:
    out = {k: summary[k] for k in ADDITIVE}
    out.update({f"{k}.count": summary[k]["count"] for k in STATS})
    return out


def total(rows: list[dict[str, Any]]) -> dict[str, int]:
    sums: dict[str, int] = {}
    for row in rows:
        for k, v in additive(row).items():
            sums[k] = sums.get(k, 0) + v
    return sums


async def test_summary_timeseries_groups_and_tickets_reconcile(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient
) -> None:
    tenant = "e2e-reports"
    key = await new_key(tenant)
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(21)
    now = datetime.now(UTC)
    events = [e for n in range(40) for e in ticket_life(rng, tenant, n, now)]
    sent = events + rng.sample(events, 30)
    rng.shuffle(sent)
    for i in range(0, len(sent), 150):
        body = orjson.dumps(sent[i : i + 150])
        resp = await http.post(f"{services['collector']}/v1/events", content=body, headers=headers)
        assert resp.status_code == 202
    lines: dict[str, set[bytes]] = {}
    for e in events:
        lines.setdefault(e["ticket_id"], set()).add(canonical(e))
    truth = {t: evaluate(dedupe(v)[0]) for t, v in lines.items()}
    first, last = now - timedelta(days=1), now + timedelta(days=1)
    dates = {"from": first.date().isoformat(), "to": last.date().isoformat()}
    base = f"{services['report']}/v1/tenants/{tenant}/reports"

    async def get(name: str, **params: str) -> Any:
        resp = await http.get(f"{base}/{name}", params={**dates, **params}, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    summary = await eventually(
        lambda: get("summary"),
        lambda s: (
            s["tickets_created"] == len(truth)
            and s["customer_messages"] == sum(r.customer_messages for r in truth.values())
        ),
        timeout_s=60,
    )
    results = list(truth.values())
    assert summary["tickets_closed"] == sum(r.status == "closed" for r in results)
    assert summary["tickets_abandoned"] == sum(r.abandoned for r in results)
    assert summary["transfers"] == sum(r.transfers for r in results if r.status == "closed")
    waits = sorted(r.metrics()["wait_time_ms"] for r in results if r.first_assigned_at)
    assert summary["wait_time"]["count"] == len(waits)
    for field, p in (("p50_ms", 50), ("p90_ms", 90), ("p95_ms", 95)):
        exact = nearest_rank(waits, p)
        assert abs(summary["wait_time"][field] - exact) <= 0.02 * exact  # SPEC §3 precision
    assert summary["wait_time"]["avg_ms"] == sum(waits) / len(waits)
    firsts = [r.metrics()["first_response_time_ms"] for r in results if r.first_response_at]
    within = sum(v <= 30_000 for v in firsts)
    assert (await get("summary", sla_seconds="30"))["service_level"] == within / len(firsts)

    for granularity in ("hour", "day", "week", "month"):
        points = (await get("timeseries", granularity=granularity))["points"]
        assert total(points) == additive(summary), granularity
    kathmandu = await get("summary", tz="Asia/Kathmandu")
    assert additive(kathmandu) == additive(summary)  # the range covers everything either way
    # A report zone reads its own days and months; a zone with the same offset
    # that is not one reads UTC buckets: the same values either way.
    sao_paulo = await get("summary", tz="America/Sao_Paulo")
    assert sao_paulo == await get("summary", tz="America/Argentina/Buenos_Aires")
    assert additive(sao_paulo) == additive(summary)
    for granularity in ("day", "week", "month"):
        points = await get("timeseries", granularity=granularity, tz="America/Sao_Paulo")
        same = (await get("timeseries", granularity=granularity,
                          tz="America/Argentina/Buenos_Aires"))  # fmt: skip
        assert [p for p in points["points"]] == [p for p in same["points"]], granularity

    by_group = [await get("summary", group_id=g) for g in {r.first_group_id for r in results}]
    assert total(by_group) == additive(summary)
    by_channel = [await get("summary", channel=c) for c in {r.channel for r in results}]
    assert total(by_channel) == additive(summary)
    pairs = {(r.channel, r.first_group_id) for r in results}
    by_pair = [await get("summary", channel=c, group_id=str(g)) for c, g in pairs]
    assert len(pairs) > len(by_channel) and total(by_pair) == additive(summary)

    groups = (await get("groups"))["rows"]
    ended = [s for r in results for s in r.group_stints if s.ended_at is not None]
    assert sum(g["stints"] for g in groups) == len(ended)
    assert sum(g["abandoned"] for g in groups) == sum(s.abandoned for s in ended)
    for g in groups:  # per value: counts exact, percentiles within 2%
        waits = sorted(s.queue_time_ms for s in ended if s.group_id == g["group_id"])
        assert g["queue_time"]["count"] == len(waits)
        exact = nearest_rank(waits, 90)
        assert abs(g["queue_time"]["p90_ms"] - exact) <= 0.02 * exact
    agents = (await get("agents"))["rows"]
    assert sum(a["agent_messages"] for a in agents) == summary["agent_messages"]
    assert sum(a["first_responses"] for a in agents) == summary["first_response_time"]["count"]
    stints = [s for r in results for s in r.agent_stints if s.ended_at is not None]
    assert {a["agent_id"] for a in agents} >= {s.agent_id for s in stints}
    for a in agents:
        handles = sorted(s.handle_time_ms for s in stints if s.agent_id == a["agent_id"])
        assert a["stints"] == a["handle_time"]["count"] == len(handles)
        if not handles:
            continue
        assert a["handle_time"]["avg_ms"] == sum(handles) / len(handles)
        for field, p in (("p50_ms", 50), ("p95_ms", 95)):
            exact = nearest_rank(handles, p)
            assert abs(a["handle_time"][field] - exact) <= 0.02 * exact, (a, handles)

    csv = await http.get(f"{base}/timeseries", params={**dates, "granularity": "day"},
                         headers={**headers, "Accept": "text/csv"})  # fmt: skip
    assert csv.headers["content-type"].startswith("text/csv")
    rows = csv.text.strip().splitlines()
    assert rows[0].startswith("start,tickets_created,") and len(rows) == 1 + 3

    # /realtime's day is the summary of the same day: both read the same rollup
    # rows (the real-time store holds their 15-minute snapshots). The zone whose
    # day began longest ago holds the tickets of the last 12 hours at least.
    tz = max(("UTC", "Asia/Tokyo", "America/Sao_Paulo", "Asia/Kathmandu"),
             key=lambda z: now.astimezone(ZoneInfo(z)).time())  # fmt: skip
    local = now.astimezone(ZoneInfo(tz)).date().isoformat()
    day = await get("summary", **{"from": local, "to": local, "tz": tz})
    realtime = await eventually(
        lambda: http.get(f"{services['report']}/v1/tenants/{tenant}/realtime",
                         params={"tz": tz}, headers=headers),
        lambda r: r.json()["tickets_created"] == day["tickets_created"],
    )  # fmt: skip
    assert day["tickets_created"] > 0
    day_fields = ("tickets_created", "tickets_closed", "tickets_abandoned", "wait_time",
                  "first_response_time")  # fmt: skip
    assert {k: realtime.json()[k] for k in day_fields} == {k: day[k] for k in day_fields}
