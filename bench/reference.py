"""The reports the contract asks for, computed from the per-ticket results alone.

This is the report arithmetic of SPEC §2 ("Time attribution") and §3 written
out plainly over `TicketResult`s, without rollups, histograms or SQL, so the
fault suite (bench/faults.py) can hold the served reports against it. Counts
and averages must be equal; a percentile is the nearest-rank value or within
2% of it (the contract's precision).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from services.enricher.metrics import TicketResult
from services.report.stats import PERCENTILES, ratio, stats
from shared.events import format_ms

COUNTS = ("tickets_created", "tickets_closed", "tickets_abandoned", "transfers",
          "customer_messages", "agent_messages", "bot_messages")  # fmt: skip
STATS = ("wait_time", "first_response_time", "handle_time", "resolution_time", "avg_reply_time")
HOUR_MS = 3_600_000


class Window:
    """[lo, hi) in epoch ms: what a report over one interval counts."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def __contains__(self, t: int | None) -> bool:
        return t is not None and self.lo <= t < self.hi


def summary(results: Iterable[TicketResult], w: Window, sla_seconds: int = 60) -> dict[str, Any]:
    """One summary: each measurement counted in the interval where it completes."""
    counts: Counter[str] = Counter()
    values: dict[str, list[int]] = defaultdict(list)
    within = 0
    for r in results:
        m = r.metrics()
        for t, sender, _ in r.messages:
            counts[f"{sender}_messages"] += t in w
        values["avg_reply_time"] += [v for t, v in r.replies if t in w]
        if r.created_at is None:
            continue
        counts["tickets_created"] += r.created_at in w
        if r.first_assigned_at in w:
            values["wait_time"].append(m["wait_time_ms"])
        if r.first_response_at in w:
            values["first_response_time"].append(m["first_response_time_ms"])
            within += m["first_response_time_ms"] <= sla_seconds * 1000
        if r.status == "closed" and r.closed_at in w:
            counts["tickets_closed"] += 1
            counts["transfers"] += r.transfers
            if r.abandoned:
                counts["tickets_abandoned"] += 1
            else:
                values["resolution_time"].append(m["resolution_time_ms"])
            if r.agents:
                values["handle_time"].append(m["handle_time_ms"])
    firsts = len(values["first_response_time"])
    return {
        **{k: counts[k] for k in COUNTS},
        "abandon_rate": ratio(counts["tickets_abandoned"], counts["tickets_closed"]),
        "sla_seconds": sla_seconds,
        "service_level": ratio(within, firsts),
        **{k: stats(values[k]) for k in STATS},
    }


def hourly(results: list[TicketResult], lo: int, hi: int) -> list[dict[str, Any]]:
    """`timeseries?granularity=hour` in UTC over [lo, hi), both whole hours."""
    return [
        {"start": format_ms(t), **summary(results, Window(t, t + HOUR_MS))}
        for t in range(lo, hi, HOUR_MS)
    ]


def groups(results: Iterable[TicketResult], w: Window) -> list[dict[str, Any]]:
    """Group stints, each at its end."""
    rows: dict[str, dict[str, Any]] = {}
    waits: dict[str, list[int]] = defaultdict(list)
    for r in results:
        for s in r.group_stints:
            if s.ended_at not in w:
                continue
            row = rows.setdefault(s.group_id, Counter())
            row["stints"] += 1
            row["answered"] += s.answered
            row["abandoned"] += s.abandoned
            row["transferred_out"] += s.transferred_out
            waits[s.group_id].append(s.queue_time_ms)
    return [
        {
            "group_id": g,
            "stints": row["stints"],
            "answered": row["answered"],
            "abandoned": row["abandoned"],
            "transferred_out": row["transferred_out"],
            "queue_time": stats(waits[g]),
        }
        for g, row in sorted(rows.items())
    ]


def agents(results: Iterable[TicketResult], w: Window) -> list[dict[str, Any]]:
    """Stints at their end, messages and first responses at their time, closes at the close."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    handles: dict[str, list[int]] = defaultdict(list)
    for r in results:
        for s in r.agent_stints:
            if s.ended_at in w:
                handles[s.agent_id].append(s.handle_time_ms)
        for t, sender, agent in r.messages:
            if sender == "agent" and agent is not None and t in w:
                counts[agent]["agent_messages"] += 1
        if r.created_at is None:
            continue
        if r.first_response_agent_id is not None and r.first_response_at in w:
            counts[r.first_response_agent_id]["first_responses"] += 1
        if r.closing_agent_id is not None and r.status == "closed" and r.closed_at in w:
            counts[r.closing_agent_id]["tickets_closed"] += 1
    rows = []
    for agent in sorted(set(counts) | set(handles)):
        c = counts[agent]
        rows.append({"agent_id": agent, "stints": len(handles[agent]),
                     "handle_time": stats(handles[agent]), "agent_messages": c["agent_messages"],
                     "first_responses": c["first_responses"],
                     "tickets_closed": c["tickets_closed"]})  # fmt: skip
    return rows


def open_now(results: Iterable[TicketResult]) -> dict[str, Any]:
    """What `/realtime` shows of the tickets open now, whatever their day."""
    waiting = [r for r in results if r.status == "waiting"]
    assigned = [r for r in results if r.status == "assigned"]
    since = [r.queue_since for r in waiting if r.queue_since is not None]
    by_group = Counter(str(r.group_id) for r in waiting)
    by_agent = Counter(str(r.agent_id) for r in assigned)
    return {
        "waiting_now": {"total": len(waiting), "by_group": dict(sorted(by_group.items()))},
        "assigned_now": {"total": len(assigned), "by_agent": dict(sorted(by_agent.items()))},
        "oldest_waiting_since": format_ms(min(since)) if since else None,
    }


def today(results: Iterable[TicketResult], now: datetime) -> dict[str, Any]:
    """`/realtime`'s counts of the current UTC day."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lo = int(day.timestamp() * 1000)
    s = summary(results, Window(lo, lo + 24 * HOUR_MS))
    return {k: s[k] for k in ("tickets_created", "tickets_closed", "tickets_abandoned",
                              "wait_time", "first_response_time")}  # fmt: skip


def differences(expected: Any, got: Any, where: str = "") -> list[str]:
    """Where `got` differs from `expected`; percentiles may be within 2% (SPEC §3)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in expected if k not in got]
        for k, v in expected.items():
            if k in got:
                out += differences(v, got[k], f"{where}.{k}")
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: {len(got)} items, expected {len(expected)}"]
        return [d for i, (e, g) in enumerate(zip(expected, got, strict=True))
                for d in differences(e, g, f"{where}[{i}]")]  # fmt: skip
    percentile = where.rsplit(".", 1)[-1] in {k for k, _ in PERCENTILES}
    if percentile and isinstance(expected, int) and isinstance(got, int | float):
        close = abs(got - expected) <= 0.02 * expected
        return [] if close else [f"{where}: {got}, expected {expected} (within 2%)"]
    if isinstance(expected, float) and isinstance(got, int | float):
        close = math.isclose(expected, got, rel_tol=1e-9)
        return [] if close else [f"{where}: {got}, expected {expected}"]
    return [] if expected == got else [f"{where}: {got!r}, expected {expected!r}"]
