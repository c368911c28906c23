"""`make bench-history`'s results as markdown tables and a plot (pure but for the files).

`python -m bench.history_report --out DIR A.json B.json` publishes the runs of
several invocations as one table (H = 0 measured in one, H = 30 and 365 in
another, say), each H under its own run's start and load.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import orjson

from shared.pipeline import SERVICES

STAGES = (*SERVICES, "postgres", "moto")
BUSY_ELSEWHERE = 0.2  # cores used by other processes that make figures pessimistic
KIB = 1024


def per_k(n: float, events: int) -> float:
    return n * 1000 / max(events, 1)


def p95(values: list[float | None]) -> float:
    """p95 of seconds, a probe never seen counting as infinitely late."""
    ordered = sorted(math.inf if v is None else v for v in values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else math.nan


def growth_per_min(samples: list[dict[str, Any]], send_s: float) -> float:
    """Slope (messages a minute) of all queues' depth over the second half of the sending:
    near 0 when the stages keep up, positive when a queue grows without bound."""
    pts = [(s["t"], sum(s["queues"].values())) for s in samples if send_s / 2 <= s["t"] <= send_s]
    if len(pts) < 2:
        return math.nan
    mx = sum(t for t, _ in pts) / len(pts)
    my = sum(d for _, d in pts) / len(pts)
    var = sum((t - mx) ** 2 for t, _ in pts)
    return 60 * sum((t - mx) * (d - my) for t, d in pts) / var if var else math.nan


def other_cores(r: dict[str, Any]) -> float:
    """Cores used by processes outside the benchmark during its window."""
    ours = sum(r["cpu_s"].values())
    return max(0.0, float(r["machine_cpu_s"] - ours) / float(max(r["window_s"], 1)))


def load_note(results: list[dict[str, Any]]) -> str:
    busy = [f"H = {r['days']} d: {other_cores(r):.2f}" for r in results]
    loaded = any(other_cores(r) > BUSY_ELSEWHERE for r in results)
    head = "LOADED MACHINE: figures not valid" if loaded else "quiet machine"
    return f"{head} (cores used by other processes: {', '.join(busy)})"


def summary_line(r: dict[str, Any]) -> str:
    ev = r["events"]
    cpu = ", ".join(f"{n} {per_k(r['cpu_s'].get(n, 0), ev):.2f}" for n in STAGES)
    f = r["freshness"]
    return (f"H = {r['days']} d: {ev} events; CPU s/1k: {cpu}; freshness p95 realtime "
            f"{p95(f['realtime']):.1f} s, reports {p95(f['reports']):.1f} s; queues "
            f"{growth_per_min(r['samples'], r['send_s']):+.1f} msg/min")  # fmt: skip


def _fmt(v: float | None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "∞" if math.isinf(v) else f"{v:,.{digits}f}"


def _table(title: str, results: list[dict[str, Any]], cell: Any, digits: int = 2) -> list[str]:
    heads = [f"H = {r['days']} d" for r in results]
    ratio = len(results) > 1
    lines = [f"| {title} | " + " | ".join(heads) + (" | last / first |" if ratio else " |"),
             "|---|" + "---:|" * (len(heads) + ratio)]  # fmt: skip
    for stage in STAGES:
        vals = [cell(r, stage) for r in results]
        if all(v is None or v == 0 for v in vals):
            continue
        row = f"| {stage} | " + " | ".join(_fmt(v, digits) for v in vals) + " |"
        if ratio:
            first, last = vals[0], vals[-1]
            row += f" {_fmt(last / first if first and last is not None else None)}x |"
        lines.append(row)
    return [*lines, ""]


def _s3(r: dict[str, Any], stage: str, direction: str) -> float | None:
    b = r["s3_bytes"].get(stage)
    return None if b is None else per_k(b.get(direction, 0), r["events"]) / KIB


def compact(out: dict[str, Any]) -> list[str]:
    """One row per stage, each cell the figures at every H (for docs/design.md)."""
    rs = out["results"]
    hs = " / ".join(f"{r['days']}" for r in rs)
    lines = [f"| stage (H = {hs} days) | CPU s / 1,000 events | AWS requests / 1,000 events "
             "| S3 KiB read + written / 1,000 events | peak RSS MiB |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for stage in STAGES:
        ev = [r["events"] for r in rs]
        cpu = [per_k(r["cpu_s"].get(stage, 0), e) for r, e in zip(rs, ev, strict=True)]
        req = [per_k(r["requests"][stage], e) if stage in r["requests"] else None
               for r, e in zip(rs, ev, strict=True)]  # fmt: skip
        s3 = [(_s3(r, stage, "read") or 0) + (_s3(r, stage, "written") or 0)
              if stage in r["s3_bytes"] else None for r in rs]  # fmt: skip
        rss = [r["peak_rss_mib"].get(stage) for r in rs]
        if not any(cpu):
            continue
        lines.append(f"| {stage} | " + " | ".join(
            " / ".join(_fmt(v, d) for v in vals)
            for vals, d in ((cpu, 2), (req, 1), (s3, 0), (rss, 0))) + " |")  # fmt: skip
    return lines


def _timing(r: dict[str, Any], key: str) -> str:
    total, n = r.get("timings", {}).get(key, [0.0, 0.0])
    return f"{n:.0f}, {total / n:.3f}" if n else "-"


def _ceiling(r: dict[str, Any]) -> str:
    """Batches of one tenant hold its hot rows one at a time: at most 1 / held
    batches a second, each of the run's mean size in events."""
    held, n = r.get("timings", {}).get("telemetry_loader_hot_rows_held_seconds", [0.0, 0.0])
    _, batches = r.get("timings", {}).get("telemetry_handle_seconds telemetry-load-reports",
                                          [0.0, 0.0])  # fmt: skip
    if not (held and n and batches):
        return "-"
    return f"{r['events'] / batches / (held / n):,.0f}"


# The goals (docs/design.md, "Cost as history grows").
FLAT_MSG_PER_MIN = 1.0  # queues' slope over the 2nd half of the traffic, all queues together
FRESH_S = {"realtime": 10.0, "reports": 30.0}
HISTORY_RATIO = 1.25  # each stage's CPU and AWS requests per event, last H over first
CONSOLIDATOR_MIB = 512
REPORT_MS = 50.0
JUDGED = (*(s for s in SERVICES if s != "report"), "postgres")  # the report service only probes


def goals(out: dict[str, Any]) -> list[str]:
    """Each goal, its figure and met or not, so a run says plainly what it shows."""
    rs = out["results"]
    first, last = rs[0], rs[-1]
    rows: list[tuple[str, str, bool]] = []
    for r in rs:
        h = f"H = {r['days']} d" + (f", {r['minutes']:g} min" if "minutes" in r else "")
        slope = growth_per_min(r["samples"], r["send_s"])
        rows.append((f"{h}: queues flat (messages/min, 2nd half) and drained",
                     f"{_fmt(slope, 1)}, {'drained' if r['drained'] else 'NOT drained'}",
                     r["drained"] and slope <= FLAT_MSG_PER_MIN))  # fmt: skip
        for path, limit in FRESH_S.items():
            v = p95(r["freshness"][path])
            rows.append((f"{h}: freshness p95 to {path} ≤ {limit:g} s", _fmt(v, 1), v <= limit))
        rss = r["peak_rss_mib"].get("consolidator")
        rows.append((f"{h}: consolidator peak RSS ≤ {CONSOLIDATOR_MIB} MiB", _fmt(rss, 0),
                     rss is not None and rss <= CONSOLIDATOR_MIB))  # fmt: skip
        for case, ms in r["report_p95_ms"].items():
            rows.append((f"{h}: report p95 ≤ {REPORT_MS:g} ms, {case}", _fmt(ms, 1),
                         ms <= REPORT_MS))  # fmt: skip
    if len(rs) > 1:
        for what, key in (("CPU", "cpu_s"), ("AWS requests", "requests")):
            for stage in JUDGED:
                if stage not in first[key] or not first[key][stage]:
                    continue
                ratio = (per_k(last[key][stage], last["events"])
                         / per_k(first[key][stage], first["events"]))  # fmt: skip
                rows.append((f"{stage}: {what} per event, H = {last['days']} d over "
                             f"H = {first['days']} d ≤ {HISTORY_RATIO}x", f"{ratio:.2f}x",
                             ratio <= HISTORY_RATIO))  # fmt: skip
    return [
        "| goal | measured | |",
        "|---|---:|---|",
        *(f"| {g} | {v} | {'met' if ok else '**not met**'} |" for g, v, ok in rows),
    ]


def tables(out: dict[str, Any]) -> list[str]:
    rs = out["results"]
    lines = _table(
        "CPU s per 1,000 events",
        rs,
        lambda r, s: per_k(r["cpu_s"][s], r["events"]) if s in r["cpu_s"] else None,
    )
    lines += _table(
        "AWS requests per 1,000 events",
        rs,
        lambda r, s: per_k(r["requests"][s], r["events"]) if s in r["requests"] else None,
    )
    lines += _table("S3 KiB read per 1,000 events", rs, lambda r, s: _s3(r, s, "read"), 1)
    lines += _table("S3 KiB written per 1,000 events", rs, lambda r, s: _s3(r, s, "written"), 1)
    lines += _table("peak RSS (MiB)", rs, lambda r, s: r["peak_rss_mib"].get(s), 0)  # fmt: skip
    lines += ["| | " + " | ".join(f"H = {r['days']} d" for r in rs) + " |",
              "|---|" + "---:|" * len(rs)]  # fmt: skip
    rows: list[tuple[str, Any]] = [
        ("events accepted", lambda r: f"{r['events']:,}"),
        ("sent in (s) / drained",
         lambda r: f"{r['send_s']:.0f} / {'yes' if r['drained'] else 'NO'}"),
        ("PostgreSQL KiB read per 1,000 events (into buffers)",
         lambda r: _fmt(per_k(r["pg"]["read_bytes"], r["events"]) / KIB, 1)),
        ("PostgreSQL KiB hit in buffers per 1,000 events",
         lambda r: _fmt(per_k(r["pg"]["hit_bytes"], r["events"]) / KIB, 1)),
        ("PostgreSQL KiB written per 1,000 events (blocks)",
         lambda r: _fmt(per_k(r["pg"]["written_bytes"], r["events"]) / KIB, 1)),
        ("PostgreSQL WAL KiB per 1,000 events",
         lambda r: _fmt(per_k(r["pg"]["wal_bytes"], r["events"]) / KIB, 1)),
        ("freshness p95 to /realtime (s)", lambda r: _fmt(p95(r["freshness"]["realtime"]), 1)),
        ("freshness p95 to reports (s)", lambda r: _fmt(p95(r["freshness"]["reports"]), 1)),
        ("queues' growth, 2nd half of the traffic (messages/min)",
         lambda r: _fmt(growth_per_min(r["samples"], r["send_s"]), 1)),
        ("deepest queue sample (all queues)",
         lambda r: str(max((sum(s["queues"].values()) for s in r["samples"]), default=0))),
        *[(f"report p95 (ms): {case}", lambda r, c=case: _fmt(r["report_p95_ms"].get(c), 1))
          for case in rs[-1]["report_p95_ms"]],
        ("history: tickets / rollup rows", lambda r: f"{r['written']['tickets']:,} / "
         f"{r['written']['rollup_rows']:,}"),
        ("history written in (s): store / PostgreSQL",
         lambda r: f"{r['written']['store_s']:.0f} / {r['written']['pg_s']:.0f}"),
        ("report loader: batches, mean s per batch",
         lambda r: _timing(r, "telemetry_handle_seconds telemetry-load-reports")),
        ("report loader: hot rollup rows held (serialised per tenant), mean s per batch",
         lambda r: _timing(r, "telemetry_loader_hot_rows_held_seconds")),
        ("one tenant's ceiling from that part (events/s, any number of loaders)", _ceiling),
        ("messages retried or dead-lettered",
         lambda r: ", ".join(f"{k} {v}" for k, v in r.get("outcomes", {}).items()) or "none"),
        ("other processes' load (cores)", lambda r: f"{other_cores(r):.2f}"),
    ]  # fmt: skip
    seen = sorted({k for r in rs for k, v in r["pg"].items() if k.startswith("table ") and v})
    for t in seen:
        rows.append(
            (
                f"PostgreSQL KiB of {t[6:]} blocks read or hit per 1,000 events",
                lambda r, t=t: _fmt(per_k(r["pg"].get(t, 0), r["events"]) / KIB, 1),
            )
        )
    lines += [f"| {name} | " + " | ".join(get(r) for r in rs) + " |" for name, get in rows]
    return lines


def combine(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """One output of several runs' results, in order of H; the machine must be the same."""
    machines = {orjson.dumps(o["machine"], option=orjson.OPT_SORT_KEYS) for o in outs}
    if len(machines) != 1:
        raise ValueError("runs of different machines are not one table")
    results = sorted((r for o in outs for r in o["results"]), key=lambda r: r["days"])
    args = {**outs[0]["args"], "history": [r["days"] for r in results],
            "minutes": [r["minutes"] for r in results]}  # fmt: skip
    return {
        "started": " and ".join(o["started"] for o in outs),
        "machine": outs[0]["machine"],
        "args": args,
        "load_note": load_note(results),
        "results": results,
    }


def save(out: dict[str, Any], where: Path) -> None:
    """history.json, and the tables and plot written from it."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "history.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    write(out, where)


def write(out: dict[str, Any], where: Path) -> None:
    m, a = out["machine"], out["args"]
    md = [
        "# make bench-history",
        "",
        f"Run {out['started']}: {out['load_note']}.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, moto {m['moto']}.",
        f"Settings: history {', '.join(str(d) for d in a['history'])} days at "
        f"{a['scale'] * 10_000:,.0f} tickets a day; live traffic {a['rate']:g} events/s for "
        f"{'/'.join(f'{m:g}' for m in a['minutes'])} min (per H), one tenant, 8 groups; "
        "default service settings.",
        "",
        *goals(out),
        "",
        *compact(out),
        "",
        *tables(out),
        "",
        "![history](history.png)",
        "",
    ]
    (where / "history.md").write_text("\n".join(md))
    plot(out, where / "history.png")


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = out["results"]
    fig, grid = plt.subplots(2, 2, figsize=(12, 8))
    axes = grid.flatten()
    xs = list(range(len(rs)))
    labels = [f"{r['days']} d" for r in rs]
    for ax, title, field in (
        (axes[0], "CPU s per 1,000 events", "cpu_s"),
        (axes[1], "AWS requests per 1,000 events", "requests"),
    ):
        for stage in STAGES:
            ys = [per_k(r[field].get(stage, 0), r["events"]) for r in rs]
            if any(ys):
                ax.plot(xs, ys, marker="o", label=stage)
        ax.set_xticks(xs, labels)
        ax.set_xlabel("history")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    for r in rs:
        ts = [s["t"] / 60 for s in r["samples"]]
        total = [sum(s["queues"].values()) for s in r["samples"]]
        axes[2].plot(ts, total, label=f"H = {r['days']} d")
    axes[2].set_title("messages in all queues")
    last = rs[-1]
    for queue in last["samples"][0]["queues"] if last["samples"] else []:
        ts = [s["t"] / 60 for s in last["samples"]]
        axes[3].plot(ts, [s["queues"][queue] for s in last["samples"]], label=queue)
    axes[3].set_title(f"messages by queue, H = {last['days']} d")
    for ax in axes[2:]:
        ax.set_xlabel("minutes since the traffic began")
        ax.legend(fontsize=7)
    fig.suptitle(f"make bench-history, {out['started']}: {out['load_note']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="publish several bench-history runs as one")
    parser.add_argument("runs", nargs="+", type=Path, help="history.json files")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    save(combine([orjson.loads(p.read_bytes()) for p in args.runs]), args.out)


if __name__ == "__main__":
    main()
