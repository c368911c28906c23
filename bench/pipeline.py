"""`make bench`: the whole local stack under simulated traffic at increasing rates.

For each rate, fresh tenants get the traffic of `telemetry simulate` through
the collector's HTTP API for `--seconds`, with freshness probes among it
(`bench.probes`) and the SQS backlog sampled every 2 s; then the step waits
until every tenant's report counts are exact and the queues are empty. CPU
time and peak memory of every process (/proc) and the AWS requests the
services counted themselves (their /metrics) are read before and after, so a
step's figures include the work its events caused after the sending stopped.
Stepping up stops at the first rate the stack does not sustain
(`bench.model.saturation`). Then every ticket is checked against the exact
metrics, the old design runs on the same events, and `--out` gets
`results.json`, `report.md` and the plots.

    .venv/bin/python -m bench.pipeline [--rates 100,200,300,400,600,800] [--seconds 60]

It writes figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from bench import check, report
from bench.baseline import run_baseline
from bench.model import Baseline, Correctness, Result, Step, Usage, other_load, saturation
from bench.probes import AcceptLog, Prober, wait_reports
from bench.stack import (
    Stack,
    cpu_s,
    machine_busy_s,
    peak_rss_mib,
    postgres_cpu_s,
    reset_peak,
    running_stack,
    scrape,
    stop_on_sigterm,
)
from bench.sysinfo import machine, settings_table
from shared.aws import Aws, open_aws
from shared.pipeline import queue_names
from telemetry.commands import create_key
from telemetry.simulate import send_traffic
from telemetry.traffic import Traffic
from telemetry.up import start_postgres

LOGS = Path(".telemetry") / "bench-logs"
SAMPLE_S = 2.0
T = TypeVar("T")
DRAIN_LIMIT_S = 300.0
BUSY_ELSEWHERE = 0.2  # cores used by others that are worth a note


@dataclass
class Run:
    """What every step shares: the stack, the clients, the options, what was sent."""

    stack: Stack
    aws: Aws
    http: httpx.AsyncClient
    args: argparse.Namespace
    pg_dir: Path
    queue_urls: list[str]
    keys: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    truth: check.Truth = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    correctness: Correctness | None = None
    notes: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


async def backlog(run: Run) -> int:
    """Messages waiting or in flight in every stage queue."""
    total = 0
    for url in run.queue_urls:
        attrs = await run.aws.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        total += sum(int(v) for v in attrs.get("Attributes", {}).values())
    return total


async def sample_backlog(
    run: Run, t0: float, stop: asyncio.Event, out: list[tuple[float, int]]
) -> None:
    while not stop.is_set():
        out.append((round(time.monotonic() - t0, 1), await backlog(run)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def drained(run: Run, limit_s: float) -> bool:
    """Twice in a row nothing queued, within `limit_s`."""
    deadline = time.monotonic() + limit_s
    empty = 0
    while time.monotonic() < deadline:
        empty = empty + 1 if await backlog(run) == 0 else 0
        if empty == 2:
            return True
        await asyncio.sleep(1.0)
    return False


def _safe(read: Callable[[int], T], pid: int) -> T | None:
    try:
        return read(pid)
    except OSError:  # the process is gone: noted by the caller
        return None


def cpu_now(run: Run) -> dict[str, float]:
    out = {name: _safe(cpu_s, pid) or 0.0 for name, pid in run.stack.pids.items()}
    out["postgres"] = postgres_cpu_s(run.pg_dir)
    out["bench"] = cpu_s(os.getpid())
    return out


def pids(run: Run) -> dict[str, int]:
    return {**run.stack.pids, "bench": os.getpid()}


async def run_step(run: Run, index: int, rate: float) -> Step:
    args = run.args
    tenants = [f"bench{index + 1}-{i + 1}" for i in range(args.tenants)]
    keys = {t: await create_key(run.stack.settings, t, "ingest,read") for t in tenants}
    run.keys.update(keys)
    log = AcceptLog()
    prober = Prober(run.http, run.stack.urls, tenants[0], keys[tenants[0]], log, args.probe_timeout)
    machine_before = machine_busy_s()
    cpu_before, scraped_before = cpu_now(run), await scrape(run.http, run.stack.metrics)
    for pid in pids(run).values():
        reset_peak(pid)
    samples: list[tuple[float, int]] = []
    stop_sampling, stop_probes = asyncio.Event(), asyncio.Event()
    t0 = time.monotonic()
    sampler = asyncio.create_task(sample_backlog(run, t0, stop_sampling, samples))
    sender = asyncio.create_task(prober.send(args.probe_every, stop_probes))
    poller = asyncio.create_task(prober.poll(stop_probes))
    traffic = Traffic(
        random.Random(args.seed + index), tenants, rate, args.seconds, int(time.time() * 1000)
    )
    async with httpx.AsyncClient(base_url=run.stack.urls["collector"], timeout=30) as client:
        stats = await send_traffic(
            traffic, client, keys, rate=rate, duration=args.seconds, out=log, progress=False
        )
    stop_probes.set()
    await sender
    send_s = log.last() - t0
    events = log.events()
    say(f"{rate:g} events/s asked: {len(events)} accepted in {send_s:.0f} s; waiting for reports")
    if stats.rejected or stats.retries:
        run.notes.append(
            f"{rate:g}/s: {stats.rejected} events rejected, "
            f"{stats.retries} bodies retried after 503"
        )
    truth = check.exact(events)
    unmatched = await wait_reports(
        run.http, run.stack.urls["report"], keys, check.report_counts(truth), args.catch_up_limit
    )
    catch_up = None if unmatched else time.monotonic() - log.last()
    if unmatched:
        run.notes.append(
            f"{rate:g}/s: reports not exact after {args.catch_up_limit:g} s (last seen {unmatched})"
        )
    await poller
    if not await drained(run, DRAIN_LIMIT_S):
        run.notes.append(f"{rate:g}/s: queues not empty {DRAIN_LIMIT_S:g} s after the step")
    stop_sampling.set()
    await sampler
    window_s = time.monotonic() - t0
    machine_cpu_s = machine_busy_s() - machine_before
    cpu_after, scraped_after = cpu_now(run), await scrape(run.http, run.stack.metrics)
    usage = {
        name: Usage(
            round(cpu_after[name] - cpu_before[name], 2),
            None if name == "postgres" else _safe(peak_rss_mib, pids(run)[name]),
        )
        for name in cpu_after
    }
    requests = {
        name: dict(scraped_after[name].requests - scraped_before[name].requests)
        for name in scraped_after
    }
    outcomes: dict[str, int] = {}
    for name in scraped_after:
        for key, n in (scraped_after[name].outcomes - scraped_before[name].outcomes).items():
            if not key.endswith(" done"):
                outcomes[key] = outcomes.get(key, 0) + n
    if prober.errors:
        run.notes.append(f"{rate:g}/s: {prober.errors} probe reads failed (counted as not seen)")
    run.events.extend(events)
    run.truth.update(truth)
    return Step(
        rate=rate,
        send_s=round(send_s, 2),
        events=len(events),
        tickets=len(truth),
        tenants=len(tenants),
        freshness=prober.freshness(),
        backlog=samples,
        catch_up_s=catch_up,
        usage=usage,
        requests=requests,
        outcomes=outcomes,
        window_s=round(window_s, 1),
        asked_s=args.seconds,
        machine_cpu_s=round(machine_cpu_s, 1),
    )


async def measure(args: argparse.Namespace, database_url: str, pg_dir: Path) -> Run:
    """Every rate step, then the correctness of every ticket; the stack stops on return."""
    async with (
        running_stack(database_url, LOGS) as stack,
        open_aws(stack.settings) as aws,
        httpx.AsyncClient(timeout=30) as http,
    ):
        queues = [
            (await aws.sqs.get_queue_url(QueueName=q))["QueueUrl"]
            for q in queue_names(stack.settings)
        ]
        run = Run(stack, aws, http, args, pg_dir, queues)
        say(f"stack up; logs in {LOGS}")
        for index, rate in enumerate(args.rates):
            try:
                step = await run_step(run, index, rate)
            except httpx.HTTPError as exc:  # the collector gave up: report what was measured
                run.notes.append(f"{rate:g}/s: the step failed ({exc!r}); stepping stopped")
                break
            run.steps.append(step)
            if other_load(step) > BUSY_ELSEWHERE:
                run.notes.append(
                    f"{rate:g}/s: other processes on the machine used {other_load(step):.2f} "
                    "cores during this step: its figures are pessimistic"
                )
            reasons = saturation(step)
            say(f"{rate:g} events/s: " + ("; ".join(reasons) or "sustained"))
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if dead:
                run.notes.append(f"processes exited during the run: {', '.join(dead)}")
                break
            if reasons:
                break
        if not await drained(run, DRAIN_LIMIT_S):
            run.notes.append("queues still not empty before the correctness check")
        say(f"checking {len(run.truth)} tickets against the exact metrics")
        run.correctness = await check.correctness(http, stack.urls["report"], run.keys, run.truth)
    return run


async def main_async(args: argparse.Namespace) -> Result:
    started, t0 = datetime.now(UTC), time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        pg_dir = Path(tmp) / "pg"
        pg, url = start_postgres(pg_dir)
        try:
            run = await measure(args, url, pg_dir)
            say(f"the old design on the same {len(run.events)} events")
            old = await run_baseline(url, run.events) if run.events else []
        finally:
            pg.cleanup()
    return Result(
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=round(time.monotonic() - t0),
        machine=machine(),
        settings=settings_table(args, run.stack.settings),
        steps=run.steps,
        correctness=run.correctness,
        baseline=[
            Baseline(b.workers, b.events_per_s, b.wrong, b.tickets, len(run.events)) for b in old
        ],
        notes=run.notes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",")],
        default=[100.0, 200.0, 300.0, 400.0, 600.0, 800.0],
        help="events/s, comma separated",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="of traffic per rate")
    parser.add_argument("--tenants", type=int, default=4, help="per rate (fresh ones each time)")
    parser.add_argument("--probe-every", type=float, default=1.5, help="seconds between probes")
    parser.add_argument("--probe-timeout", type=float, default=60.0)
    parser.add_argument("--catch-up-limit", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    stop_on_sigterm()
    LOGS.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_bytes(
        orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2)
    )
    report.write(result, args.out)
    say(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
