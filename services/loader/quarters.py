"""Today's counters in the real-time store: the report loader publishes the
15-minute `all` rollup rows it changed as quarter items (shared/realtime.py).

The rows are exact and exactly-once already (services/loader/rollups.py), so
publishing is only copying: each row's version increases with every write,
and a snapshot replaces only an older one, so snapshots may arrive in any
order, twice, or from several loaders. Which quarters to publish is written
in the loader's own transaction (an outbox), and deleted only after the put:
a crash between the two leaves them for the next batch, never lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.loader.realtime import put_if_newer
from shared.db import realtime_outbox
from shared.realtime import (
    COUNTED,
    QUARTER_RETENTION_S,
    RECENT_S,
    TIMED,
    quarter_key,
    quarters_partition,
)
from shared.rollups import ENTRY, HIST_CODE, Rollup
from shared.timebuckets import epoch_s, instant

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from types_aiobotocore_dynamodb import DynamoDBClient

    from services.loader.rollups import Key

CLAIM = 500  # quarters per round
PUT_CONCURRENCY = 8
_CODES = [HIST_CODE[kind] for kind in TIMED]
_SHOWN = frozenset((*COUNTED, *TIMED))

CLAIM_SQL = text("""
WITH claimed AS (
    SELECT tenant_id, bucket FROM realtime_outbox
    ORDER BY tenant_id, bucket LIMIT :limit FOR UPDATE SKIP LOCKED
)
SELECT c.tenant_id, c.bucket, r.cells, r.hists, r.version
FROM claimed AS c
LEFT JOIN rollups AS r ON r.tenant_id = c.tenant_id AND r.dim = 'all' AND r.level = 0
                      AND r.bucket = c.bucket AND r.dim_value = ''
""")
DONE_SQL = text("""
DELETE FROM realtime_outbox AS o
USING unnest(CAST(:tenants AS text[]), CAST(:buckets AS timestamptz[])) AS d(tenant_id, bucket)
WHERE o.tenant_id = d.tenant_id AND o.bucket = d.bucket
""")


async def enqueue(
    conn: AsyncConnection, deltas: Mapping[str, Mapping[Key, Rollup]], now_s: int | None = None
) -> None:
    """Within the loader's transaction: the recent quarters whose `all` row changed
    in what the view shows (most batches only add messages)."""
    since = (int(time.time()) if now_s is None else now_s) - RECENT_S
    rows = sorted(
        (tenant, bucket)
        for tenant, delta in deltas.items()
        for (dim, level, bucket, _), rollup in delta.items()
        if dim == "all"
        and level == 0
        and bucket >= since
        and any(kind in _SHOWN for kind in rollup.pruned().cells)
    )  # sorted: concurrent loaders take the index locks in one order
    if rows:
        values = [{"tenant_id": t, "bucket": instant(b)} for t, b in rows]
        # DO UPDATE, not DO NOTHING: it waits while a publisher holds the row, so a
        # publisher that read the row before this change cannot delete it after.
        stmt = pg_insert(realtime_outbox).values(values)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[realtime_outbox.c.tenant_id, realtime_outbox.c.bucket],
                set_={"bucket": stmt.excluded.bucket},
            )
        )


def quarter_item(
    tenant: str, bucket_s: int, cells: dict[str, Any], hists: bytes, version: int
) -> dict[str, Any]:
    """The view's part of a row: its counts, and the histograms of its timed kinds."""
    entries = np.frombuffer(hists, dtype=ENTRY)
    kept = {k: v for k, v in cells.items() if k in _SHOWN}
    return {
        "tenant_id": {"S": quarters_partition(tenant)},
        "ticket_id": {"S": quarter_key(bucket_s)},
        "version": {"N": str(version)},
        "cells": {"S": orjson.dumps(kept).decode()},
        "hists": {"B": entries[np.isin(entries["kind"], _CODES)].tobytes()},
        "expires_at": {"N": str(bucket_s + QUARTER_RETENTION_S)},
    }


async def publish(engine: AsyncEngine, dynamodb: DynamoDBClient, table: str) -> int:
    """Every pending quarter (of any tenant) this loader can claim; returns how many."""
    published = 0
    slots = asyncio.Semaphore(PUT_CONCURRENCY)

    async def put(item: dict[str, Any]) -> None:
        async with slots:
            await put_if_newer(dynamodb, table, item)

    while True:
        async with engine.begin() as conn:
            claimed = (await conn.execute(CLAIM_SQL, {"limit": CLAIM})).all()
            if not claimed:
                return published
            items = [
                quarter_item(tenant, epoch_s(bucket), cells, hists, version)
                for tenant, bucket, cells, hists, version in claimed
                if version is not None
            ]
            await asyncio.gather(*(put(item) for item in items))
            await conn.execute(
                DONE_SQL,
                {"tenants": [r.tenant_id for r in claimed], "buckets": [r.bucket for r in claimed]},
            )
        published += len(items)
        if len(claimed) < CLAIM:
            return published
