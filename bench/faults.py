"""`make bench-faults`: nothing accepted is lost and every number stays exact
while the local stack is killed, frozen and restarted under traffic.

The stack is the one `telemetry up` runs (telemetry.up.LocalStack: moto,
PostgreSQL from pgserver, every stage as its own process), in a folder of its
own on free ports. `telemetry simulate`'s traffic flows to a few tenants; each
body answered 202 is recorded. Meanwhile, at random moments:

- each stage is killed with SIGKILL, in turn, `--rounds` times, and started again;
- the emulator, then PostgreSQL (the postmaster and every backend), is frozen
  with SIGSTOP for `--freeze` seconds and thawed;
- PostgreSQL is stopped and started again;
- the whole stack is stopped as at Ctrl-C (the services drain, the emulator's
  data is saved) and started again.

Then the queues drain and every ticket (`GET /tickets/{id}`) and every report
(summary, hourly timeseries, groups, agents, /realtime) of every tenant is
held against the reference computed from the accepted events alone
(bench/reference.py). It prints one line, `faults injected N, events accepted
N, tickets checked N, tickets wrong N`, then what was wrong, if anything; the
exit code is 1 when anything was. `--short`: one kill of each stage and one
freeze of the emulator (tests/integration/test_faults.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from bench.drive import drain, local_stack, parked, send, tenant_keys, urls, verify
from bench.probes import AcceptLog
from shared.pipeline import SERVICES
from telemetry.up import LocalStack

EXTRAS = ("freeze emulator", "freeze postgres", "restart postgres", "restart stack")
AT = dict(zip(EXTRAS, (0.15, 0.35, 0.5, 0.65), strict=True))  # where in the run
RESTART_S = 60.0  # about what a whole-stack restart takes, to plan the gaps
# --short: the integration tests' quick buffers and redeliveries, so it fits in a test.
FAST = {"TELEMETRY_BUFFER_MAX_AGE_S": "1", "TELEMETRY_WORKER_WAIT_S": "1",
        "TELEMETRY_VISIBILITY_TIMEOUT_S": "10", "TELEMETRY_DRAIN_TIMEOUT_S": "5"}  # fmt: skip


@dataclass
class Fault:
    kind: str  # "kill" or one of EXTRAS
    target: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.target}".strip()


def schedule(rng: random.Random, rounds: int, extras: tuple[str, ...]) -> list[Fault]:
    """Every stage killed `rounds` times (each round in a new order), the extras
    in order at fixed fractions of the run: the whole-stack restart while
    traffic still flows."""
    kills = [Fault("kill", s) for _ in range(rounds) for s in rng.sample(SERVICES, len(SERVICES))]
    faults = list(kills)
    for i, kind in enumerate(extras):
        at = round(len(kills) * AT[kind]) + i
        faults.insert(min(at, len(faults)), Fault(kind))
    return faults


def postgres_pids(stack: LocalStack) -> list[int]:
    """The postmaster and its children (backends, checkpointer, ...)."""
    master = int(stack.pg.get_pid())
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == master:
                pids.append(int(stat.parent.name))
    return pids


def freeze(pids: list[int], seconds: float) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


class Injector:
    """Applies faults to a LocalStack; blocking, so it runs in a thread."""

    def __init__(self, stack: LocalStack, rng: random.Random, freeze_s: float) -> None:
        self.stack = stack
        self.rng = rng
        self.freeze_s = freeze_s
        self.crashes: list[str] = []  # services that exited by themselves

    def apply(self, fault: Fault, say: Callable[[str], object]) -> None:
        stack = self.stack
        if fault.kind == "kill":
            proc = stack.supervisor.children[fault.target]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(self.rng.uniform(0.2, 3.0))
            stack.supervisor.start(fault.target)
        elif fault.kind == "freeze emulator":
            assert stack.moto is not None
            freeze([stack.moto.pid], self.freeze_s)
        elif fault.kind == "freeze postgres":
            freeze(postgres_pids(stack), self.freeze_s)
        elif fault.kind == "restart postgres":
            url = stack.env["TELEMETRY_DATABASE_URL"]
            stack.pg.cleanup()
            time.sleep(self.rng.uniform(1.0, 5.0))
            stack.start_postgres()
            assert stack.env["TELEMETRY_DATABASE_URL"] == url, "PostgreSQL moved"
        elif fault.kind == "restart stack":
            stack.stop()
            stack.start(say=say)
        else:
            raise ValueError(fault.kind)

    def watch(self) -> None:
        """As `telemetry up` does: a service that exited by itself is started again."""
        self.crashes += self.stack.supervisor.restart_exited()


async def inject(injector: Injector, faults: list[Fault], span_s: float, done: list[Fault]) -> None:
    """The faults at random moments over about `span_s` seconds."""
    gap = span_s / (len(faults) + 1)
    start = time.monotonic()
    for fault in faults:
        until = time.monotonic() + injector.rng.uniform(0.5, 1.5) * gap
        while time.monotonic() < until:
            await asyncio.to_thread(injector.watch)
            await asyncio.sleep(0.5)
        print(f"  {time.monotonic() - start:6.1f} s  {fault}", flush=True)
        await asyncio.to_thread(injector.apply, fault, lambda line: print(f"    {line}"))
        done.append(fault)


async def run(args: argparse.Namespace, folder: Path) -> int:
    rng = random.Random(args.seed)
    stack = local_stack(folder, FAST if args.short else {})
    rounds, extras = (1, ("freeze emulator",)) if args.short else (args.rounds, EXTRAS)
    faults = schedule(rng, rounds, extras)
    duration_s = args.minutes * 60
    print(f"faults: {len(faults)} over {duration_s:.0f} s of traffic at {args.rate} events/s "
          f"to {args.tenants} tenants; stack in {folder}", flush=True)  # fmt: skip
    settings = await asyncio.to_thread(stack.start, lambda line: None)
    try:
        tenants = [f"fault-{i + 1}" for i in range(args.tenants)]
        keys = await tenant_keys(settings, tenants)
        log = AcceptLog()
        injector = Injector(stack, rng, args.freeze)
        done: list[Fault] = []
        sending = asyncio.create_task(
            send(urls(settings)["collector"], keys, args.rate, duration_s, args.seed, log)
        )
        busy_s = sum(args.freeze if "freeze" in f.kind else RESTART_S if "stack" in f.kind
                     else 2.0 for f in faults)  # fmt: skip
        await inject(injector, faults, max(duration_s * 0.9 - busy_s, duration_s * 0.3), done)
        stats = await sending
        while stack.supervisor.restart_exited():  # nothing left down before draining
            injector.crashes.append("?")
        settings = stack.settings or settings
        depths = await drain(settings, log.last(), timeout_s=600)
        events = log.events()
        async with httpx.AsyncClient(timeout=30) as http:
            verdict = await verify(http, urls(settings)["report"], keys, events)
        accepted = len({(e["tenant_id"], e["event_id"]) for e in events})
        print(f"faults injected {len(done)}, events accepted {accepted}, "
              f"tickets checked {verdict.tickets}, tickets wrong {len(verdict.wrong)}")  # fmt: skip
        dead = {k: v for k, v in depths.items() if v}
        n_parked = await parked(settings)
        print(f"  posted {len(events)} events (duplicates included), {stats.retries} retries, "
              f"{stats.rejected} rejected; reports wrong {len(verdict.reports)}; "
              f"services that crashed by themselves: {injector.crashes or 'none'}; "
              f"parked tickets {n_parked.total()}; queues not empty: {dead or 'none'}")  # fmt: skip
        for reason, n in n_parked.most_common(10):
            print(f"  parked {n}: {reason}")
        for line in verdict.details + verdict.reports[:20]:
            print(f"  wrong: {line}")
        if verdict.wrong or verdict.reports or dead:
            print(f"  logs in {folder / 'logs'}")
        return 1 if verdict.wrong or verdict.reports or dead else 0
    finally:
        await asyncio.to_thread(partial(stack.stop, save=False))  # its folder goes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="of traffic (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="kills of each stage (default 3)")
    parser.add_argument("--freeze", type=float, default=20.0, help="seconds frozen (default 20)")
    parser.add_argument("--rate", type=float, default=30.0, help="events/s (default 30)")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="one kill of each stage, one freeze")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    folder = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    code = 1
    try:
        code = asyncio.run(run(args, folder))
    finally:
        if code == 0 and not args.keep:  # kept when something was wrong, for its logs
            shutil.rmtree(folder, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
