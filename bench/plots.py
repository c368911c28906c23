"""The report's plots. matplotlib (extra `bench`) is imported inside the functions only,
with the Agg backend, so importing this module needs neither it nor a display."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.model import (
    COST_GOAL_USD,
    GOALS_P95_S,
    PATHS,
    Result,
    achieved,
    cpu_per_1000,
    percentile,
    step_cost,
)

COLORS = {"tickets": "tab:blue", "realtime": "tab:orange", "reports": "tab:green"}


def draw(result: Result, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    names = []
    for name, plot in (
        ("freshness.png", freshness),
        ("backlog.png", backlog),
        ("cpu.png", cpu),
        ("cost.png", cost),
    ):
        plot(result, out / name)
        names.append(name)
    return names


def freshness(result: Result, path: Path) -> None:
    """p50 (dashed) and p95 (solid) per read path against the rate reached; goals as lines."""
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rates = [achieved(s) for s in result.steps]
    for p in PATHS:
        for q, style in ((0.5, "--"), (0.95, "-")):
            values = [percentile(s.freshness[p], q) for s in result.steps]
            points = [
                (r, v)
                for r, v in zip(rates, values, strict=True)
                if v is not None and not math.isinf(v)
            ]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    style,
                    marker="o",
                    color=COLORS[p],
                    label=f"{p} p{round(q * 100)}",
                )
    for p, goal in GOALS_P95_S.items():
        ax.axhline(goal, color=COLORS[p], linestyle=":", linewidth=1)
        ax.annotate(
            f"{p} p95 goal",
            (0, goal),
            xycoords=("axes fraction", "data"),
            fontsize=8,
            color=COLORS[p],
            va="bottom",
        )
    _finish(fig, ax, path, "events/s reached", "seconds after the 202",
            "Freshness: accepted → visible", grid=True)  # fmt: skip


def backlog(result: Result, path: Path) -> None:
    """SQS messages in all stage queues over each step (the sending ends at the marker)."""
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for s in result.steps:
        if s.backlog:
            (line,) = ax.plot(
                [t for t, _ in s.backlog], [n for _, n in s.backlog], label=f"{s.rate:g}/s asked"
            )
            ax.axvline(s.send_s, color=line.get_color(), linestyle=":", linewidth=1)
    _finish(fig, ax, path, "seconds since the step began", "messages queued or in flight",
            "SQS backlog (dotted: sending ended)", grid=True)  # fmt: skip


def cpu(result: Result, path: Path) -> None:
    """CPU seconds per 1,000 events, stacked by process, per rate."""
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    per_k = [cpu_per_1000(s) for s in result.steps]
    labels = [f"{s.rate:g}/s" for s in result.steps]
    names = sorted({p for c in per_k for p in c}, key=lambda p: -sum(c.get(p, 0) for c in per_k))
    bottom = [0.0] * len(per_k)
    for name in names:
        values = [c.get(name, 0.0) for c in per_k]
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(xlabel="rate asked", ylabel="CPU s per 1,000 events", title="CPU per process")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def cost(result: Result, path: Path) -> None:
    """AWS request cost per million events, stacked by service, per rate; the goal as a line."""
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    by_service = []
    for s in result.steps:
        usd: dict[str, float] = {}
        for r in step_cost(s):
            usd[r.service] = usd.get(r.service, 0.0) + r.usd_per_million
        by_service.append(usd)
    labels = [f"{s.rate:g}/s" for s in result.steps]
    bottom = [0.0] * len(by_service)
    for service in sorted({k for c in by_service for k, v in c.items() if v > 0}):
        values = [c.get(service, 0.0) for c in by_service]
        ax.bar(labels, values, bottom=bottom, label=service)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.axhline(COST_GOAL_USD, color="red", linestyle=":", label="goal")
    _finish(fig, ax, path, "rate asked", "USD per million events",
            "AWS request cost at list prices")  # fmt: skip


def _finish(
    fig: object, ax: Any, path: Path, xlabel: str, ylabel: str, title: str, grid: bool = False
) -> None:
    """Labels, legend, grid and file: the same for every plot."""
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    if grid:
        ax.grid(alpha=0.3)
    _save(fig, path)


def _save(fig: object, path: Path) -> None:
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
