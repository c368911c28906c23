"""`make bench-history` judges each goal from the figures it prints: a run that
missed one must say so, whatever else it met."""

from __future__ import annotations

from typing import Any

import pytest

from bench.history_report import combine, goals


def run(days: int, loader_cpu_s: float, slope_depths: list[int]) -> dict[str, Any]:
    return {
        "days": days,
        "minutes": 10.0,
        "events": 1000,
        "send_s": 100.0,
        "drained": True,
        "samples": [{"t": 50.0 + 10 * i, "queues": {"q": d}} for i, d in enumerate(slope_depths)],
        "freshness": {"realtime": [1.0] * 18 + [None, None], "reports": [2.0] * 20},
        "peak_rss_mib": {"consolidator": 175.0},
        "report_p95_ms": {"agents, 90 days": 12.0},
        "cpu_s": {"loader": loader_cpu_s, "filter": 0.05},
        "requests": {"loader": 200, "filter": 2},
    }


def verdicts(out: dict[str, Any]) -> dict[str, str]:
    rows = goals(out)[2:]
    return {r.split(" | ")[0].lstrip("| "): r.rsplit(" | ", 1)[1].rstrip(" |") for r in rows}


def test_each_goal_is_judged_from_the_runs() -> None:
    flat, growing = [3, 3, 3, 3, 3, 3], [3, 4, 5, 6, 7, 8]
    out = {"args": {}, "results": [run(0, 1.0, flat), run(365, 1.3, growing)]}
    v = verdicts(out)
    assert v["H = 0 d, 10 min: queues flat (messages/min, 2nd half) and drained"] == "met"
    assert v["H = 365 d, 10 min: queues flat (messages/min, 2nd half) and drained"] == "**not met**"
    # two probes in 20 never seen: the p95 is one of them, infinitely late
    assert v["H = 0 d, 10 min: freshness p95 to realtime ≤ 10 s"] == "**not met**"
    assert v["H = 0 d, 10 min: freshness p95 to reports ≤ 30 s"] == "met"
    assert v["loader: CPU per event, H = 365 d over H = 0 d ≤ 1.25x"] == "**not met**"
    assert v["filter: CPU per event, H = 365 d over H = 0 d ≤ 1.25x"] == "met"
    assert v["H = 365 d, 10 min: report p95 ≤ 50 ms, agents, 90 days"] == "met"


def test_runs_of_separate_invocations_combine_in_order_of_history() -> None:
    machine = {"cores": 2}
    a = {"started": "A", "machine": machine, "args": {"rate": 400.0},
         "results": [run(365, 1.3, [3] * 6)]}  # fmt: skip
    b = {"started": "B", "machine": machine, "args": {"rate": 400.0},
         "results": [run(0, 1.0, [3] * 6)]}  # fmt: skip
    for r in (*a["results"], *b["results"]):
        r |= {"cpu_s": {"loader": 1.0}, "machine_cpu_s": 1.0, "window_s": 100.0}
    out = combine([a, b])
    assert [r["days"] for r in out["results"]] == [0, 365]
    assert out["args"]["history"] == [0, 365] and out["args"]["minutes"] == [10.0, 10.0]
    assert "loader: CPU per event, H = 365 d over H = 0 d ≤ 1.25x" in verdicts(out)
    with pytest.raises(ValueError, match="different machines"):
        combine([a, {**b, "machine": {"cores": 4}}])
