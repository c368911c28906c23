"""The pure parts of `make bench`: percentiles, per-1,000 figures, verdicts, parsing, Markdown."""

from __future__ import annotations

import math

import orjson
import pytest
from prometheus_client.exposition import generate_latest

from bench.model import (
    Baseline,
    Correctness,
    Machine,
    Result,
    Step,
    Usage,
    backlog_growth,
    cost_per_million,
    cpu_per_1000,
    per_1000,
    percentile,
    pipeline_requests,
    saturation,
    sustained,
)
from bench.prices import S3_CLASS_A, S3_NOTIFICATION, cost_rows
from bench.report import freshness_cell, render
from bench.stack import parse_kib, parse_metrics, parse_stat
from shared.aws import RequestCounter
from shared.observe import MESSAGES, Exposition


def step(rate: float, **over: object) -> Step:
    fields: dict[str, object] = {
        "rate": rate,
        "send_s": 60.0,
        "events": 2000,
        "tickets": 130,
        "tenants": 4,
        "freshness": {
            "tickets": [5.0, 6.0, 7.0],
            "realtime": [4.0, 6.0, 8.0],
            "reports": [5.0, 9.0, 12.0],
        },
        "backlog": [(float(t), t % 5) for t in range(0, 80, 2)],  # a flush sawtooth, no growth
        "catch_up_s": 9.0,
        "usage": {
            "filter": Usage(0.5, 100.0),
            "moto": Usage(3.0, 90.0),
            "postgres": Usage(1.0, None),
        },
        "requests": {
            "dumper": {"s3 PutObject": 20, "kinesis GetRecords": 300},
            "filter": {"s3 PutObject": 20, "sqs DeleteMessage": 20},
            "consolidator": {"sqs DeleteMessage": 20},
            "enricher": {"sqs DeleteMessage": 20},
            "report": {"dynamodb Query": 500},
        },
        "window_s": 80.0,
        "asked_s": 60.0,
    }
    fields.update(over)
    return Step(**fields)  # type: ignore[arg-type]


def test_percentile_is_nearest_rank_and_a_probe_never_seen_is_infinitely_late() -> None:
    assert percentile([], 0.95) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(v) for v in range(1, 21)], 0.95) == 19.0
    assert percentile([1.0, None], 0.5) == 1.0
    assert percentile([1.0, None], 0.95) == math.inf
    assert freshness_cell([1.0, 2.0, None]) == "2.0 / not seen (1 of 3 not seen)"


def test_per_1000_and_cpu_per_1000() -> None:
    assert per_1000(30, 2000) == 15.0
    assert per_1000(5, 0) == 0.0
    assert cpu_per_1000(step(100)) == {"filter": 0.25, "moto": 1.5, "postgres": 0.5}


def test_queue_growth_is_the_slope_over_the_sending_window() -> None:
    assert abs(backlog_growth(step(100))) < 2
    growing = step(100, backlog=[(float(t), t // 2) for t in range(0, 80, 2)])
    assert backlog_growth(growing) == pytest.approx(60 / 2, rel=0.05)  # only t <= send_s
    assert saturation(growing) == ["queues grew by 30 messages"]


def test_sustained_is_the_last_rate_before_the_first_saturated_one() -> None:
    late = step(400, send_s=90.0)
    assert saturation(late) == ["sending 60 s of traffic took 90 s"]
    lost = step(800, catch_up_s=None)
    assert saturation(lost) == ["reports did not catch up"]
    steps = [step(100), step(200), late, step(800)]
    best = sustained(steps)
    assert best is not None and best.rate == 200
    assert sustained([late]) is None


def test_cost_counts_the_write_path_and_the_notifications_s3_sends() -> None:
    counts = pipeline_requests(step(100))
    assert ("dynamodb", "Query") not in counts  # the report service: the probes' polling
    assert counts[S3_NOTIFICATION] == 60  # one DeleteMessage per notified message
    assert counts[("s3", "PutObject")] == 40
    [put] = [r for r in cost_rows({("s3", "PutObject"): 40}, 2000)]
    assert put.per_1000 == 20.0
    assert put.usd_per_million == pytest.approx(20_000 * S3_CLASS_A)
    sqs = 0.40 / 1e6 * 30 * 1000  # 60 SQS requests per 2,000 events, DeleteMessage + notices
    s3 = 40 / 2000 * 1e6 * S3_CLASS_A
    assert cost_per_million(step(100)) == pytest.approx(s3 + 2 * sqs)


def test_parsers_of_metrics_and_proc() -> None:
    text = (
        "# HELP telemetry_aws_requests_total AWS requests made by this process.\n"
        "# TYPE telemetry_aws_requests_total counter\n"
        'telemetry_aws_requests_total{service="s3",operation="PutObject"} 12.0\n'
        'telemetry_aws_requests_total{operation="DeleteMessage",service="sqs"} 3.0\n'
        'telemetry_messages_total{queue="telemetry-filter",outcome="done"} 3.0\n'
        'telemetry_messages_total{queue="telemetry-filter",outcome="retried"} 1.0\n'
        'telemetry_handle_seconds_bucket{stage="filter",queue="telemetry-filter",le="0.5"} 4.0\n'
        'telemetry_handle_seconds_sum{stage="filter",queue="telemetry-filter"} 1.5\n'
        'telemetry_handle_seconds_count{stage="filter",queue="telemetry-filter"} 4.0\n'
    )
    scraped = parse_metrics(text)
    assert scraped.requests == {"s3 PutObject": 12, "sqs DeleteMessage": 3}
    assert scraped.outcomes == {"telemetry-filter done": 3, "telemetry-filter retried": 1}
    assert scraped.timings == {"telemetry_handle_seconds telemetry-filter": [1.5, 4.0]}
    stat = "42 (python (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 7 3 20 0 5 0"
    assert parse_stat(stat) == (150, 25, 7, 3)
    assert parse_kib("VmPeak:\t  2000 kB\nVmHWM:\t  1536 kB\n", "VmHWM") == 1536
    assert parse_kib("VmRSS:\t  1 kB\n", "VmHWM") is None


def test_the_parser_reads_what_the_services_expose() -> None:
    """The services' own exposition (prometheus_client), not a hand-written copy."""
    counter = RequestCounter()
    counter.counts[("s3", "PutObject")] = 7
    counter.s3_bytes[("PutObject", "written")] = 700
    counter.s3_bytes[("GetObject", "read")] = 50
    MESSAGES.labels("parser-check", "done").inc(2)
    scraped = parse_metrics(generate_latest(Exposition([counter])).decode())
    assert scraped.requests == {"s3 PutObject": 7}
    assert scraped.s3_bytes == {"written": 700, "read": 50}
    assert scraped.outcomes["parser-check done"] >= 2


def result() -> Result:
    return Result(
        started="2026-11-27 08:00 UTC",
        duration_s=600,
        machine=Machine(2, 23.5, "AMD EPYC", "6.1", "3.11.7", "5.2.5"),
        settings={"tenants per rate": "4"},
        steps=[step(100), step(200, catch_up_s=None)],
        correctness=Correctness(tickets=260, wrong=0, missing=0, examples=[]),
        baseline=[Baseline(1, 2000.0, 19, 260, 4000), Baseline(8, 8000.0, 31, 260, 4000)],
        notes=["200/s: reports not exact after 120 s"],
    )


def test_markdown_states_the_figures_and_the_goals() -> None:
    md = render(result(), ["freshness.png"])
    assert "2 cores (AMD EPYC), 23.5 GiB RAM" in md
    assert "| sustained end-to-end rate (events/s) | 33 (asked 100) |" in md
    assert "| freshness p95 to /realtime at that rate (s) | 8.0 | ≤ 10 | met |" in md
    assert "| throughput / old design with 8 worker(s) | 0.00x | ≥ 10x | **not met** |" in md
    assert "| wrong tickets (ours) | 0 of 260 | 0 | met |" in md
    assert "| 200 | 33 | 2,000 | 130 | -1 | - |" in md  # the saturated step, and why
    assert "reports did not catch up" in md
    assert "![freshness](freshness.png)" in md
    assert "- 200/s: reports not exact after 120 s" in md


def test_results_survive_json() -> None:
    original = result()
    assert Result.from_json(orjson.loads(orjson.dumps(original.to_json()))) == original
