"""`make bench-store`: what a consolidator batch costs as a tenant's history grows.

For each history H (days), a tenant of `--tickets-per-day` gets H days of
history written straight into the store (`bench/store_history.py`), then a
fresh process (empty cache, its own peak memory) runs a day of that tenant's
live traffic through the real handler and compaction: the next day's tickets,
delivered in time order in batches of `--batch-events` lines, 2% of them
again, and `--late-per-mille` events of random old tickets (late events of
sealed tickets). It prints, per H: S3 and DynamoDB requests, bytes read and
CPU seconds per 1,000 events, and peak memory; the first batch (cache empty)
apart. Nothing is asserted: read the figures with docs/design.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.store_history import DAY_MS, MESSAGE, Model, _stamp, ticket_id, write_history
from services.consolidator.handler import ConsolidatorDeps, handle
from services.consolidator.state import now_ms
from services.consolidator.store import TicketStore, make_store
from shared.aws import Aws, open_aws
from shared.events import to_ms
from shared.layout import FILTERED, encode_lines, new_batch_id, stage_key
from shared.settings import Settings
from telemetry.provision import ensure_bucket, ensure_table
from telemetry.up import free_port, start_moto


def settings_for(endpoint: str) -> Settings:
    return Settings.model_validate(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "b",
            "AWS_SECRET_ACCESS_KEY": "b",
            "bucket": "bench-store",
            "store_table": "bench-store",
        }
    )


async def provision(aws: Aws, settings: Settings) -> None:
    await ensure_bucket(aws, settings)
    await ensure_table(
        aws, settings.store_table, [{"AttributeName": "key", "KeyType": "HASH"}],
        [{"AttributeName": "key", "AttributeType": "S"}],
    )  # fmt: skip


def live_batches(
    model: Model, day: int, args: argparse.Namespace
) -> list[tuple[int, list[tuple[bytes, bytes]]]]:
    """Days of the tenant's traffic in time order, with repeats and very late events."""
    timed: list[tuple[int, bytes, bytes]] = []
    for d in range(day, day + args.live_days):
        for n in range(model.tickets_per_day):
            lines, _, _ = model.lines(d, n)
            token = f'"{ticket_id(model.seed, d, n)}"'.encode()
            timed += [(_at(line), token, line) for line in lines]
    late_every = int(1000 / args.late_per_mille) if args.late_per_mille and day else 0
    late = len(timed) // late_every if late_every else 0
    for k in range(late):
        old_day, n = k * 7919 % day, k * 104_729 % model.tickets_per_day
        tid = ticket_id(model.seed, old_day, n)
        at = model.day0_ms + old_day * DAY_MS + 43_200_000
        line = (MESSAGE % (tid, 900 + k, _stamp(at), "customer", model.tenant, tid)).encode()
        sent_at = model.day0_ms + day * DAY_MS + k * (args.live_days * DAY_MS // late)
        timed.append((sent_at, f'"{tid}"'.encode(), line))
    timed.sort()
    again = timed[::50]  # 2% delivered twice, a batch or so later
    sent = [(t + 20_000, tok, line) for t, tok, line in again] + timed
    sent.sort()
    size = args.batch_events
    return [
        (
            sent[min(i + size, len(sent)) - 1][0],
            [(tok, line) for _, tok, line in sent[i : i + size]],
        )
        for i in range(0, len(sent), size)
    ]


def _at(line: bytes) -> int:
    at = line.index(b'"occurred_at":"') + 15
    return to_ms(datetime.fromisoformat(line[at : at + 24].decode()))


Batch = tuple[str, int, int]  # filtered key, lines, time of the traffic when it is sent


async def put_traffic(args: argparse.Namespace, model: Model, days: int) -> list[Batch]:
    """The live days' batches as the filter writes them."""
    settings = settings_for(args.endpoint)
    out = []
    async with open_aws(settings) as aws:
        for at, lines in live_batches(model, days, args):
            key = stage_key(FILTERED, model.tenant, new_batch_id())
            body = encode_lines(sorted(set(lines)))
            await aws.s3.put_object(Bucket=settings.bucket, Key=key, Body=body)
            out.append((key, len(lines), at))
    return out


async def live(args: argparse.Namespace, batches: list[Batch]) -> dict[str, Any]:
    """The measured part, in its own process: only the handler and compaction run here."""
    settings = settings_for(args.endpoint)
    async with open_aws(settings) as aws:
        store = make_store(aws, settings)
        deps = ConsolidatorDeps(store)
        rows = []
        for key, lines, at in batches:
            # the replay's time, for sealing; a burst's stays at its start: nothing sealed
            store.compactor.clock = partial(int, batches[0][2] if args.burst else at)
            before = Counter(aws.counter.counts), dict(store.io.traffic), time.process_time()
            await handle(deps, key)
            store.compactor.tick()
            if store.compactor._task is not None:
                await store.compactor._task
            rows.append(_row(aws, store, before, lines))
        state = await store.state(args.tenant)
        manifest = await store.reader.manifest(state.manifest)
        await store.compactor.close()
    first, rest = rows[0], rows[1:]
    total = _sum(rest)
    per = 1000 / total["events"]
    return {
        "history_days": args.history,
        "batches": len(rows),
        "events": total["events"] + first["events"],
        "first batch": first,
        "per 1000 events": {k: round(v * per, 4) for k, v in total.items() if k != "events"},
        "per batch": {k: round(v / len(rest), 2) for k, v in total.items() if k != "events"},
        "peak RSS MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "compaction": dict(store.compactor.counts),
        "partitions": len(state.parts),
        "cold runs": len(manifest.runs),
        "cold files": sum(len(r.files) for r in manifest.runs),
        "cold lines": sum(r.lines for r in manifest.runs),
    }


def _row(aws: Aws, store: TicketStore, before: Any, events: int) -> dict[str, float]:
    counts, traffic, cpu = before
    out: dict[str, float] = {"events": events, "cpu s": time.process_time() - cpu}
    for (service, op), n in aws.counter.counts.items():
        if n - counts[(service, op)]:
            out[f"{service} {op}"] = n - counts[(service, op)]
    out["bytes read"] = store.io.traffic["read"] - traffic.get("read", 0)
    out["bytes written"] = store.io.traffic["written"] - traffic.get("written", 0)
    return out


def _sum(rows: list[dict[str, float]]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for r in rows:
        total.update(r)
    return dict(total)


async def history(args: argparse.Namespace, days: int) -> tuple[Model, float, list[Batch]]:
    """H days of history written, and the live days after them put as filtered batches."""
    settings = settings_for(args.endpoint)
    live_start = now_ms() // DAY_MS * DAY_MS - args.live_days * DAY_MS
    model = Model(
        f"hist-{days}d-{args.seed}", args.seed, args.tickets_per_day, live_start - days * DAY_MS
    )
    async with open_aws(settings) as aws:
        await provision(aws, settings)
        store = make_store(aws, settings)
        started = time.monotonic()
        if days:
            await write_history(store, model, days, live_start)
        took = time.monotonic() - started
    return model, took, await put_traffic(args, model, days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", default="0,30,365", help="days of history, comma-separated")
    parser.add_argument("--tickets-per-day", type=int, default=10_000)
    parser.add_argument("--batch-events", type=int, default=400)
    parser.add_argument("--live-days", type=int, default=2, help="days of live traffic")
    parser.add_argument("--late-per-mille", type=float, default=0.5)
    parser.add_argument(
        "--burst", action="store_true",
        help="the live days arrive within minutes (a far faster tenant): nothing is sealed",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tenant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batches", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.live:
        args.history = int(args.history)
        batches = json.loads(Path(args.batches).read_bytes())
        print(json.dumps(asyncio.run(live(args, batches))))
        return
    moto = None
    if not args.endpoint:
        os.environ.setdefault(
            "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(1 << 20)
        )  # big objects on disk
        port = free_port()
        moto = start_moto(port)
        args.endpoint = f"http://127.0.0.1:{port}"
    results = []
    try:
        for days in [int(d) for d in args.history.split(",")]:
            model, took, batches = asyncio.run(history(args, days))
            path = Path(tempfile.mkdtemp()) / "batches.json"
            path.write_text(json.dumps(batches))
            print(f"history {days} d: written in {took:.0f} s", file=sys.stderr, flush=True)
            command = [
                sys.executable, "-m", "bench.store", "--live", "--endpoint", args.endpoint,
                "--tenant", model.tenant, "--history", str(days), "--batches", str(path),
                *(["--burst"] if args.burst else []),
            ]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["history written in s"] = round(took)
            if moto is not None:
                result["moto RSS MiB"] = _rss_mib(moto.pid)
            print(json.dumps(result, indent=1), flush=True)
            results.append(result)
    finally:
        if moto is not None:
            moto.terminate()
    print(table(results))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def table(results: list[dict[str, Any]]) -> str:
    keys = ["cpu s", "s3 PutObject", "s3 ListObjectsV2", "s3 GetObject", "s3 DeleteObjects",
            "dynamodb GetItem", "dynamodb PutItem", "dynamodb DeleteItem",
            "bytes read"]  # fmt: skip
    head = (
        "| per 1,000 events | " + " | ".join(f"H = {r['history_days']} d" for r in results) + " |"
    )
    lines = [head, "|---|" + "---:|" * len(results)]
    for k in keys:
        lines.append(
            f"| {k} | " + " | ".join(str(r["per 1000 events"].get(k, 0)) for r in results) + " |"
        )
    lines.append("| peak RSS MiB | " + " | ".join(str(r["peak RSS MiB"]) for r in results) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
