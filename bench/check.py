"""The exact answer for the events sent, and how far the pipeline's tickets are from it.

The truth is the metric engine (`services.enricher.metrics`) on each ticket's
distinct events, as `tests/integration/test_reports.py` computes it; a ticket
is right when `/tickets/{id}` has exactly its metrics and stints.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.model import Correctness
from services.enricher.metrics import TicketResult, dedupe, evaluate
from shared.events import canonical, validate

Truth = dict[tuple[str, str], TicketResult]  # (tenant, ticket) -> exact result


def exact(events: list[dict[str, Any]]) -> Truth:
    """Each ticket's result from its distinct events, normalised as the collector stores them."""
    now = datetime.now(UTC)
    lines: dict[tuple[str, str], set[bytes]] = {}
    for e in events:
        lines.setdefault((e["tenant_id"], e["ticket_id"]), set()).add(canonical(validate(e, now)))
    return {key: evaluate(dedupe(variants)[0]) for key, variants in lines.items()}


def report_counts(truth: Truth) -> dict[str, tuple[int, int]]:
    """Per tenant, what the summary over the whole run must count: tickets created, messages."""
    created: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for (tenant, _), r in truth.items():
        if r.created_at is not None:
            created[tenant] += 1
            messages[tenant] += r.customer_messages
    return {t: (created[t], messages[t]) for t in {t for t, _ in truth}}


def is_right(doc: dict[str, Any], r: TicketResult) -> bool:
    return bool(
        doc["metrics"] == r.metrics()
        and doc["group_stints"] == [s.to_json() for s in r.group_stints]
        and doc["agent_stints"] == [s.to_json() for s in r.agent_stints]
    )


async def wrong_tickets(
    http: httpx.AsyncClient, report_url: str, keys: dict[str, str], truth: Truth
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(wrong, missing) tickets: every ticket's document against its exact result."""
    limit = asyncio.Semaphore(8)
    wrong: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []

    async def one(key: tuple[str, str], r: TicketResult) -> None:
        tenant, ticket = key
        async with limit:
            resp = await http.get(
                f"{report_url}/v1/tenants/{tenant}/tickets/{ticket}",
                headers={"Authorization": f"Bearer {keys[tenant]}"},
            )
        if resp.status_code == 404:
            missing.append(key)
        elif resp.status_code != 200 or not is_right(resp.json(), r):
            wrong.append(key)

    await asyncio.gather(*(one(k, r) for k, r in truth.items()))
    return wrong, missing


async def correctness(
    http: httpx.AsyncClient, report_url: str, keys: dict[str, str], truth: Truth,
    retries: int = 3, pause_s: float = 10.0,
) -> Correctness:  # fmt: skip
    """Checks every ticket, then again those not right yet (a last batch may still load)."""
    todo = truth
    wrong: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    for attempt in range(retries):
        wrong, missing = await wrong_tickets(http, report_url, keys, todo)
        if not wrong and not missing:
            break
        todo = {k: truth[k] for k in [*wrong, *missing]}
        if attempt < retries - 1:
            await asyncio.sleep(pause_s)
    examples = [f"{t}/{k}" for t, k in sorted(wrong + missing)[:5]]
    return Correctness(len(truth), len(wrong), len(missing), examples)
