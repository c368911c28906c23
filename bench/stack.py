"""The local stack as `telemetry up` runs it, with what a benchmark needs to watch it.

moto in server mode and every service as its own process (so each has its own
CPU time and memory in /proc), on free ports, each with its `/metrics` on a
port of its own; the services count their own AWS requests there. PostgreSQL is
started by the caller, because the baseline needs it after the stack stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.pipeline import SERVICES
from shared.settings import Settings
from telemetry.commands import provision_command
from telemetry.up import StackError, embedded_env, free_port, start_moto, wait_http


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C: the `finally` blocks stop moto, PostgreSQL
    and the services instead of leaving them running."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


STOP_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    settings: Settings
    urls: dict[str, str]  # collector, report
    metrics: dict[str, str]  # service -> its /metrics
    pids: dict[str, int]  # service or "moto" -> pid
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def _start(name: str, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "telemetry.cli", name], env=env, stdout=log, stderr=log
    )


@contextlib.asynccontextmanager
async def running_stack(database_url: str, logs: Path) -> AsyncIterator[Stack]:
    """moto and the services with default settings (ports aside); everything stopped on exit.

    `logs` must exist: each service writes its own log file there.

    The environment of this process is set to the stack's, so `Settings()` here
    reads what the services read.
    """
    moto_port = free_port()
    moto = start_moto(moto_port)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with contextlib.ExitStack() as files:
        try:
            os.environ.update(embedded_env(moto_port, database_url))
            os.environ["TELEMETRY_COLLECTOR_PORT"] = str(free_port())
            os.environ["TELEMETRY_REPORT_PORT"] = str(free_port())
            settings = await provision_command(Settings())
            base = f"http://{settings.host}"
            urls = {
                "collector": f"{base}:{settings.collector_port}",
                "report": f"{base}:{settings.report_port}",
            }
            metrics: dict[str, str] = {}
            for name in SERVICES:
                env = dict(os.environ)
                port = free_port()
                env["TELEMETRY_METRICS_PORT"] = str(port)
                metrics[name] = f"{base}:{port}/metrics"
                log = files.enter_context((logs / f"{name}.log").open("wb"))
                procs[name] = _start(name, env, log)
            try:
                wait_http(urls["collector"] + "/readyz", 60)
                wait_http(urls["report"] + "/healthz", 60)
                for url in metrics.values():
                    wait_http(url, 60)
            except StackError as exc:
                dead = [name for name, p in procs.items() if p.poll() is not None]
                msg = f"{exc}; exited: {', '.join(dead) or 'none'} (logs in {logs})"
                raise StackError(msg) from exc
            pids = {name: p.pid for name, p in procs.items()} | {"moto": moto.pid}
            yield Stack(settings, urls, metrics, pids, procs)
        finally:
            await asyncio.to_thread(_stop, [*procs.values()])
            _stop([moto])


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def parse_stat(text: str) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime (clock ticks) of a /proc/<pid>/stat line."""
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def _stat(pid: int) -> tuple[int, int, int, int]:
    return parse_stat(Path(f"/proc/{pid}/stat").read_text())


def cpu_s(pid: int) -> float:
    """CPU seconds of one process (user + system)."""
    utime, stime, _, _ = _stat(pid)
    return (utime + stime) / CLK_TCK


def parse_busy(proc_stat: str) -> int:
    """Busy clock ticks of all CPUs since boot, from the `cpu` line of /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in proc_stat.split("\n", 1)[0].split()[1:9]
    )
    return user + nice + system + irq + softirq + steal


def machine_busy_s() -> float:
    """CPU seconds every process of the machine used: ours and anyone else's."""
    return parse_busy(Path("/proc/stat").read_text()) / CLK_TCK


def parse_kib(status: str, key: str) -> int | None:
    match = re.search(rf"^{key}:\s+(\d+) kB$", status, re.M)
    return int(match.group(1)) if match else None


def peak_rss_mib(pid: int) -> float | None:
    kib = parse_kib(Path(f"/proc/{pid}/status").read_text(), "VmHWM")
    return None if kib is None else kib / 1024


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS, so a peak belongs to one step."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def postgres_cpu_s(data_dir: Path) -> float:
    """The postmaster, its reaped children and its live backends; 0 if it cannot be read."""
    try:
        master = int((data_dir / "postmaster.pid").read_text().split()[0])
        utime, stime, cutime, cstime = _stat(master)
    except (OSError, ValueError, IndexError):
        return 0.0
    ticks = utime + stime + cutime + cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == master:
                u, s, _, _ = parse_stat(text)
                ticks += u + s
    return ticks / CLK_TCK


TIMED = ("telemetry_handle_seconds", "telemetry_loader_hot_rows_held_seconds")


@dataclass
class Scrape:
    requests: Counter[str] = field(default_factory=Counter)  # "service operation" -> n
    outcomes: Counter[str] = field(default_factory=Counter)  # "queue outcome" -> n
    s3_bytes: Counter[str] = field(default_factory=Counter)  # "read" or "written" -> bytes
    # "telemetry_handle_seconds QUEUE" and the loader's hot-row holds -> [sum, count]
    timings: dict[str, list[float]] = field(default_factory=dict)


def parse_metrics(text: str) -> Scrape:
    """Counters of our services' Prometheus text: AWS requests by service and
    operation and S3 payload bytes (shared/aws.py), messages by queue and
    outcome (shared/worker.py)."""
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "telemetry_aws_requests_total":
                out.requests[f"{labels['service']} {labels['operation']}"] += int(sample.value)
            elif sample.name == "telemetry_messages_total":
                out.outcomes[f"{labels['queue']} {labels['outcome']}"] += int(sample.value)
            elif sample.name == "telemetry_aws_s3_bytes_total":
                out.s3_bytes[labels["direction"]] += int(sample.value)
            elif sample.name.endswith(("_seconds_sum", "_seconds_count")) and (
                sample.name.startswith(TIMED)
            ):
                name, _, part = sample.name.rpartition("_")
                key = f"{name} {labels['queue']}" if "queue" in labels else name
                pair = out.timings.setdefault(key, [0.0, 0.0])
                pair[part == "count"] += sample.value
    return out


async def scrape(http: httpx.AsyncClient, metrics: dict[str, str]) -> dict[str, Scrape]:
    async def one(url: str) -> Scrape:
        resp = await http.get(url)
        resp.raise_for_status()
        return parse_metrics(resp.text)

    scraped = await asyncio.gather(*(one(url) for url in metrics.values()))
    return dict(zip(metrics, scraped, strict=True))
