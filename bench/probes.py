"""Freshness: how long after the collector's 202 an event shows on each read path.

A probe is a ticket of one `ticket_created` event in a group of its own (the
group is named after the ticket), sent among the load of a tenant. Then each
path shows that one event alone, whatever else the tenant has:
`/tickets/{id}` answers 200, `/realtime` lists the group in `waiting_now`, and
the summary filtered on the group counts one ticket created. Paths are polled
about once a second, so a latency is late by at most that (never early).

`/realtime` reads every open ticket of the tenant at each call, which moto
serves in Python at about 0.3 ms an item: with one tenant's thousands of open
tickets, polling it every second took most of the emulator. A run can pass
`realtime_seen`, which reads the probes' own items in the real-time table (what
`/realtime` counts at the next call: nothing caches between them) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from bench.model import PATHS
from shared.events import format_ms, to_ms
from shared.realtime import OPEN_KEY

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from types_aiobotocore_dynamodb import DynamoDBClient


class AcceptLog(io.BytesIO):
    """The `out` of `send_traffic`: it writes each body right after its 202, so note when."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[tuple[float, list[dict[str, Any]]]] = []

    def write(self, buffer: ReadableBuffer, /) -> int:
        data = bytes(buffer)
        self.add(time.monotonic(), [orjson.loads(line) for line in data.splitlines() if line])
        return len(data)

    def add(self, at: float, events: list[dict[str, Any]]) -> None:
        self.bodies.append((at, events))

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.bodies for e in body]

    def last(self) -> float:
        return max((at for at, _ in self.bodies), default=time.monotonic())


def report_dates() -> dict[str, str]:
    """A range that holds every event of the run, whatever the hour: yesterday to tomorrow."""
    today = datetime.now(UTC).date()
    return {
        "from": (today - timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }


@dataclass
class Probe:
    ticket: str
    accepted: float  # time.monotonic() of the 202
    seen: dict[str, float] = field(default_factory=dict)  # path -> seconds after the 202


Check = Callable[[Probe], Awaitable[bool]]
SeenIn = Callable[[list[str]], Awaitable[set[str]]]  # ticket ids -> those the path shows


class Prober:
    """Sends probes into one tenant and polls the read paths until each is seen or given up."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        urls: dict[str, str],
        tenant: str,
        key: str,
        log: AcceptLog,
        timeout_s: float,
        realtime_seen: SeenIn | None = None,
    ) -> None:
        self.http = http
        self.realtime_seen = realtime_seen
        self.urls = urls
        self.tenant = tenant
        self.headers = {"Authorization": f"Bearer {key}"}
        self.log = log
        self.timeout_s = timeout_s
        self.probes: list[Probe] = []
        self.errors = 0
        self._limit = asyncio.Semaphore(4)

    async def send(self, every_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticket = f"probe-{self.tenant}-{len(self.probes) + 1}"
            event = {
                "event_id": f"{ticket}-1",
                "tenant_id": self.tenant,
                "ticket_id": ticket,
                "type": "ticket_created",
                "occurred_at": format_ms(to_ms(datetime.now(UTC))),
                "channel": "webchat",
                "group_id": ticket,
            }
            resp = await self.http.post(
                self.urls["collector"] + "/v1/events",
                content=orjson.dumps([event]),
                headers=self.headers,
            )
            if resp.status_code == 202:
                now = time.monotonic()
                self.probes.append(Probe(ticket, now))
                self.log.add(now, [event])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    def pending(self, path: str, now: float) -> list[Probe]:
        return [p for p in self.probes if path not in p.seen and now - p.accepted < self.timeout_s]

    async def poll(self, done: asyncio.Event, interval_s: float = 1.0) -> None:
        """Until `done` is set and no probe is left pending."""
        while True:
            now = time.monotonic()
            if done.is_set() and not any(self.pending(path, now) for path in PATHS):
                return
            await asyncio.gather(
                self._realtime(now),
                self._each("tickets", now, self._ticket),
                self._each("reports", now, self._reports),
            )
            await asyncio.sleep(interval_s)

    def freshness(self) -> dict[str, list[float | None]]:
        return {path: [p.seen.get(path) for p in self.probes] for path in PATHS}

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.urls['report']}/v1/tenants/{self.tenant}{path}"
        try:
            async with self._limit:
                resp = await self.http.get(url, params=params, headers=self.headers)
        except httpx.HTTPError:
            self.errors += 1
            return None
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            self.errors += 1
            return None
        return resp.json()

    async def _realtime(self, now: float) -> None:
        pending = self.pending("realtime", now)
        if not pending:
            return
        if self.realtime_seen is not None:
            try:
                seen = await self.realtime_seen([p.ticket for p in pending])
            except Exception:  # a probe read that failed is counted, not fatal
                self.errors += 1
                return
        else:
            body = await self._get("/realtime")
            if body is None:
                return
            seen = set(body["waiting_now"]["by_group"])
        at = time.monotonic()
        for probe in pending:
            if probe.ticket in seen:
                probe.seen["realtime"] = at - probe.accepted

    async def _each(self, path: str, now: float, check: Check) -> None:
        async def one(probe: Probe) -> None:
            if await check(probe):
                probe.seen[path] = time.monotonic() - probe.accepted

        await asyncio.gather(*(one(p) for p in self.pending(path, now)))

    async def _ticket(self, probe: Probe) -> bool:
        return await self._get(f"/tickets/{probe.ticket}") is not None

    async def _reports(self, probe: Probe) -> bool:
        params = {**report_dates(), "group_id": probe.ticket}
        body = await self._get("/reports/summary", params)
        return body is not None and body["tickets_created"] >= 1


async def wait_reports(
    http: httpx.AsyncClient,
    report_url: str,
    keys: dict[str, str],
    expected: dict[str, tuple[int, int]],
    timeout_s: float,
) -> dict[str, tuple[int, int]]:
    """Poll each tenant's summary until (tickets_created, customer_messages) are exact.

    Returns the last counts seen of the tenants that never got there (empty: all did).
    """
    left = dict(expected)
    last: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        for tenant in list(left):
            with contextlib.suppress(httpx.HTTPError):
                resp = await http.get(
                    f"{report_url}/v1/tenants/{tenant}/reports/summary",
                    params=report_dates(),
                    headers={"Authorization": f"Bearer {keys[tenant]}"},
                )
                if resp.status_code == 200:
                    body = resp.json()
                    last[tenant] = (body["tickets_created"], body["customer_messages"])
                    if last[tenant] == left[tenant]:
                        del left[tenant]
        if left:
            await asyncio.sleep(1.0)
    return {t: last.get(t, (0, 0)) for t in left}


def open_in_table(dynamodb: DynamoDBClient, table: str, tenant: str) -> SeenIn:
    """The probes whose real-time item is open in their own group: what `/realtime`
    counts in `waiting_now` (one BatchGetItem of at most 100 probes per poll)."""

    async def seen(tickets: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(tickets), 100):
            keys = [
                {"tenant_id": {"S": tenant}, "ticket_id": {"S": t}} for t in tickets[i : i + 100]
            ]
            resp = await dynamodb.batch_get_item(RequestItems={table: {"Keys": keys}})
            for item in resp["Responses"].get(table, []):  # unprocessed keys: the next poll
                ticket = item["ticket_id"]["S"]
                if OPEN_KEY in item and item.get("group_id", {}).get("S") == ticket:
                    out.add(ticket)
        return out

    return seen
