"""`report.md` and its plots from a `Result` of `bench.pipeline`.

Rendering is separate from measuring so that a report can be written again
from `results.json` without running the stack:

    .venv/bin/python -m bench.report [DIR]    # DIR/results.json -> DIR/report.md, DIR/*.png
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import orjson

from bench.model import (
    COST_GOAL_USD,
    GOALS_P95_S,
    PATHS,
    READ_PATH,
    THROUGHPUT_GOAL,
    Result,
    Step,
    achieved,
    backlog_growth,
    cores_busy,
    cost_per_million,
    cpu_per_1000,
    events_per_object,
    other_load,
    percentile,
    requests_per_s,
    saturation,
    split_op,
    step_cost,
    sustained,
)
from bench.prices import cost_rows

PROCESS_ORDER = (
    "collector",
    "dumper",
    "filter",
    "consolidator",
    "enricher",
    "loader",
    "report",
    "moto",
    "postgres",
    "bench",
)
PATH_TITLES = {"tickets": "/tickets/{id}", "realtime": "/realtime", "reports": "reports"}


def seconds(v: float | None) -> str:
    if v is None:
        return "-"
    return "not seen" if math.isinf(v) else f"{v:.1f}"


def freshness_cell(samples: list[float | None]) -> str:
    """p50 / p95 in seconds, and how many probes never showed."""
    cell = f"{seconds(percentile(samples, 0.5))} / {seconds(percentile(samples, 0.95))}"
    lost = sum(s is None for s in samples)
    return cell + (f" ({lost} of {len(samples)} not seen)" if lost else "")


def table(headers: list[str], rows: list[list[str]], right_from: int = 1) -> str:
    """A Markdown table, columns from `right_from` on aligned right (figures)."""
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"


def processes(steps: list[Step]) -> list[str]:
    seen = {p for s in steps for p in s.usage}
    return [p for p in PROCESS_ORDER if p in seen] + sorted(seen - set(PROCESS_ORDER))


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def summary(result: Result) -> str:
    best = sustained(result.steps)
    if best is None:
        return "No rate was sustained: see the steps below.\n"
    rate = achieved(best)
    rows = [["sustained end-to-end rate (events/s)", f"{rate:,.0f} (asked {best.rate:g})", "", ""]]
    for path in ("realtime", "reports"):
        p95 = percentile(best.freshness[path], 0.95)
        ok = p95 is not None and p95 <= GOALS_P95_S[path]
        rows.append(
            [
                f"freshness p95 to {PATH_TITLES[path]} at that rate (s)",
                seconds(p95),
                f"≤ {GOALS_P95_S[path]:g}",
                verdict(ok),
            ]
        )
    fresh = [s for s in result.steps if meets_freshness(s)]
    rows.append(
        [
            "highest rate meeting both freshness goals (events/s)",
            f"{achieved(max(fresh, key=achieved)):,.0f}" if fresh else "none",
            "",
            "",
        ]
    )
    cost = cost_per_million(best)
    rows.append(
        [
            f"AWS requests, USD per million events at that rate "
            f"({events_per_object(best):.0f} events per raw object)",
            f"{cost:.3f}",
            f"≤ {COST_GOAL_USD:.2f}",
            verdict(cost <= COST_GOAL_USD),
        ]
    )
    for b in result.baseline:
        ratio = rate / b.events_per_s
        rows.append(
            [
                f"throughput / old design with {b.workers} worker(s)",
                f"{ratio:.2f}x",
                f"≥ {THROUGHPUT_GOAL:g}x",
                verdict(ratio >= THROUGHPUT_GOAL),
            ]
        )
    c = result.correctness
    if c is not None:
        bad = c.wrong + c.missing
        rows.append(["wrong tickets (ours)", f"{bad} of {c.tickets}", "0", verdict(bad == 0)])
    for b in result.baseline:
        rows.append(
            [
                f"wrong tickets (old design, {b.workers} worker(s))",
                f"{b.wrong} of {b.tickets}",
                "",
                "",
            ]
        )
    out = table(["figure", "measured", "goal", ""], rows, right_from=1)
    shared = max((other_load(s) for s in result.steps), default=0.0)
    if shared > 0.2:
        out += (
            f"\n**The machine was shared:** other processes used up to {shared:.1f} of its "
            f"{result.machine.cores} cores during the steps, so the rates above are lower, "
            "and the latencies longer, than this stack gives on a quiet machine; the CPU "
            "seconds per event are the least affected figures.\n"
        )
    return out


def meets_freshness(step: Step) -> bool:
    p95 = {p: percentile(step.freshness[p], 0.95) for p in GOALS_P95_S}
    return all(v is not None and v <= GOALS_P95_S[p] for p, v in p95.items())


def steps_section(result: Result) -> str:
    rows = []
    for s in result.steps:
        reasons = saturation(s)
        rows.append(
            [
                f"{s.rate:g}",
                f"{achieved(s):.0f}",
                f"{s.events:,}",
                f"{s.tickets:,}",
                f"{backlog_growth(s):+.0f}",
                seconds(s.catch_up_s),
                *(freshness_cell(s.freshness[p]) for p in PATHS),
                "; ".join(reasons) or "sustained",
            ]
        )
    headers = [
        "asked/s",
        "achieved/s",
        "events",
        "tickets",
        "queue growth (msgs)",
        "reports exact after (s)",
        *(f"{PATH_TITLES[p]} p50 / p95 (s)" for p in PATHS),
        "verdict",
    ]
    return table(headers, rows)


def cpu_section(result: Result) -> str:
    steps = result.steps
    names = processes(steps)
    headers = ["process", *(f"{s.rate:g}/s" for s in steps)]
    per_k = [cpu_per_1000(s) for s in steps]
    rows = [[p, *(f"{c.get(p, 0):.3f}" for c in per_k)] for p in names]
    rows.append(["**all**", *(f"**{sum(c.values()):.3f}**" for c in per_k)])
    rows.append(["cores busy (these processes)", *(f"{cores_busy(s):.2f}" for s in steps)])
    rows.append(["cores busy (anything else)", *(f"{other_load(s):.2f}" for s in steps)])
    peaks = [[p, *(mib(s, p) for s in steps)] for p in names if p != "postgres"]
    return (
        "CPU seconds per 1,000 events (user + system, from the step's start until its queues "
        "were empty):\n\n" + table(headers, rows) + "\nPeak resident memory in MiB (VmHWM, reset "
        "at each step; a peak is a level, not a cost per event, so it is not divided):\n\n"
        + table(headers, peaks)
    )


def mib(step: Step, process: str) -> str:
    usage = step.usage.get(process)
    return "-" if usage is None or usage.peak_rss_mib is None else f"{usage.peak_rss_mib:.0f}"


def aws_section(result: Result) -> str:
    steps = result.steps
    at = sustained(steps) or (steps[-1] if steps else None)
    if at is None:
        return "No step ran.\n"
    rows = []
    for process in processes([at]):
        ops: Counter[tuple[str, str]] = Counter(
            {split_op(k): n for k, n in at.requests.get(process, {}).items()}
        )
        for r in cost_rows(ops, at.events):
            rows.append(
                [
                    process,
                    r.service,
                    r.operation,
                    f"{r.per_1000:.2f}",
                    f"{r.usd_per_million:.4f}" if process != READ_PATH else "(read path)",
                ]
            )
    notified = [r for r in step_cost(at) if r.operation.startswith("SendMessage (S3")]
    for r in notified:
        rows.append(
            [
                "(S3, modelled)",
                r.service,
                r.operation,
                f"{r.per_1000:.2f}",
                f"{r.usd_per_million:.4f}",
            ]
        )
    rows.append(["**total**", "", "", "", f"**{cost_per_million(at):.3f}**"])
    detail = table(
        ["process", "service", "operation", "per 1,000 events", "USD per million"],
        rows,
        right_from=3,
    )
    totals = [
        [
            f"{s.rate:g}",
            f"{events_per_object(s):.0f}",
            f"{sum(r.per_1000 for r in step_cost(s)):.0f}",
            f"{requests_per_s(s):.0f}",
            f"{cost_per_million(s):.3f}",
        ]
        for s in steps
    ]
    return (
        f"At {at.rate:g} events/s asked ({at.events:,} events), as counted by each service on "
        "its `/metrics`:\n\n"
        + detail
        + "\nEvery rate:\n\n"
        + table(
            [
                "asked/s",
                "events per raw object",
                "requests per 1,000 events (write path)",
                "requests/s to the emulator (all)",
                "USD per million events",
            ],
            totals,
        )
    )


def baseline_section(result: Result) -> str:
    best = sustained(result.steps)
    rows = [
        [
            str(b.workers),
            f"{b.events_per_s:,.0f}",
            f"{b.wrong} of {b.tickets}",
            f"{achieved(best) / b.events_per_s:.2f}x" if best else "-",
        ]
        for b in result.baseline
    ]
    events = result.baseline[0].events if result.baseline else 0
    return (
        f"`bench/baseline.py` (per event: read the ticket's state from PostgreSQL, update it, "
        f"write it back) on the same {events:,} events in the order the collector accepted "
        "them, after the stack stopped, against the same PostgreSQL:\n\n"
        + table(["workers", "events/s", "wrong tickets", "our sustained rate / its rate"], rows)
    )


def render(result: Result, plots: list[str]) -> str:
    m = result.machine
    c = result.correctness
    ours = (
        "not checked"
        if c is None
        else (
            f"{c.wrong} wrong and {c.missing} missing of {c.tickets} tickets"
            + (f" (e.g. {', '.join(c.examples)})" if c.examples else "")
        )
    )
    images = "".join(f"![{Path(p).stem}]({p})\n" for p in plots)
    settings = table(["setting", "value"], [[k, v] for k, v in result.settings.items()], 9)
    notes = "".join(f"- {n}\n" for n in result.notes) or "- none\n"
    return f"""# End-to-end benchmark of the local stack

Run {result.started}, {result.duration_s / 60:.0f} min, by `make bench`
(`python -m bench.pipeline`). Figures of the emulated stack on one small machine, not of
AWS: read them with the limits below.

**Machine:** {m.cores} cores ({m.cpu_model}), {m.ram_gib:g} GiB RAM, Linux {m.kernel},
Python {m.python}, moto {m.moto}.

**Limits of the emulator:** moto is one Python process that answers about 4-6 ms per
request (about 200 requests/s sequentially, 200 SQS messages/s, 250 S3 PUT/s on this kind
of machine); every AWS request of every stage goes through it, on the same cores as the
services, PostgreSQL and this benchmark (its traffic model, sender and probes). Its Kinesis
reads scan a shard from its start. So the sustained rate here is what fits on this machine
beside the emulator, not what the design does on AWS; the CPU per event of each of our
services is the figure that carries over.

## Summary

{summary(result)}
## Rate steps

At each rate, fresh tenants get {result.settings.get("traffic per rate", "")}. Freshness is
from the collector's 202 for a probe ticket to its showing on each path (polled every second:
late by up to 1 s, never early); "reports exact after" is from the last 202 until every
tenant's summary counts (tickets created, customer messages) equal the exact ones. A rate is
sustained when the SQS queues do not grow over the step by more than two flushes' worth of
messages, the sender was not held back by the collector (sending the traffic took at most
10% + 2 s longer than asked), and the reports caught up. The traffic model offers somewhat
less than the asked rate (its events per ticket are an estimate), hence "achieved".

{steps_section(result)}
{images}
## CPU and memory per stage

{cpu_section(result)}
`report` serves the benchmark's probes; `moto` and `postgres` are the emulated AWS and the
database (moto's share includes answering the probes' reads: two DynamoDB queries, the open
tickets and the day's quarters, for `/realtime` every second); `bench` is the sender, the
traffic model, the probes and the exact metrics of what was sent. "Anything else" is the rest
of the machine's CPU time over the same window (other users of the machine): when it is not
near 0, the figures are pessimistic.

## AWS requests per 1,000 events

{aws_section(result)}
Prices are the us-east-1 list prices of `bench/prices.py` (shared with `bench/cost.py`);
Kinesis is priced by volume and shard hours, not per request, so its lines cost 0 here. The
SQS message S3 sends per notification is made by the emulator, not by our clients: it is
counted as the `DeleteMessage` of the filter, consolidator and enricher (one per message).
The report service's requests come from the probes' polling and are left out of the total.

## Correctness

Ours: every ticket of the run read from `/tickets/{{id}}` and compared with the metric
engine on its distinct events (metrics, group stints, agent stints): {ours}.

## The old design

{baseline_section(result)}
## Settings

{settings}
## Notes

{notes}"""


def write_plots(result: Result, out: Path) -> list[str]:
    """PNG files in `out`; returns their names. matplotlib is imported only here (extra `bench`)."""
    from bench import plots

    return plots.draw(result, out)


def write(result: Result, out: Path) -> None:
    plots = write_plots(result, out) if result.steps else []
    (out / "report.md").write_text(render(result, plots))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    result = Result.from_json(orjson.loads((out / "results.json").read_bytes()))
    write(result, out)
    print(f"wrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
