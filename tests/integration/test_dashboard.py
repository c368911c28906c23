"""The dashboard in a real browser (Debian's headless Chromium, driven by
Playwright) against the real local stack with known traffic: the numbers on
each view are the API's, a click on a number lists exactly the tickets behind
it, a ticket's timeline shows its events, CSV downloads, and another tenant's
key sees nothing. TELEMETRY_SCREENSHOTS=DIR saves a screenshot of each view."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright

from shared.events import format_ms, to_ms
from tests.integration.helpers import event, eventually
from tests.integration.test_drill import send_traffic

KeyMaker = Callable[..., Awaitable[str]]
TENANT = "e2e-dashboard"
DOTTED = "open/../4"  # a ticket id with path segments
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


async def values(page: Page, selector: str) -> dict[str, int]:
    """The `data-value` of each number link in `selector`, by its field."""
    found: dict[str, int] = await page.eval_on_selector_all(
        selector,
        "els => Object.fromEntries(els.map(e => [e.dataset.test, Number(e.dataset.value)]))",
    )
    return found


async def show(page: Page, route: str, ready: str, shot: str | None = None) -> None:
    await page.goto(route)
    await page.wait_for_selector(ready)
    await page.wait_for_selector("main:not([data-loading])")
    folder = os.environ.get("TELEMETRY_SCREENSHOTS")
    if shot and folder:  # the folder exists (docs/img)
        await page.wait_for_timeout(500)  # plotly's transitions
        await page.screenshot(path=f"{folder}/dashboard-{shot}.png", full_page=False)


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/dashboard")
    await page.fill("#key", key)
    await page.click("#signin-form button")
    await page.wait_for_selector("#nav:not([hidden])")


async def send_open_tickets(
    http: httpx.AsyncClient, url: str, key: str, now: datetime
) -> dict[str, str]:
    """Tickets waiting now (ticket -> group), and two held by agent `a-open`."""
    at = format_ms(to_ms(now) - 60_000)
    waiting = {f"open-{n}": ("sales", "support")[n % 2] for n in range(4)}
    waiting[DOTTED] = "sales"  # an id whose ticket link must not resolve to another path
    events = [
        event(TENANT, t, f"{t}-c", "ticket_created", at, channel="webchat", group_id=g)
        for t, g in {**waiting, "held-1": "sales", "held-2": "sales"}.items()
    ]
    events += [event(TENANT, t, f"{t}-a", "ticket_assigned", at, agent_id="a-open")
               for t in ("held-1", "held-2")]  # fmt: skip
    resp = await http.post(f"{url}/v1/events", content=orjson.dumps(events),
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert resp.status_code == 202 and resp.json()["accepted"] == len(events)
    return waiting


async def test_dashboard_views_equal_the_api(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient, browser: Browser
) -> None:
    key = await new_key(TENANT)
    now = datetime.now(UTC)
    truth = await send_traffic(http, services["collector"], key, now, TENANT)
    waiting = await send_open_tickets(http, services["collector"], key, now)
    base = services["report"]
    api_base = f"{base}/v1/tenants/{TENANT}"
    headers = {"Authorization": f"Bearer {key}"}
    dates = {"from": (now - timedelta(days=1)).date().isoformat(),
             "to": (now + timedelta(days=1)).date().isoformat(), "tz": "UTC"}  # fmt: skip

    async def get(path: str, **params: Any) -> Any:
        resp = await http.get(f"{api_base}/{path}", params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    summary = await eventually(
        lambda: get("reports/summary", **dates),
        lambda s: s["tickets_created"] == len(truth) + len(waiting) + 2,
        timeout_s=60,
    )
    day = now.date().isoformat()
    day_created = (await get("reports/summary", **{"from": day, "to": day}))["tickets_created"]
    await eventually(
        lambda: get("realtime"),
        lambda r: r["tickets_created"] == day_created and r["waiting_now"]["total"] == len(waiting),
    )
    await eventually(  # the ticket rows that the "now" drill-down reads
        lambda: get("drill", report="now", field="waiting", **dates),
        lambda d: d["total"] == len(waiting),
    )

    context = await browser.new_context(
        timezone_id="UTC", accept_downloads=True, viewport={"width": 1280, "height": 860}
    )
    page = await context.new_page()
    await sign_in(page, base, key)

    # Today: the real-time view's numbers.
    await show(page, f"{base}/dashboard#/today", "[data-test=waiting]", "today")
    realtime = await get("realtime")
    shown = await values(page, ".cards [data-test]")
    assert shown["tickets_created"] == realtime["tickets_created"] == day_created
    assert shown["tickets_abandoned"] == realtime["tickets_abandoned"]
    assert shown["waiting_now"] == realtime["waiting_now"]["total"] == len(waiting)
    assert shown["assigned_now"] == realtime["assigned_now"]["total"] == 2
    by_group = await page.eval_on_selector_all(
        "[data-test=waiting] tr[data-row]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.row,"
        " Number(r.querySelector('a').dataset.value)]))",
    )
    assert by_group == realtime["waiting_now"]["by_group"] == {"sales": 3, "support": 2}
    stats = await values(page, "[data-test=stats] a.num")
    assert stats["wait_time"] == realtime["wait_time"]["count"]
    await page.click("[data-test=waiting_now]")
    await page.wait_for_selector("[data-test=drill]")
    await page.wait_for_selector("main:not([data-loading])")
    listed = await page.eval_on_selector_all("[data-test=ticket]", "e => e.map(a => a.textContent)")
    assert sorted(listed) == sorted(waiting)
    await page.go_back()
    await page.wait_for_selector("tr[data-row=support] a")
    await page.click("tr[data-row=support] a")
    await page.wait_for_selector("[data-test=drill]")
    await page.wait_for_selector("main:not([data-loading])")
    listed = await page.eval_on_selector_all("[data-test=ticket]", "e => e.map(a => a.textContent)")
    assert sorted(listed) == sorted(t for t, g in waiting.items() if g == "support")
    await show(page, f"{base}/dashboard#/ticket?id={quote(DOTTED, safe='')}", "[data-test=events]")
    assert await page.text_content("[data-test=ticket-id]") == DOTTED

    # Trends: the summary's numbers, and a click lists exactly the tickets behind one.
    query = "&".join(f"{k}={v}" for k, v in {**dates, "granularity": "hour"}.items())
    await show(page, f"{base}/dashboard#/trends?{query}", "[data-test=points]", "trends")
    cards = await values(page, ".cards a.num")
    for field in ("tickets_created", "tickets_closed", "tickets_abandoned", "transfers",
                  "customer_messages", "agent_messages", "bot_messages"):  # fmt: skip
        assert cards[field] == summary[field], field
    assert await page.locator("#volume-chart svg").count() > 0  # plotly drew it
    await page.click(".cards a.num[data-test=tickets_abandoned]")
    await page.wait_for_selector("[data-test=drill]")
    await page.wait_for_selector("main:not([data-loading])")
    listed = await page.eval_on_selector_all(
        "[data-test=ticket]", "els => els.map(e => e.textContent)"
    )
    abandoned = {t for t, r in truth.items() if r.abandoned}  # the open tickets are not closed
    assert set(listed) == abandoned and len(listed) == summary["tickets_abandoned"] > 0
    if os.environ.get("TELEMETRY_SCREENSHOTS"):
        await show(page, page.url, "[data-test=drill]", "drill")

    # A listed ticket opens its timeline, with every event.
    await page.click("[data-test=ticket] >> nth=0")
    await page.wait_for_selector("[data-test=events]")
    ticket_id = await page.text_content("[data-test=ticket-id]")
    assert ticket_id in abandoned
    rows = await page.locator("[data-test=events] tr").count()
    assert rows - 1 == len((await get(f"tickets/{ticket_id}"))["events"]) > 0
    await page.wait_for_selector("#timeline svg")
    await show(page, page.url, "[data-test=events]", "ticket")

    # Groups and agents: the API's rows, sortable, and CSV that is the API's CSV.
    range_q = "&".join(f"{k}={v}" for k, v in dates.items())
    await show(page, f"{base}/dashboard#/groups?{range_q}", "[data-test=groups]", "groups")
    groups = (await get("reports/groups", **dates))["rows"]
    for g in groups:
        row = await values(page, f"tr[data-row='{g['group_id']}'] a.num")
        assert row["stints"] == g["stints"] and row["abandoned"] == g["abandoned"], g
    async with page.expect_download() as download:
        await page.click("[data-test=csv]")
    csv = await (await download.value).path()
    api_csv = await http.get(f"{api_base}/reports/groups", headers=headers,
                             params={**dates, "sort": "group_id", "format": "csv"})  # fmt: skip
    assert await asyncio.to_thread(csv.read_text) == api_csv.text
    assert api_csv.text.count("\n") == 1 + len(groups)
    await page.click("th[data-sort=stints]")
    await page.wait_for_url("**sort=stints**")
    await page.wait_for_selector("main:not([data-loading])")
    stints = await page.eval_on_selector_all(
        "[data-test=groups] a.num[data-test=stints]", "els => els.map(e => Number(e.dataset.value))"
    )
    assert stints == sorted(g["stints"] for g in groups)
    await show(page, f"{base}/dashboard#/agents?{range_q}", "[data-test=agents]", "agents")
    agents = (await get("reports/agents", **dates))["rows"]
    first = agents[0]
    row = await values(page, f"tr[data-row='{first['agent_id']}'] a.num")
    assert row["tickets_closed"] == first["tickets_closed"]
    await page.click(f"tr[data-row='{first['agent_id']}'] a.num[data-test=stints]")
    await page.wait_for_selector("[data-test=drill]")
    await page.wait_for_selector("main:not([data-loading])")
    total = int((await page.text_content("[data-test=total]") or "").replace(",", ""))
    assert total == first["stints"]

    # Another tenant's read key sees nothing of this tenant's.
    other = await new_key("e2e-dashboard-other", "read")
    await page.click("#signout")
    await sign_in(page, base, other)
    await show(page, f"{base}/dashboard#/trends?{query}", "[data-test=points]")
    seen = await values(page, ".cards a.num")
    assert seen["tickets_created"] == seen["customer_messages"] == 0
    assert {v for v in seen.values() if v == v} == {0}  # rates are null (NaN here)
    await show(page, f"{base}/dashboard#/ticket?id={ticket_id}", "[data-test=error]")
    assert "404" in (await page.text_content("[data-test=error]") or "")
    await page.evaluate(f"sessionStorage.setItem('tenant', '{TENANT}')")  # a forged tenant
    await show(page, f"{base}/dashboard#/trends?{query}&x=1", "[data-test=error]")
    assert "403" in (await page.text_content("[data-test=error]") or "")
    await context.close()
