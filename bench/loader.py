"""The report loader's cost per 1,000 events, for a tenant without history and
for one with a long history (issue 11 §3).

Live traffic: tickets of `telemetry simulate` whose lives end in the last hour,
their events in time order, cut into batches as the enricher would send them
(each batch: the touched tickets' records, versions growing). The same batches
go to a fresh tenant, to a tenant that already has `--days` of history
(bench/history.py, laid out as the loader and its folder leave it), and to a
second fresh tenant on the database that now holds that history (a control:
same database size, caches and autovacuum state, no history of its own). Printed per
1,000 events: the loader's CPU (this process, around `load_records` only), the
PostgreSQL backends' CPU, rows written and WAL bytes; then the folder's cost for
the buckets the traffic closed; and the part of a batch that is serialised for
one tenant (from locking its hot rows to commit), from which the rate one
tenant can reach with N loaders follows.

    .venv/bin/python -m bench.loader [--days 30] [--tickets-per-day 10000]
        [--live-tickets 3000] [--batch-events 1500] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.history import DIMS, fold_states, generate, laid_out, measures, rows
from bench.report_latency import ROLLUP_COLUMNS, _batches, _dsn
from services.enricher.handler import ticket_record
from services.enricher.metrics import dedupe, evaluate
from services.loader.folds import fold_closed
from services.loader.reports import load_records
from shared.db import make_engine
from shared.events import event_ms
from shared.settings import Settings
from shared.timebuckets import calendars
from telemetry.provision import migrate
from telemetry.simulate import ticket_life
from telemetry.up import start_postgres

CALS = calendars(("UTC", "America/Sao_Paulo"))  # the default report zones
GRACE = Settings.model_fields["fold_grace_s"].default
Batch = list[dict[str, Any]]


def live_batches(tickets: int, per_batch: int, now: datetime, seed: int = 11) -> list[Batch]:
    """Enriched batches of tickets whose lives end in the hour before `now`."""
    rng = random.Random(seed)
    events = []
    for n in range(tickets):
        events += ticket_life(rng, "live", n, now - timedelta(seconds=rng.uniform(0, 3600)))
    events.sort(key=event_ms)
    seen: dict[str, list[bytes]] = {}
    batches = []
    for start in range(0, len(events), per_batch):
        touched = set()
        for e in events[start : start + per_batch]:
            seen.setdefault(e["ticket_id"], []).append(orjson.dumps(e))
            touched.add(e["ticket_id"])
        batch = []
        for ticket in sorted(touched):
            deduped, version = dedupe(seen[ticket])
            batch.append(ticket_record("live", ticket, version, evaluate(deduped)))
        batches.append(batch)
    return batches


def as_tenant(batch: Batch, name: str) -> Batch:
    tenant = name.split(",")[0] + ("-2" if "," in name else "")
    return [{**r, "tenant_id": tenant} for r in batch]


async def write_history(
    conn: asyncpg.Connection, tenant: str, days: int, per_day: int, every_level: bool = False
) -> int:
    """`days` of history ending now, as the loader and its folder leave it (or,
    with `every_level`, as the loader that wrote every level left it)."""
    h = generate(per_day * days, days, datetime.now(UTC))
    m = measures(h)
    before = float("inf") if every_level else time.time() - GRACE
    states = [] if every_level else [(tenant, *s) for s in fold_states(m, CALS, before)]
    await conn.copy_records_to_table(
        "rollup_folds", records=states, columns=("tenant_id", "level", "bucket", "folded")
    )
    count = 0
    for dim in DIMS:
        for batch in _batches((tenant, *r) for r in laid_out(rows(h, m, dim, CALS), CALS, before)):
            await conn.copy_records_to_table("rollups", records=batch, columns=ROLLUP_COLUMNS)
            count += len(batch)
    await conn.execute("VACUUM (ANALYZE)")  # as autovacuum leaves a table that old
    return count


STATS_SQL = """
SELECT pg_current_wal_lsn() AS lsn,
       (SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database
        WHERE datname = current_database()) AS tuples
"""


def _pg_cpu(postmaster: int) -> float:
    """CPU s of the PostgreSQL server: the postmaster, its exited children (waited
    for: backends of closed connections) and its living ones (background writers,
    autovacuum, open connections)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / tick
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Meter:
    """Loader CPU, PostgreSQL's CPU, rows and WAL bytes between two marks. Mark
    with the loader's connections closed: a backend flushes its statistics when
    it exits, and its CPU is then counted in the postmaster's children."""

    def __init__(self, conn: asyncpg.Connection, postmaster: int) -> None:
        self.conn = conn
        self.postmaster = postmaster

    async def mark(self) -> dict[str, Any]:
        await asyncio.sleep(0.5)
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await self.conn.fetchrow(STATS_SQL)
        return {"lsn": row["lsn"], "tuples": row["tuples"], "pg_cpu": _pg_cpu(self.postmaster),
                "cpu": time.process_time()}  # fmt: skip

    async def since(self, before: dict[str, Any], events: int) -> dict[str, float]:
        after = await self.mark()
        wal = await self.conn.fetchval(
            "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)", after["lsn"], before["lsn"]
        )
        k = 1000 / events
        return {
            "loader CPU s": (after["cpu"] - before["cpu"]) * k,
            "PostgreSQL CPU s": (after["pg_cpu"] - before["pg_cpu"]) * k,
            "rows written": (after["tuples"] - before["tuples"]) * k,
            "WAL MB": float(wal) * k / 2**20,
        }


Load = Callable[..., Awaitable[int]]


def old_loader(path: str) -> Load:
    """`load_records` of an earlier services/loader/reports.py (e.g. `git show
    REV:services/loader/reports.py > FILE`), run against this tree's modules:
    the before/after comparison on the same machine, in the same run. It writes
    every level; its `held` is not measured."""
    spec = importlib.util.spec_from_file_location("old_reports", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    old: Load = module.load_records

    async def load(engine: Any, records: Batch, cals: Any, held: Any = None) -> int:
        return await old(engine, records, cals)

    return load


async def run(
    tenant: str, batches: list[Batch], url: str, meter: Meter, load_records: Load = load_records
) -> None:
    engine = make_engine(url)
    total_events = new_events(batches)
    held: list[float] = []
    walls: list[float] = []
    try:
        while await fold_closed(engine, CALS, GRACE):  # what history left to fold
            pass
        await load_records(engine, as_tenant(batches[0], tenant), CALS)  # warm-up
        await engine.dispose()
        await meter.conn.execute("CHECKPOINT")  # each run starts the same: full pages
        before = await meter.mark()
        for batch in batches[1:]:
            t0 = time.perf_counter()
            await load_records(engine, as_tenant(batch, tenant), CALS, held)
            walls.append(time.perf_counter() - t0)
        await engine.dispose()
        live = await meter.since(before, total_events)
        before = await meter.mark()
        while await fold_closed(engine, CALS, grace_s=0):  # the hours the traffic closed
            pass
        await engine.dispose()
        folded = await meter.since(before, total_events)
    finally:
        await engine.dispose()
    per_batch = total_events / len(walls)
    held = held or [float("nan")]  # not measured (an old loader)
    ceiling = per_batch / statistics.mean(held)
    carried = sum(len(r["events"]) for b in batches[1:] for r in b) / len(walls)
    print(
        f"\n## {tenant}: {len(walls)} batches, {per_batch:.0f} new events each"
        f" ({carried:.0f} events in their records: a record holds its ticket's events)"
    )
    print("| per 1,000 events | loader | folder (amortised) |\n|---|---|---|")
    for name in live:
        print(f"| {name} | {live[name]:.3f} | {folded[name]:.3f} |")
    print(f"batch wall time: mean {statistics.mean(walls) * 1000:.0f} ms;"
          f" serialised part (hot rows locked until commit): mean"
          f" {statistics.mean(held) * 1000:.1f} ms, p95"
          f" {sorted(held)[int(0.95 * len(held))] * 1000:.1f} ms")  # fmt: skip
    for n in (1, 2, 4, 8, 16):
        rate = min(n * per_batch / statistics.mean(walls), ceiling)
        print(f"  one tenant with {n:>2} loaders: at most {rate:,.0f} events/s")
    print(f"  (ceiling for one tenant: {ceiling:,.0f} events/s, the serialised part alone)")


def new_events(batches: list[Batch]) -> int:
    """The distinct events the batches bring, after the first (the warm-up)."""
    first = {(r["ticket_id"], e["event_id"]) for r in batches[0] for e in r["events"]}
    every = {(r["ticket_id"], e["event_id"]) for b in batches for r in b for e in r["events"]}
    return len(every - first)


async def main_async(args: argparse.Namespace, url: str) -> None:
    await migrate(url)
    conn = await asyncpg.connect(_dsn(url))
    try:
        data = await conn.fetchval("SHOW data_directory")
        meter = Meter(conn, int((Path(data) / "postmaster.pid").read_text().split()[0]))
        now = datetime.now(UTC)
        batches = live_batches(args.live_tickets, args.batch_events, now)
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        load = old_loader(args.old_loader) if args.old_loader else load_records
        await run("fresh", batches, url, meter, load)
        t0 = time.perf_counter()
        count = await write_history(
            conn, "history", args.days, args.tickets_per_day, every_level=bool(args.old_loader)
        )
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        print(f"\nhistory: {args.days} days x {args.tickets_per_day:,} tickets/day, {count:,}"
              f" rollup rows in {time.perf_counter() - t0:.0f} s; database {size / 2**30:.2f}"
              f" GiB")  # fmt: skip
        await run("history", batches, url, meter, load)
        await run("fresh, on the database with history", batches, url, meter, load)
        print(f"\nload average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tickets-per-day", type=int, default=10_000)
    parser.add_argument("--live-tickets", type=int, default=3000)
    parser.add_argument("--batch-events", type=int, default=1500)
    parser.add_argument("--old-loader", help="an earlier reports.py to measure instead")
    parser.add_argument("--database-url", default=os.environ.get("TELEMETRY_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    url = args.database_url
    server = None
    data = Path(f"/tmp/bench-loader-pg-{os.getpid()}")
    if url is None:  # a throwaway server, removed at exit
        server, url = start_postgres(data)
    try:
        asyncio.run(main_async(args, url))
    finally:
        if server is not None:
            server.cleanup()
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
