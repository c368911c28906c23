"""A tenant's history written straight into the local stack's stores, for `make bench-history`.

The stages would take hours to write a year; the generators write it in
minutes, in the stages' own layouts:

- the ticket store's hot partitions and cold runs (`bench/store_history.py`,
  checked against the store itself by `tests/integration/test_bench_store.py`);
- the rollup rows of every dimension and report zone (`bench/history.py`,
  checked against the loader's own contributions by
  `tests/unit/test_bench_history.py`);
- the ticket rows and ledger of the store's own tickets for the last
  `exact_days` days (`bench/history_tickets.py`, checked against
  `load_records` by `tests/integration/test_bench_history_tickets.py`): the
  tickets a late event may still reach are the same in the store and in
  PostgreSQL. Older ticket rows are `bench/history.py`'s (same volume, other
  ids, no ledger: a closed ticket's ledger is read again only when a late
  event reaches it; a year of it would double the database).

Real-time rows are not written: they only hold today.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np

from bench.history import DIMS, TICKET_COLUMNS, generate, measures, rows, ticket_rows
from bench.history_tickets import write_tickets
from bench.report_latency import _batches, _dsn, load
from bench.store_history import DAY_MS, Model, write_history
from services.consolidator.store import make_store
from shared.aws import open_aws
from shared.settings import Settings
from shared.timebuckets import span_s

TICKETS_PER_DAY = 10_000  # the tenant: 8 groups, 144 agents
EVENTS_PER_TICKET = 12.4  # of the store's model (45 M events a year)
# Bytes on disk per unit, measured on this project's short runs (bench/results/history.md);
# the estimate is printed before anything is written, so a run never fills the disk.
STORE_BYTES_PER_TICKET = 340  # zlib runs and hot majors: in moto's memory and spooled files
TICKET_ROW_BYTES = 450  # `tickets`: row, TOAST and indexes
EXACT_TICKET_BYTES = 8_000  # a ticket row, its events (ticket_events) and its ledger rows
ROLLUP_ROW_BYTES = 1_150  # `rollups`: row, TOASTed histograms and index
SEED = 11


def per_day(scale: float) -> int:
    return max(1, round(TICKETS_PER_DAY * scale))


def live_day_ms(now_ms: int) -> int:
    """The history ends at the UTC midnight before the live traffic."""
    return now_ms // DAY_MS * DAY_MS


@dataclass
class Written:
    days: int
    tickets: int
    store_bytes: int
    store_s: float
    pg_s: float
    pg_bytes: int  # the database's size after the history
    rollup_rows: int
    table_bytes: dict[str, int]  # tickets, rollups: with TOAST and indexes


def model(tenant: str, days: int, daily: int, now_ms: int) -> Model:
    """The store's tickets: `days` days of `daily` ending at today's UTC midnight."""
    return Model(tenant, SEED, daily, live_day_ms(now_ms) - days * DAY_MS)


async def write_pg(
    database_url: str, settings: Settings, tenant: str, days: int, daily: int, now_ms: int,
    exact_days: int,
) -> tuple[int, int, dict[str, int]]:  # fmt: skip
    """Every rollup dimension of the whole history; ticket rows and ledger of the
    store's own tickets for its last `exact_days` days (`bench/history_tickets.py`),
    and `bench/history.py`'s ticket rows before them. Returns the database's bytes,
    the rollup rows and the tables' bytes."""
    end = datetime.fromtimestamp(live_day_ms(now_ms) / 1000, UTC)
    h = generate(daily * days, days, end, seed=SEED)
    exact = min(days, exact_days)
    older = int(np.searchsorted(h.created, (live_day_ms(now_ms) - exact * DAY_MS)))
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await load(conn, h, settings.report_calendars(), list(DIMS), tickets=False, tenant=tenant)
        for batch in _batches(itertools.islice(ticket_rows(h, tenant), older)):
            await conn.copy_records_to_table("tickets", records=batch, columns=TICKET_COLUMNS)
        await write_tickets(conn, model(tenant, days, daily, now_ms), range(days - exact, days))
        await conn.execute("VACUUM (ANALYZE)")  # as a year-old database has been
        count = await conn.fetchval("SELECT count(*) FROM rollups WHERE tenant_id = $1", tenant)
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = {t: int(await conn.fetchval("SELECT pg_total_relation_size($1)", t))
                  for t in ("tickets", "ticket_measures", "rollups")}  # fmt: skip
    finally:
        await conn.close()
    return int(size), int(count), tables


async def write(
    settings: Settings, database_url: str, tenant: str, days: int, daily: int, now_ms: int,
    exact_days: int = 30,
) -> Written:  # fmt: skip
    t0 = time.monotonic()
    store_bytes = 0
    if days:
        async with open_aws(settings) as aws:
            store = make_store(aws, settings)
            await write_history(store, model(tenant, days, daily, now_ms), days, now_ms)
            await store.compactor.close()
            store_bytes = int(store.io.traffic["written"])
    t1 = time.monotonic()
    pg_bytes, count, tables = (
        await write_pg(database_url, settings, tenant, days, daily, now_ms, exact_days)
        if days
        else (0, 0, {})
    )
    return Written(days, daily * days, store_bytes, round(t1 - t0, 1),
                   round(time.monotonic() - t1, 1), pg_bytes, count, tables)  # fmt: skip


def rollup_rows_by_level(daily: int, settings: Settings, sample_days: int = 2) -> dict[int, float]:
    """Rollup rows per bucket of each level, from every dimension of a short sample.

    A level's rows over H days are these times its buckets in H days: exact for
    the fine levels, a little low for the coarse ones (a longer span sees a few
    more dimension values).
    """
    end = datetime(2026, 11, 1, tzinfo=UTC)
    h = generate(daily * sample_days, sample_days, end, seed=SEED)
    m = measures(h)
    counts: Counter[int] = Counter()
    for d in DIMS:
        counts.update(row[1] for row in rows(h, m, d, settings.report_calendars()))
    return {lv: n / max(1.0, sample_days * 86_400 / span_s(lv)) for lv, n in counts.items()}


def rollup_rows(days: int, by_level: dict[int, float]) -> int:
    return round(sum(n * math.ceil(days * 86_400 / span_s(lv)) for lv, n in by_level.items()))


@dataclass
class Estimate:
    days: int
    tickets: int
    events: int
    store_bytes: int
    pg_bytes: int
    rollup_rows: int

    @property
    def total(self) -> int:
        return self.store_bytes + self.pg_bytes


def estimate(days: int, daily: int, by_level: dict[int, float], exact_days: int) -> Estimate:
    tickets = days * daily
    n = rollup_rows(days, by_level)
    exact = min(days, exact_days) * daily
    pg = (tickets - exact) * TICKET_ROW_BYTES + exact * EXACT_TICKET_BYTES
    pg += n * ROLLUP_ROW_BYTES
    return Estimate(days, tickets, int(tickets * EVENTS_PER_TICKET),
                    tickets * STORE_BYTES_PER_TICKET, pg, n)  # fmt: skip


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


# Seconds to write one unit of history, from the short runs (2 cores, loaded): for the estimate.
WRITE_S = {"ticket": 0.0001, "rollup": 0.00013, "exact": 0.0005}
DRAIN_AND_READS_MIN = 4.0  # the queues' drain and the report timings after the traffic


def check_disk(args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> None:
    """Print each history's size and the run's expected time; exit if the disk is short."""
    daily = per_day(args.scale)
    by_level = rollup_rows_by_level(daily, Settings())
    estimates = [estimate(d, daily, by_level, args.exact_days) for d in args.history]
    worst = max(estimates, key=lambda e: e.total)
    minutes = 0.0
    for d, e, live_min in zip(args.history, estimates, args.minutes, strict=True):
        exact = min(d, args.exact_days) * daily
        writing = (e.tickets * WRITE_S["ticket"] + e.rollup_rows * WRITE_S["rollup"]
                   + exact * WRITE_S["exact"]) / 60  # fmt: skip
        minutes += writing + live_min + DRAIN_AND_READS_MIN
        say(
            f"H = {d} d: {e.tickets:,} tickets, ~{e.events:,} events, ~{e.rollup_rows:,} "
            f"rollups; disk: store ~{gib(e.store_bytes)}, PostgreSQL ~{gib(e.pg_bytes)}; "
            f"writing ~{writing:.0f} min"
        )
    say(f"expected run time: ~{minutes:.0f} min (more if the stages fall behind)")
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    say(f"one history at a time (each removed after its run): at most ~{gib(worst.total)}; "
        f"free {gib(free)}")  # fmt: skip
    if worst.total > free - 2 * 2**30:
        sys.exit(f"bench-history: not enough disk for H = {worst.days} d; lower --scale")
