"""`make bench-soak`: `--minutes` (10) of simulated traffic on the local stack of
`telemetry up`; does memory stay flat, do the queues drain, how fresh are the
answers?

It prints each process's memory (RSS, and PSS: shared pages split) when the
stack is up, every `--sample-minutes` of traffic and at the end; every queue's
backlog once the traffic has stopped and the queues have drained (drained =
0); freshness: the p95 and max of the time from a probe event's 202 to `/realtime`,
`/tickets/{id}` and the reports (bench/probes.py, polled about once a second),
and the loader's own `telemetry_batch_lag_seconds` (acceptance to load);
finally, every ticket and report against the reference, as the fault suite does.
A benchmark that prints, not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import signal
import sys
import tempfile
from functools import partial
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.drive import drain, local_stack, send, tenant_keys, urls, verify
from bench.faults import postgres_pids
from bench.model import PATHS
from bench.probes import AcceptLog, Prober
from bench.stack import parse_kib
from shared.histogram import rank
from telemetry.up import LocalStack


def memory_mib(stack: LocalStack) -> dict[str, tuple[float, float]]:
    """(RSS, PSS) of each service, the emulator and PostgreSQL (all its processes).
    PSS splits shared pages among the processes that map them: RSS summed over
    PostgreSQL's backends counts its shared buffers once per backend."""
    pids = {name: [p.pid] for name, p in stack.supervisor.children.items()}
    if stack.moto is not None:
        pids["moto"] = [stack.moto.pid]
    if stack.pg is not None:
        pids["postgres"] = postgres_pids(stack)
    out: dict[str, tuple[float, float]] = {}
    for name, group in pids.items():
        rss = pss = 0
        for pid in group:
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                rss += parse_kib(text, "Rss") or 0
                pss += parse_kib(text, "Pss") or 0
        out[name] = (rss / 1024, pss / 1024)
    return out


def histogram_p95(text: str, name: str, labels: dict[str, str]) -> tuple[float | None, int]:
    """(upper bound of the bucket that holds the p95, count) of a Prometheus histogram."""
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{name}_bucket" and labels.items() <= s.labels.items():
                buckets.append((float(s.labels["le"]), s.value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None, 0
    wanted = math.ceil(0.95 * total)
    return next(le for le, n in buckets if n >= wanted), int(total)


def fresh(values: list[float | None]) -> str:
    seen = sorted(v for v in values if v is not None)
    if not seen:
        return "none seen"
    return (f"p95 {seen[rank(len(seen), 95) - 1]:.1f} s, max {seen[-1]:.1f} s "
            f"({len(seen)} of {len(values)} probes seen)")  # fmt: skip


async def run(args: argparse.Namespace, folder: Path) -> int:
    stack = local_stack(folder, {})
    settings = await asyncio.to_thread(stack.start, lambda line: None)
    try:
        at_start = memory_mib(stack)
        tenants = [f"soak-{i + 1}" for i in range(args.tenants)]
        keys = await tenant_keys(settings, tenants)
        where = urls(settings)
        log = AcceptLog()
        duration_s = args.minutes * 60
        async with httpx.AsyncClient(timeout=30) as http:
            prober = Prober(http, where, tenants[0], keys[tenants[0]], log, timeout_s=300)
            stop = asyncio.Event()
            probes = [asyncio.create_task(prober.send(5.0, stop)),
                      asyncio.create_task(prober.poll(stop))]  # fmt: skip
            sending = asyncio.create_task(
                send(where["collector"], keys, args.rate, duration_s, args.seed, log)
            )
            samples: list[tuple[float, dict[str, tuple[float, float]]]] = []

            async def sample() -> None:
                every_s = args.sample_minutes * 60
                for n in range(1, int(duration_s // every_s) + 1):
                    await asyncio.sleep(every_s)
                    samples.append((n * every_s / 60, memory_mib(stack)))

            sampler = asyncio.create_task(sample())
            stats = await sending
            sampler.cancel()
            stop.set()
            await asyncio.gather(*probes)
            at_end = memory_mib(stack)
            depths = await drain(settings, log.last(), timeout_s=600)
            port = stack.supervisor.metrics_ports["loader"]
            metrics = (await http.get(f"http://{settings.host}:{port}/metrics")).text
            lag, batches = histogram_p95(metrics, "telemetry_batch_lag_seconds",
                                         {"stage": "loader"})  # fmt: skip
            verdict = await verify(http, where["report"], keys, log.events())
        accepted = len({(e["tenant_id"], e["event_id"]) for e in log.events()})
        print(f"soak: {duration_s:.0f} s at {args.rate:g} events/s asked, {accepted} events "
              f"accepted ({stats.retries} retries, {stats.rejected} rejected)")  # fmt: skip
        # PSS at both ends, RSS in between: a plateau and a leak look alike
        # over two points, not over a series.
        print("memory (MiB)   up RSS/PSS  " + "".join(f"+{m:>4g} min" for m, _ in samples)
              + "   end RSS/PSS")  # fmt: skip
        for name, (rss, pss) in at_start.items():
            rss2, pss2 = at_end.get(name, (0, 0))
            series = "".join(f"{mem.get(name, (0, 0))[0]:9.0f}" for _, mem in samples)
            print(f"  {name:<12} {rss:5.0f}/{pss:<5.0f}{series}   {rss2:5.0f}/{pss2:<5.0f}")
        print("backlog after draining (messages): "
              + ", ".join(f"{k} {v}" for k, v in depths.items()))  # fmt: skip
        seen = prober.freshness()
        for path in PATHS:
            print(f"freshness {path:<9} {fresh(seen[path])}")
        bound = "none" if lag is None else f"<= {lag:g} s"
        print(f"freshness loader    batch lag p95 {bound} ({batches} batches, metric buckets)")
        print(verdict.line() + f", reports wrong {len(verdict.reports)}")
        for line in verdict.details + verdict.reports[:20]:
            print(f"  wrong: {line}")
        return 1 if verdict.wrong or verdict.reports or any(depths.values()) else 0
    finally:
        await asyncio.to_thread(partial(stack.stop, save=False))  # its folder goes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0, help="events/s (default 50)")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-minutes", type=float, default=2.0,
                        help="memory sampled this often during the traffic")  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    folder = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        sys.exit(asyncio.run(run(args, folder)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
