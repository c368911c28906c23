"""What one run of `bench.pipeline` measured, and the arithmetic its report does.

Pure: no clock, no network, no processes, so unit tests drive it with made-up
figures. The run is saved as JSON (`results.json`) so the report can be
rendered again without running the stack.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.prices import S3_NOTIFICATION, CostRow, cost_rows

PATHS = ("tickets", "realtime", "reports")  # read paths probed for freshness
GOALS_P95_S = {"realtime": 10.0, "reports": 30.0}
COST_GOAL_USD = 0.50  # AWS requests per million events
THROUGHPUT_GOAL = 10.0  # times the old design
WARM_UP_S = 12.0  # two dumper flushes and a little: the queues reach their level
LATE_SENDER = 1.1  # sending took this much longer than asked (+2 s): the collector pushed back
READ_PATH = "report"  # its requests are the benchmark's polling, not a cost per event
NOTIFIED_BY_S3 = ("filter", "consolidator", "enricher")  # each of their messages is a notification


@dataclass
class Machine:
    cores: int
    ram_gib: float
    cpu_model: str
    kernel: str
    python: str
    moto: str


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mib: float | None  # None where not meaningful (PostgreSQL: many processes)


@dataclass
class Step:
    """One rate: traffic for a while, then everything it sent drained."""

    rate: float  # events/s asked of the sender
    send_s: float  # from the first post to the last 202
    events: int  # accepted by the collector: duplicates and probes included
    tickets: int
    tenants: int
    freshness: dict[str, list[float | None]]  # path -> s from 202 to visible; None: never seen
    backlog: list[tuple[float, int]]  # (s since the step began, SQS messages in all queues)
    catch_up_s: float | None  # last 202 -> every report count exact; None: not within the limit
    usage: dict[str, Usage]  # process -> CPU and peak RSS over the step and its drain
    requests: dict[str, dict[str, int]]  # process -> "service operation" -> AWS requests
    outcomes: dict[str, int] = field(default_factory=dict)  # worker outcomes except "done"
    window_s: float = 0.0  # from the step's start until its work was drained
    asked_s: float = 0.0  # seconds of traffic asked of the sender
    machine_cpu_s: float = 0.0  # CPU seconds of the whole machine over the window


@dataclass
class Correctness:
    tickets: int
    wrong: int
    missing: int
    examples: list[str]


@dataclass
class Baseline:
    workers: int
    events_per_s: float
    wrong: int
    tickets: int
    events: int


@dataclass
class Result:
    started: str
    duration_s: float
    machine: Machine
    settings: dict[str, str]
    steps: list[Step]
    correctness: Correctness | None
    baseline: list[Baseline]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Result:
        steps = []
        for s in d["steps"]:
            usage = {k: Usage(**u) for k, u in s["usage"].items()}
            backlog = [(t, n) for t, n in s["backlog"]]
            steps.append(Step(**{**s, "usage": usage, "backlog": backlog}))
        return cls(
            **{
                **d,
                "machine": Machine(**d["machine"]),
                "steps": steps,
                "correctness": Correctness(**d["correctness"]) if d["correctness"] else None,
                "baseline": [Baseline(**b) for b in d["baseline"]],
            }
        )


def percentile(samples: list[float | None], q: float) -> float | None:
    """Nearest rank; a sample never seen counts as infinitely late (so it can be the answer)."""
    if not samples:
        return None
    ordered = sorted(math.inf if s is None else s for s in samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def per_1000(n: float, events: int) -> float:
    return n * 1000 / events if events else 0.0


def achieved(step: Step) -> float:
    return step.events / step.send_s if step.send_s > 0 else 0.0


def backlog_growth(step: Step) -> float:
    """Messages gained over the sending window: the least-squares slope times its length.

    The first `WARM_UP_S` are left out: queues start empty and fill to their
    level within a couple of flushes, which is not growth.
    """
    points = [(t, n) for t, n in step.backlog if WARM_UP_S <= t <= step.send_s]
    if len(points) < 3:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    mn = sum(n for _, n in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    slope = sum((t - mt) * (n - mn) for t, n in points) / var if var else 0.0
    return slope * step.send_s


def saturation(step: Step) -> list[str]:
    """Why this rate is not sustained; empty when it is.

    Queues "grow" when they gain more than two flushes' worth of messages (one
    object per tenant per flush) over the step: short of that it is the
    sawtooth of the dumper's flushes. The sender posts what the traffic model
    has due; it runs late only when the collector answers too slowly.
    """
    reasons = []
    growth = backlog_growth(step)
    if growth > 2 * step.tenants:
        reasons.append(f"queues grew by {growth:.0f} messages")
    if step.asked_s and step.send_s > LATE_SENDER * step.asked_s + 2:
        reasons.append(f"sending {step.asked_s:g} s of traffic took {step.send_s:.0f} s")
    if step.catch_up_s is None:
        reasons.append("reports did not catch up")
    return reasons


def sustained(steps: list[Step]) -> Step | None:
    """The highest rate reached before the first saturated step."""
    best = None
    for step in sorted(steps, key=lambda s: s.rate):
        if saturation(step):
            break
        best = step
    return best


def split_op(key: str) -> tuple[str, str]:
    service, _, op = key.partition(" ")
    return service, op


def pipeline_requests(step: Step) -> Counter[tuple[str, str]]:
    """AWS requests of the write path, plus the SQS messages S3 sends for notifications."""
    counts: Counter[tuple[str, str]] = Counter()
    for process, ops in step.requests.items():
        if process != READ_PATH:
            counts.update({split_op(k): n for k, n in ops.items()})
    counts[S3_NOTIFICATION] = sum(
        step.requests.get(p, {}).get("sqs DeleteMessage", 0) for p in NOTIFIED_BY_S3
    )
    return counts


def step_cost(step: Step) -> list[CostRow]:
    return cost_rows(pipeline_requests(step), step.events)


def cost_per_million(step: Step) -> float:
    return sum(r.usd_per_million for r in step_cost(step))


def events_per_object(step: Step) -> float:
    """Events per raw object: what the S3 and SQS lines of the cost depend on."""
    objects = step.requests.get("dumper", {}).get("s3 PutObject", 0)
    return step.events / objects if objects else 0.0


def cpu_per_1000(step: Step) -> dict[str, float]:
    return {p: per_1000(u.cpu_s, step.events) for p, u in step.usage.items()}


def cores_busy(step: Step) -> float:
    """CPU seconds of every process per second of the step: how full the machine was."""
    return sum(u.cpu_s for u in step.usage.values()) / step.window_s if step.window_s else 0.0


def other_load(step: Step) -> float:
    """Cores used by processes that are not the stack's nor the benchmark's (0: a quiet machine)."""
    if not step.window_s or not step.machine_cpu_s:
        return 0.0
    ours = sum(u.cpu_s for u in step.usage.values())
    return max(0.0, step.machine_cpu_s - ours) / step.window_s


def requests_per_s(step: Step) -> float:
    """Requests the emulator answered per second of the step (every process counted)."""
    total = sum(n for ops in step.requests.values() for n in ops.values())
    return total / step.window_s if step.window_s else 0.0
