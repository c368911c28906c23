"""`make bench-history`: each stage's cost per event as one tenant's history grows.

For each history H (`--history`, days): a fresh local stack (bench/stack.py:
moto, PostgreSQL, one process per service with its own /metrics), one tenant
given H days of history at `--scale` x 10,000 tickets a day, written straight
into the stores (bench/history_write.py), then `--minutes` of that tenant's
live traffic at `--rate` events/s (`telemetry simulate`'s model, the history's
8 groups) through the collector and every stage, with freshness probes
(bench/probes.py). Per stage, over the traffic and its drain: CPU s, AWS
requests and S3 bytes per 1,000 events (the stages' own counters), peak RSS;
PostgreSQL's bytes read and written per 1,000 events; the queues' depths every
`--sample` s; then the reports' latency on that history. The disk the history
needs is estimated and printed first; the run stops if it does not fit.

    .venv/bin/python -m bench.history_run [--history 0,30,365] [--scale 1]
        [--rate 400] [--minutes 10 | 30,10,10] [--out bench/results]

It writes figures (`history.json`, `history.md`, `history.png`) after each H, so a run
stopped later keeps the histories it measured; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench import history, history_report
from bench.history_write import check_disk, per_day, write
from bench.pgstats import pg_io
from bench.probes import AcceptLog, Prober, open_in_table
from bench.report_latency import pct, timed_gets
from bench.stack import (
    Scrape,
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
from bench.sysinfo import machine
from shared.aws import Aws, open_aws
from shared.pipeline import queue_names
from telemetry.keys import create_key
from telemetry.simulate import send_traffic
from telemetry.traffic import Params, Traffic, events_per_ticket, hold_s
from telemetry.up import start_postgres

WORK = Path(".telemetry") / "bench-history"
DRAIN_LIMIT_S = 600.0
GROUPS = tuple((f"group-{g}", w) for g, w in enumerate((16, 15, 14, 13, 12, 11, 10, 9)))
AGENTS = len(history.AGENTS)  # the history's staff, 144


def params(rate: float) -> Params:
    """The traffic model with the history's groups, and a staff about the size of the
    history's: at 400 events/s one tenant takes ~7,000 chats at once, which two
    chats per agent would staff with ~3,500 agents (an agents report 25x the
    history's), so each agent holds as many chats as needs ~144 agents."""
    base = Params(groups=tuple((name, w / 100) for name, w in GROUPS))
    chats = base.staffing * rate / events_per_ticket(base) * hold_s(base)
    return replace(base, capacity=max(base.capacity, math.ceil(chats / AGENTS)))


def say(text: str) -> None:
    print(f"bench-history: {text}", file=sys.stderr, flush=True)


async def depths(aws: Aws, urls: dict[str, str]) -> dict[str, int]:
    """Messages waiting or in flight, by queue."""
    out = {}
    for name, url in urls.items():
        attrs = await aws.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        out[name] = sum(int(v) for v in attrs.get("Attributes", {}).values())
    return out


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


async def sample(
    aws: Aws, stack: Stack, urls: dict[str, str], t0: float, every: float, stop: asyncio.Event,
    out: list[dict[str, Any]],
) -> None:  # fmt: skip
    while not stop.is_set():
        row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1)}
        row["queues"] = await depths(aws, urls)
        row["rss"] = {n: rss_mib(p) for n, p in stack.pids.items()}
        out.append(row)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def drained(aws: Aws, urls: dict[str, str], limit_s: float) -> bool:
    deadline, empty = time.monotonic() + limit_s, 0
    while time.monotonic() < deadline:
        empty = empty + 1 if sum((await depths(aws, urls)).values()) == 0 else 0
        if empty == 2:
            return True
        await asyncio.sleep(2.0)
    return False


def cpu_of(stack: Stack, pg_dir: Path) -> dict[str, float]:
    out = {}
    for name, pid in stack.pids.items():
        with contextlib.suppress(OSError):
            out[name] = cpu_s(pid)
    out["postgres"] = postgres_cpu_s(pg_dir)
    out["bench"] = cpu_s(os.getpid())
    return out


def timings(before: dict[str, Scrape], after: dict[str, Scrape]) -> dict[str, list[float]]:
    """[seconds, count] over the window: handling by queue, the loader's hot-row holds."""
    out: dict[str, list[float]] = {}
    for name, scraped in after.items():  # every process registers the histograms: summed
        for key, (total, n) in scraped.timings.items():
            was = before[name].timings.get(key, [0.0, 0.0])
            pair = out.setdefault(key, [0.0, 0.0])
            pair[0] += total - was[0]
            pair[1] += n - was[1]
    return out


async def report_latency(stack: Stack, tenant: str, key: str, n: int) -> dict[str, float]:
    """p95 (ms) of the reports a user opens, on ranges ending today."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    start = {d: time.strftime("%Y-%m-%d", time.gmtime(time.time() - (d - 1) * 86_400))
             for d in (7, 90, 365)}  # fmt: skip
    cases = {
        "summary, 1 year": ("summary", {"from": start[365]}),
        "daily timeseries, 1 year": ("timeseries", {"from": start[365], "granularity": "day"}),
        "groups, 90 days": ("groups", {"from": start[90]}),
        "agents, 90 days": ("agents", {"from": start[90]}),
        "hourly timeseries, 7 days, America/Sao_Paulo": (
            "timeseries", {"from": start[7], "granularity": "hour", "tz": "America/Sao_Paulo"}),
    }  # fmt: skip
    base = f"{stack.urls['report']}/v1/tenants/{tenant}/reports"
    out = {}
    async with httpx.AsyncClient(timeout=120) as http:
        for name, (path, params) in cases.items():
            plist = [{**params, "to": today}] * n
            times, _ = await timed_gets(
                http, f"{base}/{path}", plist, {"Authorization": f"Bearer {key}"}
            )
            out[name] = round(pct(times, 0.95), 1)
    return out


async def live(args: argparse.Namespace, stack: Stack, pg_dir: Path, tenant: str, key: str,
               database_url: str) -> dict[str, Any]:  # fmt: skip
    """The measured part: traffic, probes, samples, the drain, the counters' differences."""
    seconds = args.minutes * 60
    async with open_aws(stack.settings) as aws, httpx.AsyncClient(timeout=30) as http:
        urls = {q: (await aws.sqs.get_queue_url(QueueName=q))["QueueUrl"]
                for q in queue_names(stack.settings)}  # fmt: skip
        log = AcceptLog()
        seen = open_in_table(aws.dynamodb, stack.settings.realtime_table, tenant)
        prober = Prober(http, stack.urls, tenant, key, log, args.probe_timeout, seen)
        machine0, cpu0 = machine_busy_s(), cpu_of(stack, pg_dir)
        scraped0, pg0 = await scrape(http, stack.metrics), await pg_io(database_url)
        for pid in stack.pids.values():
            reset_peak(pid)
        samples: list[dict[str, Any]] = []
        stop_sampling, stop_probes = asyncio.Event(), asyncio.Event()
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(sample(aws, stack, urls, t0, args.sample, stop_sampling, samples)),
            asyncio.create_task(prober.send(args.probe_every, stop_probes)),
            asyncio.create_task(prober.poll(stop_probes, args.poll_every)),
        ]
        traffic = Traffic(random.Random(args.seed), [tenant], args.rate, seconds,
                          int(time.time() * 1000), params(args.rate))  # fmt: skip
        async with httpx.AsyncClient(base_url=stack.urls["collector"], timeout=30) as client:
            stats = await send_traffic(traffic, client, {tenant: key}, rate=args.rate,
                                       duration=seconds, out=log, progress=False)  # fmt: skip
        send_s = time.monotonic() - t0
        stop_probes.set()
        say(f"{len(log.events())} events accepted in {send_s:.0f} s; draining")
        ok = await drained(aws, urls, DRAIN_LIMIT_S)
        await asyncio.gather(tasks[1], tasks[2])
        stop_sampling.set()
        await tasks[0]
        window_s = time.monotonic() - t0
        cpu1, scraped1 = cpu_of(stack, pg_dir), await scrape(http, stack.metrics)
        pg1 = await pg_io(database_url)
        peaks = {n: peak_rss_mib(p) for n, p in stack.pids.items()}
        machine_cpu = machine_busy_s() - machine0
    latency = await report_latency(stack, tenant, key, args.requests)
    return {
        "events": len(log.events()),
        "send_s": round(send_s, 1),
        "window_s": round(window_s, 1),
        "drained": ok,
        "rejected": stats.rejected,
        "retries": stats.retries,
        "cpu_s": {n: round(cpu1[n] - cpu0.get(n, 0.0), 2) for n in cpu1},
        "machine_cpu_s": round(machine_cpu, 1),
        "requests": {
            n: sum((scraped1[n].requests - scraped0[n].requests).values()) for n in scraped1
        },
        "requests_by_op": {n: dict(scraped1[n].requests - scraped0[n].requests) for n in scraped1},
        "s3_bytes": {n: dict(scraped1[n].s3_bytes - scraped0[n].s3_bytes) for n in scraped1},
        "timings": timings(scraped0, scraped1),
        "outcomes": {  # messages retried or dead-lettered, by queue
            k: v
            for n in scraped1
            for k, v in (scraped1[n].outcomes - scraped0[n].outcomes).items()
            if not k.endswith(" done")
        },
        "pg": {k: pg1[k] - pg0.get(k, 0) for k in pg1},
        "peak_rss_mib": {n: None if v is None else round(v, 1) for n, v in peaks.items()},
        "samples": samples,
        "freshness": prober.freshness(),
        "probe_errors": prober.errors,
        "report_p95_ms": latency,
    }


async def one_history(args: argparse.Namespace, days: int) -> dict[str, Any]:
    """A fresh PostgreSQL and stack for H = `days`; both removed on return."""
    pg_dir = (WORK / f"pg-{days}d").resolve()
    shutil.rmtree(pg_dir, ignore_errors=True)
    logs = WORK / f"logs-{days}d"
    logs.mkdir(parents=True, exist_ok=True)
    pg, url = start_postgres(pg_dir)
    try:
        async with running_stack(url, logs) as stack:
            tenant = f"hist-{days}d"
            key = await create_key(stack.settings, tenant, "ingest,read")
            daily = per_day(args.scale)
            say(f"H = {days} d: writing {days * daily:,} tickets of history")
            now_ms = int(time.time() * 1000)
            written = await write(stack.settings, url, tenant, days, daily, now_ms, args.exact_days)
            say(f"H = {days} d: history written (store {written.store_s:.0f} s, "
                f"PostgreSQL {written.pg_s:.0f} s); {args.minutes:g} min of traffic at "
                f"{args.rate:g} events/s")  # fmt: skip
            result = await live(args, stack, pg_dir, tenant, key, url)
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
        result |= {"days": days, "written": vars(written), "exited": dead}
        return result
    finally:
        pg.cleanup()
        shutil.rmtree(pg_dir, ignore_errors=True)


T = TypeVar("T")


def comma_list(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated values of `kind`."""
    return lambda text: [kind(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=comma_list(int),
                        default=[0, 30, 365], help="days of history, comma separated")  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="x 10,000 tickets a day")
    parser.add_argument(
        "--exact-days", type=int, default=30,
        help="last days whose ticket rows and ledger are the store's own tickets",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, default=400.0, help="live events/s")
    parser.add_argument("--minutes", type=comma_list(float), default=[10.0],
                        help="of live traffic per H: one value, or one per H")  # fmt: skip
    parser.add_argument("--sample", type=float, default=10.0, help="s between queue samples")
    parser.add_argument("--probe-every", type=float, default=2.0)
    parser.add_argument(
        "--poll-every", type=float, default=1.0,
        help="s between polls for the probes (a probe is seen late by up to this)",
    )  # fmt: skip
    parser.add_argument("--probe-timeout", type=float, default=120.0)
    parser.add_argument("--requests", type=int, default=20, help="per report case")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    if len(args.minutes) == 1:
        args.minutes *= len(args.history)
    if len(args.minutes) != len(args.history):
        parser.error("--minutes: one value, or one per --history value")
    stop_on_sigterm()
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(1 << 20))  # big objects on disk
    check_disk(args, WORK, say)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = []
    for days, minutes in zip(args.history, args.minutes, strict=True):
        run = argparse.Namespace(**{**vars(args), "minutes": minutes})
        results.append(asyncio.run(one_history(run, days)) | {"minutes": minutes})
        say(history_report.summary_line(results[-1]))
        publish(args, started, results)  # after each H: a run stopped later keeps it


def publish(args: argparse.Namespace, started: str, results: list[dict[str, Any]]) -> None:
    """history.json, .md and .png of the histories measured so far."""
    done = [r["days"] for r in results]
    out = {"started": started, "machine": vars(machine()), "args": {
        **{k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
        "history": done, "minutes": [r["minutes"] for r in results]},
        "load_note": history_report.load_note(results), "results": results}  # fmt: skip
    history_report.save(out, args.out)
    say(f"wrote {args.out / 'history.md'} (H = {', '.join(map(str, done))} d)")


if __name__ == "__main__":
    main()
