"""AWS requests per 1,000 events of the whole pipeline, and what they cost.

Runs every stage in one process against a moto server and a real PostgreSQL,
with the default settings, at a target rate, on steady-state traffic (ticket
lives of about ten minutes, interleaved as in a live contact centre). Every
request goes through one counter, so the figures are counted, not modelled;
the only modelled line is the SQS SendMessage that S3 makes for each
notification (the emulator makes it, not our clients).

    .venv/bin/python -m bench.cost [--rate 1000] [--seconds 60] [--tenants 10]

It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench.prices import S3_NOTIFICATION, cost_rows
from bench.stack import stop_on_sigterm
from services.collector.stream import pack_records, put_all
from services.consolidator import handler as consolidator
from services.consolidator.store import make_store
from services.dumper.dumper import Dumper, DumperConfig
from services.enricher import handler as enricher
from services.filter import handler as filter_stage
from services.loader import realtime, reports
from shared.aws import Aws, open_aws, with_account
from shared.db import make_engine
from shared.events import format_ms, to_ms
from shared.layout import CONSOLIDATED, FILTERED, RAW
from shared.pipeline import (
    CONSOLIDATOR_QUEUE,
    ENRICHER_QUEUE,
    FILTER_QUEUE,
    REALTIME_QUEUE,
    REPORTS_QUEUE,
    queue_names,
)
from shared.service import every, queue_backlog, queue_worker
from shared.settings import Settings
from telemetry.provision import provision
from telemetry.simulate import _life
from telemetry.up import free_port, start_moto, start_postgres

NOTIFIED = (RAW, FILTERED, CONSOLIDATED)


def steady_traffic(
    rng: random.Random, tenants: list[str], rate: float, seconds: float
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(offset ms, event) in time order: lives started up to 15 min before the window."""
    lives_per_s = rate / 15.5  # about 15.5 events per simulated life
    span_s = 15 * 60 + seconds
    heap: list[tuple[int, int, dict[str, Any]]] = []
    for n in range(int(lives_per_s * span_s)):
        start = int((rng.uniform(-15 * 60, seconds)) * 1000)
        for e in _life(rng, rng.choice(tenants), n):
            t = start + e["occurred_at"]
            if 0 <= t < seconds * 1000:
                heapq.heappush(heap, (t, n, e))
    while heap:
        yield heapq.heappop(heap)[::2]


async def send(
    aws: Aws, settings: Settings, tenants: list[str], rate: float, seconds: float
) -> int:
    """Posts what the collector would: batches of up to 200 events per tenant."""
    events = list(steady_traffic(random.Random(3), tenants, rate, seconds))
    start = time.monotonic()
    base = to_ms(datetime.now(UTC))
    pending: dict[str, list[bytes]] = {t: [] for t in tenants}
    sent = 0
    next_flush = 0.2
    for offset, e in events:
        e["occurred_at"] = format_ms(base + offset)
        pending[e["tenant_id"]].append(orjson.dumps(e))
        if offset / 1000 >= next_flush:
            await asyncio.sleep(max(0.0, offset / 1000 - (time.monotonic() - start)))
            for tenant, lines in pending.items():
                for i in range(0, len(lines), 200):
                    await put_all(
                        aws.kinesis, settings.stream, pack_records(tenant, lines[i : i + 200])
                    )
                sent += len(lines)
                pending[tenant] = []
            next_flush += 0.2
    for tenant, lines in pending.items():
        if lines:
            await put_all(aws.kinesis, settings.stream, pack_records(tenant, lines))
            sent += len(lines)
    return sent


async def drained(aws: Aws, settings: Settings) -> bool:
    return all([await queue_backlog(aws.sqs, q) == 0 for q in queue_names(settings)])


async def run(args: argparse.Namespace, settings: Settings) -> None:
    tenants = [f"bench-{i}" for i in range(args.tenants)]
    settings = await with_account(settings)
    engine = make_engine(settings.require_database_url())
    async with open_aws(settings) as aws:
        await provision(aws, settings)
        aws.counter.counts.clear()
        puts_by_prefix: Counter[str] = Counter()
        original_put = aws.s3.put_object

        async def counting_put(**kw: Any) -> Any:
            puts_by_prefix[kw["Key"].split("/", 1)[0]] += 1
            return await original_put(**kw)

        aws.s3.put_object = counting_put  # type: ignore[method-assign]
        stop = asyncio.Event()
        config = DumperConfig(settings.stream, settings.bucket, settings.checkpoints_table,
                              settings.buffer_max_bytes, settings.buffer_max_age_s,
                              settings.dumper_idle_poll_s)  # fmt: skip
        store = make_store(aws, settings)
        topic = (await aws.sns.create_topic(Name=settings.topic))["TopicArn"]
        filter_deps = filter_stage.FilterDeps(aws.s3, settings.bucket)
        consolidator_deps = consolidator.ConsolidatorDeps(store)
        enricher_deps = enricher.EnricherDeps(aws.s3, aws.sns, settings.bucket, topic)
        realtime_deps = realtime.RealtimeLoaderDeps(
            aws.s3, aws.dynamodb, settings.bucket, settings.realtime_table
        )
        reports_deps = reports.ReportLoaderDeps(
            aws.s3, settings.bucket, engine, aws.dynamodb, settings.realtime_table
        )
        handlers = {
            FILTER_QUEUE: partial(filter_stage.handle, filter_deps),
            CONSOLIDATOR_QUEUE: partial(consolidator.handle, consolidator_deps),
            ENRICHER_QUEUE: partial(enricher.handle, enricher_deps),
            REALTIME_QUEUE: partial(realtime.handle, realtime_deps),
            REPORTS_QUEUE: partial(reports.handle, reports_deps),
        }
        workers = [await queue_worker(aws.sqs, settings, q, h) for q, h in handlers.items()]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        tasks.append(
            asyncio.create_task(Dumper(aws.kinesis, aws.s3, aws.dynamodb, config).run(stop))
        )

        async def compact() -> None:
            store.compactor.tick()

        tasks.append(asyncio.create_task(every(1.0, compact, stop, settings.handler_timeout_s)))
        t0 = time.monotonic()
        sent = await send(aws, settings, tenants, args.rate, args.seconds)
        print(f"sent {sent} events in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        await asyncio.sleep(settings.buffer_max_age_s + 2)
        for _ in range(600):
            if await drained(aws, settings):
                break
            await asyncio.sleep(1)
        print(f"pipeline drained after {time.monotonic() - t0:.1f} s", file=sys.stderr)
        stop.set()
        await asyncio.gather(*tasks)
        counts = Counter(aws.counter.counts)
    await engine.dispose()
    counts[S3_NOTIFICATION] = sum(puts_by_prefix[p] for p in NOTIFIED)
    report(counts, sent, puts_by_prefix, args)


def report(
    counts: Counter[tuple[str, str]], events: int, puts: Counter[str], args: argparse.Namespace
) -> None:
    per_k = 1000 / events
    per_object = events / max(puts[RAW], 1)
    print(f"\n# AWS requests per 1,000 events: {events} events, {args.tenants} tenants, "
          f"{args.rate:.0f} events/s asked, {args.buffer_age:g} s buffers, "
          f"{per_object:.0f} events per raw object; other settings default\n")  # fmt: skip
    print("| service | operation | per 1,000 events | USD per million events |")
    print("|---|---|---:|---:|")
    rows = cost_rows(counts, events)
    for row in rows:
        print(f"| {row.service} | {row.operation} | {row.per_1000:.2f} | "
              f"{row.usd_per_million:.4f} |")  # fmt: skip
    print(f"| **total** | | | **{sum(r.usd_per_million for r in rows):.3f}** |")
    print("\nS3 PUTs by prefix per 1,000 events: "
          + ", ".join(f"{p} {n * per_k:.2f}" for p, n in sorted(puts.items())))  # fmt: skip
    print("Kinesis PutRecords payload units and GetRecords are priced by volume, not request; "
          "see docs/design.md.")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument(
        "--buffer-age",
        type=float,
        default=5.0,
        help="dumper buffer age; cost depends on rate x age / tenants, the events per object",
    )
    args = parser.parse_args()
    stop_on_sigterm()
    port = free_port()
    moto = start_moto(port)
    with tempfile.TemporaryDirectory() as tmp:
        pg, database_url = start_postgres(Path(tmp) / "pg")
        try:
            settings = Settings.model_validate(
                {
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                    "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": "bench",
                    "database_url": database_url,
                    "buffer_max_age_s": args.buffer_age,
                }
            )
            asyncio.run(run(args, settings))
        finally:
            pg.cleanup()
            moto.terminate()


if __name__ == "__main__":
    main()
