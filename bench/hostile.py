"""`make bench-hostile`: what one hostile request costs, before and after the caps.

Prints, for 1 MiB bodies of tiny nested values, the CPU of the collector's
validation as it was (parse everything, validate everything) and as it is (the
value cap refuses at once, or validates what it allows), and how long the event
loop stalls meanwhile, inline and off the loop; then the CPU one timeseries
request spends before any SQL, with and without the bucket cap. Figures only,
no assertion (docs/operations.md quotes them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from itertools import pairwise
from typing import Any

import orjson

from services.collector.app import check_events, parse_batch
from services.collector.limits import MAX_NODES, json_nodes
from services.report.stats import MAX_BUCKETS, check_buckets, intervals, zone
from shared.auth import ApiKey
from shared.http import ApiError
from shared.timebuckets import Calendar, decompose, decompose_local, epoch_s, instant

KEY = ApiKey("t", frozenset({"ingest"}), "k")
MIB = 1024 * 1024


def _event(i: int, attributes: Any, now: datetime) -> dict[str, Any]:
    return {"event_id": f"e{i}", "tenant_id": "t", "ticket_id": f"T{i}", "type": "message_sent",
            "occurred_at": now.isoformat().replace("+00:00", "Z"), "sender": "customer",
            "attributes": attributes}  # fmt: skip


def _deep(n: int) -> Any:
    value: Any = 0
    for _ in range(n):
        value = [value]
    return value


def body_of(attributes: Any, now: datetime, limit: int = MIB) -> bytes:
    """As many events (at most 500) with these attributes as fit in `limit` bytes."""
    one = len(orjson.dumps(_event(0, attributes, now))) + 1
    n = max(1, min(500, limit // one))
    return orjson.dumps([_event(i, attributes, now) for i in range(n)])


def old_way(body: bytes, now: datetime) -> object:
    """The collector before the value cap: parse all, validate all."""
    return check_events(orjson.loads(body), KEY, now)


def new_way(body: bytes, now: datetime) -> object:
    return check_events(parse_batch(body), KEY, now)


def cpu(fn: Callable[[], object]) -> tuple[float, str]:
    started = time.process_time()
    try:
        fn()
        outcome = "accepted"
    except ApiError as exc:
        outcome = f"{exc.status} {exc.code}"
    return time.process_time() - started, outcome


async def stall_ms(work: Callable[[], object], off_loop: bool) -> float:
    """The longest gap of a 1 ms ticker on the loop while `work` runs."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    try:
        if off_loop:
            await asyncio.to_thread(work)
        else:
            work()
    except ApiError:
        pass
    done.set()
    await tick
    return worst * 1000


def collector() -> None:
    now = datetime.now(UTC)
    shapes = {
        "flat list of zeros": {"a": [0] * 1000},
        "triple-nested lists": {"a": [[[0]]] * 570},
        "lists 200 deep": {"a": [_deep(200)] * 4},
        "many keys": {f"k{i}": 0 for i in range(330)},
        "empty objects": {"a": [{}] * 1300},
    }
    print(f"collector: 1 MiB bodies of tiny values; cap {MAX_NODES:,} JSON values per body")
    print(f"{'body':<24}{'values':>10}{'before: CPU s':>15}{'after: CPU s':>14}  after")
    for name, attributes in shapes.items():
        body = body_of(attributes, now)
        before, _ = cpu(partial(old_way, body, now))
        after, outcome = cpu(partial(new_way, body, now))
        print(f"{name:<24}{json_nodes(body):>10,}{before:>15.3f}{after:>14.3f}  {outcome}")
    # The worst body the cap lets through: deep lists, just under the cap.
    worst = body_of({"a": [_deep(200)] * 4}, now, limit=MIB)
    events = orjson.loads(worst)
    while json_nodes(orjson.dumps(events)) > MAX_NODES:
        events.pop()
    allowed = orjson.dumps(events)
    spent, outcome = cpu(partial(new_way, allowed, now))
    print(f"{'worst under the cap':<24}{json_nodes(allowed):>10,}{'':>15}{spent:>14.3f}  {outcome}")

    old = body_of({"a": [_deep(200)] * 4}, now)
    inline_old = asyncio.run(stall_ms(partial(old_way, old, now), off_loop=False))
    inline = asyncio.run(stall_ms(partial(new_way, allowed, now), off_loop=False))
    threaded = asyncio.run(stall_ms(partial(new_way, allowed, now), off_loop=True))
    print(
        f"event loop stall: before {inline_old:.0f} ms (1 MiB, inline); after: "
        f"{inline:.0f} ms inline, {threaded:.0f} ms off the loop (as the collector does)"
    )


def _every_piece(lo: datetime, hi: datetime, cal: Calendar | None) -> list[tuple[int, int]]:
    """As the query decomposed each point before the cap (report zones: local days)."""
    if cal is not None:
        first, last = lo.astimezone(cal.zone).date(), hi.astimezone(cal.zone).date()
        return decompose_local(cal, first, last)
    return decompose(epoch_s(lo), epoch_s(hi))


def pieces_cpu(start: date, end: date, tz: str, granularity: str, cal: Calendar | None) -> str:
    """CPU before SQL: the intervals, the buckets of every point and their instants."""
    started = time.process_time()
    try:
        _, bounds = intervals(start, end, zone(tz), granularity)
    except ApiError as exc:
        return f"{exc.code} after {time.process_time() - started:.3f} s"
    try:
        check_buckets(bounds, cal, granularity)
        capped = "accepted"
    except ApiError:
        capped = "refused"
    after = time.process_time() - started
    pieces = [p for lo, hi in pairwise(bounds) for p in _every_piece(lo, hi, cal)]
    _ = [instant(b) for _, b in pieces]
    before = time.process_time() - started - after
    return f"{len(pieces):>9,} buckets; before {before:.3f} s, after {after:.3f} s ({capped})"


def reports() -> None:
    print(f"\nreport service: one timeseries request, CPU before SQL; cap {MAX_BUCKETS:,} buckets")
    cases = [
        ("daily, 54 years, Asia/Kolkata", date(2000, 1, 1), date(2054, 1, 1), "Asia/Kolkata",
         "day", None),
        ("weekly, 300 years, Asia/Kolkata", date(2000, 1, 1), date(2300, 1, 1), "Asia/Kolkata",
         "week", None),
        ("daily, 5 years, Asia/Kolkata", date(2021, 1, 1), date(2025, 12, 31), "Asia/Kolkata",
         "day", None),
        ("daily, 54 years, a report zone", date(2000, 1, 1), date(2054, 1, 1), "America/Sao_Paulo",
         "day", Calendar("America/Sao_Paulo")),
        ("hourly, 2 years, UTC", date(2024, 1, 1), date(2025, 12, 31), "UTC", "hour", None),
    ]  # fmt: skip
    for name, start, end, tz, granularity, cal in cases:
        print(f"  {name:<34}{pieces_cpu(start, end, tz, granularity, cal)}")


def main() -> None:
    collector()
    reports()


if __name__ == "__main__":
    main()
