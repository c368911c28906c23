"""Real-time loader: the current state of each ticket into DynamoDB
(layout in shared/realtime.py; the day's counters come from the report loader,
services/loader/quarters.py).

One item per ticket, written only when its version grows (a conditional put),
so duplicates and reordering cannot bring back an older state, nor take a
ticket in or out of the open index out of turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.loader.batches import batch_records
from shared.errors import is_transient
from shared.isolation import park, reason_of
from shared.layout import ENRICHED, expect_key
from shared.objects import get_bytes
from shared.realtime import OPEN_FIELDS, OPEN_KEY, OPEN_STATUSES, put_if_newer

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client

WRITE_CONCURRENCY = 16
CLOSED_RETENTION_S = 2 * 86_400


@dataclass(frozen=True)
class RealtimeLoaderDeps:
    s3: S3Client
    dynamodb: DynamoDBClient
    bucket: str
    table: str


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": str(value)}


def realtime_item(rec: dict[str, Any]) -> dict[str, Any]:
    """The ticket's state as "now" reads it (the day's counts are quarter items):
    only events other than messages change it."""
    f = rec["facts"]
    item = {
        "tenant_id": {"S": rec["tenant_id"]},
        "ticket_id": {"S": rec["ticket_id"]},
        "version": {"N": str(rec["version"])},
    }
    for name in OPEN_FIELDS:  # each only when not null
        if f[name] is not None:
            item[name] = _attr(f[name])
    if f["status"] in OPEN_STATUSES:  # in the sparse index of open tickets
        item[OPEN_KEY] = {"S": rec["tenant_id"]}
    if f["closed_at"] is not None:
        item["expires_at"] = {"N": str(f["closed_at"] // 1000 + CLOSED_RETENTION_S)}
    return item


async def handle(deps: RealtimeLoaderDeps, key: str) -> None:
    tenant, name = expect_key(key, ENRICHED)
    records = batch_records(await get_bytes(deps.s3, deps.bucket, key), tenant)
    slots = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def put(rec: dict[str, Any]) -> BaseException | None:
        """A put that fails for the item's own sake is returned, not raised."""
        async with slots:
            try:
                await put_if_newer(deps.dynamodb, deps.table, realtime_item(rec))
            except Exception as exc:
                if is_transient(exc):
                    raise
                return exc
        return None

    marked = [r for r in records if r["realtime"]]
    outcomes = await asyncio.gather(*(put(r) for r in marked))
    parked = [
        {"reason": reason_of(exc), "ticket_id": r["ticket_id"], "record": r}
        for r, exc in zip(marked, outcomes, strict=True)
        if exc is not None
    ]
    if parked:
        await park(deps.s3, deps.bucket, "realtime", tenant, name, parked)
