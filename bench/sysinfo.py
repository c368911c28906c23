"""The machine and the settings a run had, so its figures can be read for what they are."""

from __future__ import annotations

import argparse
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.model import Machine
from shared.settings import Settings


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def machine() -> Machine:
    mem_kib = (_first("/proc/meminfo", "MemTotal") or "0 kB").split()[0]
    try:
        moto = version("moto")
    except PackageNotFoundError:
        moto = "?"
    return Machine(
        cores=os.cpu_count() or 0,
        ram_gib=round(int(mem_kib) / 2**20, 1),
        cpu_model=_first("/proc/cpuinfo", "model name") or platform.processor() or "?",
        kernel=platform.release(),
        python=platform.python_version(),
        moto=moto,
    )


def settings_table(args: argparse.Namespace, s: Settings) -> dict[str, str]:
    """What was asked of the run, and the service settings that shape the figures."""
    return {
        "rates asked (events/s)": ", ".join(f"{r:g}" for r in args.rates),
        "traffic per rate": f"{args.seconds:g} s of `telemetry simulate` traffic (2% duplicates, "
        "1% late by 1-10 min), fresh tenants each rate",
        "tenants per rate": str(args.tenants),
        "probes": f"one every {args.probe_every:g} s in the first tenant, polled every 1 s, "
        f"given up after {args.probe_timeout:g} s",
        "catch-up limit": f"{args.catch_up_limit:g} s",
        "processes": "moto server, PostgreSQL (pgserver), one process per service, the benchmark",
        "dumper buffers": f"{s.buffer_max_age_s:g} s or {s.buffer_max_bytes // 2**20} MiB",
        "workers": f"{s.worker_concurrency} messages at once, long poll {s.worker_wait_s} s",
        "stream shards": str(s.stream_shards),
        "ticket store": f"size classes of {s.compact_after} objects merged, sealed after "
        f"{s.store_retention_s / 86_400:g} days idle, cache {s.store_cache_bytes // 2**20} MiB",
        "seed": str(args.seed),
    }
