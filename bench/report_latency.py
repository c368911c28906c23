"""Report latency over a long history: 10 M tickets of one tenant over two years.

Loads the synthetic history of `bench/history.py` into PostgreSQL with COPY,
into the loader's own tables (`tickets`, `rollups` and `rollup_folds`, laid out
as the loader and its folder leave them; once: a rerun of the same size reuses
it), starts the report service as `telemetry up` would, and
prints p50/p95 latency through its HTTP API; then times the same one-year
summary written directly over the per-ticket table, as without rollups.

    .venv/bin/python -m bench.report_latency [--tickets 10000000] [--requests 60]
        [--database-url URL]   # default: an embedded pgserver in .telemetry/
        [--refresh agent]      # regenerate one dimension's rows after a format change

It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.history import (
    DIMS,
    TICKET_COLUMNS,
    History,
    fold_states,
    generate,
    laid_out,
    measures,
    rows,
    ticket_rows,
)
from bench.stack import stop_on_sigterm
from shared.db import async_url
from shared.settings import Settings
from shared.timebuckets import Calendar
from telemetry.commands import provision_command
from telemetry.keys import create_key
from telemetry.provision import migrate
from telemetry.up import embedded_env, free_port, start_moto, start_postgres, wait_http

TENANT = "bench-history"
END = datetime(2026, 11, 1, tzinfo=UTC)
BATCH = 50_000
ROLLUP_COLUMNS = ("tenant_id", "dim", "level", "bucket", "dim_value", "cells", "hists", "pcts")


def _dsn(url: str) -> str:
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://")


def _batches(items: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def load(
    conn: asyncpg.Connection,
    h: History,
    cals: tuple[Calendar, ...],
    dims: list[str],
    tickets: bool = True,
    tenant: str = TENANT,
) -> None:
    """The tickets (unless `tickets` is false) and the rollup rows of `dims`, of `tenant`."""
    started = time.perf_counter()
    if tickets:
        await conn.execute("DELETE FROM tickets WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM rollups WHERE tenant_id = $1", tenant)
        for batch in _batches(ticket_rows(h, tenant)):
            await conn.copy_records_to_table("tickets", records=batch, columns=TICKET_COLUMNS)
        print(f"tickets: {h.n:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        await conn.execute(
            "DELETE FROM rollups WHERE tenant_id = $1 AND dim = ANY($2::text[])", tenant, dims
        )
    m = measures(h)
    before = time.time() - Settings.model_fields["fold_grace_s"].default
    await conn.execute("DELETE FROM rollup_folds WHERE tenant_id = $1", tenant)
    await conn.copy_records_to_table(
        "rollup_folds",
        records=[(tenant, *state) for state in fold_states(m, cals, before)],
        columns=("tenant_id", "level", "bucket", "folded"),
    )
    for dim in dims:
        t0, count = time.perf_counter(), 0
        laid = laid_out(rows(h, m, dim, cals), cals, before)
        for batch in _batches((tenant, *row) for row in laid):
            await conn.copy_records_to_table(
                "rollups",
                records=batch,
                columns=ROLLUP_COLUMNS,
            )
            count += len(batch)
        print(f"rollups[{dim}]: {count:,} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    await conn.executemany(  # every row above has the zones' calendar buckets
        "INSERT INTO report_zones (name, since) VALUES ($1, 'epoch')"
        " ON CONFLICT (name) DO UPDATE SET since = 'epoch'",
        [(c.name,) for c in cals],
    )
    await conn.execute("ANALYZE tickets")
    await conn.execute("ANALYZE rollups")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(p * len(ordered)) - 1)]


async def timed_gets(
    http: httpx.AsyncClient, url: str, params_of: list[dict[str, str]], headers: dict[str, str]
) -> tuple[list[float], Any]:
    times, body = [], None
    for params in params_of[:3]:  # warm-up: connections, plans, cache
        (await http.get(url, params=params, headers=headers)).raise_for_status()
    for params in params_of:
        t0 = time.perf_counter()
        resp = await http.get(url, params=params, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        resp.raise_for_status()
        body = resp.json()
    return times, body


def ranges(days: int, count: int, rng: random.Random) -> list[tuple[date, date]]:
    """`count` ranges of `days` days ending on one of the history's last 60 days."""
    last = (END - timedelta(days=1)).date()
    ends = [last - timedelta(days=rng.randrange(60)) for _ in range(count)]
    return [(e - timedelta(days=days - 1), e) for e in ends]


NAIVE_SQL = """
SELECT count(*) AS created,
       count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed,
       count(*) FILTER (WHERE abandoned) AS abandoned,
       sum(transfers) AS transfers,
       sum(customer_messages) AS customer_messages,
       sum(agent_messages) AS agent_messages,
       sum(bot_messages) AS bot_messages,
       count(*) FILTER (WHERE first_response_time_ms <= 60000) AS within_sla,
       avg(wait_time_ms), percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY wait_time_ms),
       avg(first_response_time_ms), percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY first_response_time_ms),
       avg(handle_time_ms), percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY handle_time_ms),
       avg(resolution_time_ms) FILTER (WHERE NOT abandoned),
       percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY resolution_time_ms)
         FILTER (WHERE NOT abandoned)
FROM tickets
WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
"""  # noqa: E501


async def naive(
    conn: asyncpg.Connection, spans: list[tuple[date, date]]
) -> tuple[list[float], int]:
    times, created = [], 0
    for start, end in spans:
        lo = datetime.combine(start, datetime.min.time(), UTC)
        hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
        t0 = time.perf_counter()
        row = await conn.fetchrow(NAIVE_SQL, TENANT, lo, hi)
        times.append((time.perf_counter() - t0) * 1000)
        created = created or row["created"]  # of the first range, as the API check
    return times, created


async def run_cases(args: argparse.Namespace, base: str, key: str, database_url: str) -> None:
    rng = random.Random(5)
    headers = {"Authorization": f"Bearer {key}"}
    reports = f"{base}/v1/tenants/{TENANT}/reports"
    n = args.requests
    year, quarter = ranges(365, n, rng), ranges(90, n, rng)

    def params(spans: list[tuple[date, date]], **extra: str) -> list[dict[str, str]]:
        return [{"from": a.isoformat(), "to": b.isoformat(), **extra} for a, b in spans]

    cases = [
        ("summary, 1 year", "summary", params(year)),
        ("daily timeseries, 1 year", "timeseries", params(year, granularity="day")),
        ("groups, 90 days", "groups", params(quarter)),
        ("agents, 90 days", "agents", params(quarter)),
        ("summary, 1 year, America/Sao_Paulo (report zone)", "summary",
         params(year, tz="America/Sao_Paulo")),
        ("daily timeseries, 1 year, America/Sao_Paulo", "timeseries",
         params(year, granularity="day", tz="America/Sao_Paulo")),
        ("monthly timeseries, 1 year, America/Sao_Paulo", "timeseries",
         params(year, granularity="month", tz="America/Sao_Paulo")),
        ("agents, 90 days, America/Sao_Paulo", "agents", params(quarter, tz="America/Sao_Paulo")),
        ("summary, 1 year, Asia/Kathmandu (other zone)", "summary",
         params(year, tz="Asia/Kathmandu")),
        ("daily timeseries, 90 days, Asia/Kolkata (other zone)", "timeseries",
         params(quarter, granularity="day", tz="Asia/Kolkata")),
        ("hourly timeseries, 7 days", "timeseries", params(ranges(7, n, rng), granularity="hour")),
        *([("summary, 1 year, agent filter", "summary", params(year, agent_id="agent-007"))]
          if "last_agent" in args.dims else []),
        *([("summary, 1 year, channel+group filter", "summary",
            params(year, channel="webchat", group_id="group-2"))]
          if "combo" in args.dims else []),
    ]  # fmt: skip
    print(f"\n{'HTTP GET (ms)':54} {'p50':>7} {'p95':>7} {'max':>7}   goal p95 <= 50")
    api_summary_p50 = 0.0
    async with httpx.AsyncClient(timeout=120) as http:
        for name, path, plist in cases:
            times, _ = await timed_gets(http, f"{reports}/{path}", plist, headers)
            print(f"{name:54} {pct(times, 0.5):7.1f} {pct(times, 0.95):7.1f} {max(times):7.1f}")
            if name == "summary, 1 year":
                api_summary_p50 = pct(times, 0.5)
        check = (await http.get(f"{reports}/summary", params=params(year[:1])[0],
                                headers=headers)).json()  # fmt: skip
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        times, created = await naive(conn, year[: args.naive_runs])
    finally:
        await conn.close()
    print(f"\nsame 1-year summary over the per-ticket table, {len(times)} runs: "
          f"p50 {pct(times, .5):,.0f} ms (max {max(times):,.0f} ms)")  # fmt: skip
    print(f"ratio to the API's p50: {pct(times, 0.5) / api_summary_p50:,.0f}x   (goal >= 100x)")
    print(f"tickets created in {year[0][0]}..{year[0][1]}: rollups {check['tickets_created']:,}"
          f" / per-ticket table {created:,}"
          f" ({'equal' if created == check['tickets_created'] else 'DIFFERENT'})")  # fmt: skip


async def prepare(args: argparse.Namespace, database_url: str, settings: Settings) -> str:
    """Schema, data (unless already there) and a read key; prints the table sizes."""
    await migrate(database_url)
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        have = await conn.fetchval("SELECT count(*) FROM tickets WHERE tenant_id = $1", TENANT)
        if have != args.tickets or args.reload:
            print(f"generating {args.tickets:,} tickets over {args.days} days …", flush=True)
            history = generate(args.tickets, args.days, END)
            await load(conn, history, settings.report_calendars(), args.dims.split(","))
        elif args.refresh:
            print(f"regenerating the rollup rows of {args.refresh} …", flush=True)
            history = generate(args.tickets, args.days, END)
            refresh = args.refresh.split(",")
            await load(conn, history, settings.report_calendars(), refresh, tickets=False)
        else:
            print(f"reusing {have:,} tickets of {TENANT}")
        sizes = await conn.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes, reltuples::bigint AS rows"
            " FROM pg_class WHERE relname IN ('tickets', 'rollups')"
        )
        for r in sizes:
            print(f"{r['relname']}: ~{r['rows']:,} rows, {r['bytes'] / 2**30:.1f} GiB")
    finally:
        await conn.close()
    # The rollups are COPY-loaded, not derived from a store: no generation to compare.
    await provision_command(settings, database=False)
    return await create_key(settings, TENANT, "read")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--naive-runs", type=int, default=5)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument(
        "--refresh", default="", help="regenerate only these dimensions' rows (after a change)"
    )
    parser.add_argument(
        "--dims", default=",".join(DIMS), help="rollup dimensions to load (default: all)"
    )
    parser.add_argument("--database-url", default=os.environ.get("TELEMETRY_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    stop_on_sigterm()
    url = args.database_url
    if url is None:  # the server stops when this process exits
        _server, url = start_postgres(Path(".telemetry/bench-reports-pg").resolve())
    moto_port, report_port = free_port(), free_port()
    env = {**embedded_env(moto_port, url), "TELEMETRY_REPORT_PORT": str(report_port)}
    os.environ.update(env)  # this process's settings are the report service's
    moto = start_moto(moto_port)
    report = None
    try:
        key = asyncio.run(prepare(args, url, Settings()))
        report = subprocess.Popen(
            [sys.executable, "-m", "telemetry.cli", "report"], stdout=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{report_port}"
        wait_http(f"{base}/healthz", 30)
        asyncio.run(run_cases(args, base, key, url))
    finally:
        for proc in (report, moto):
            if proc is not None:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
