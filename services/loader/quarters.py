"""Today's counters in the real-time store: the report loader publishes the
15-minute `all` rollup rows it changed as quarter items (shared/realtime.py).

The rows are exact and counted once already (services/loader/rollups.py), so
publishing is only copying. Each write of a row takes a new `version` from a
sequence, and a snapshot replaces only an older one: snapshots may arrive in
any order, twice, or from several publishers.

Which quarters to publish is an outbox written in the loader's transaction;
each enqueue gives the row a new `seq` and makes it claimable at once. A
publisher claims rows with a short lease (so concurrent publishers do not put
the same quarters), reads their snapshots after the claim, puts them, then
deletes only the rows whose `seq` is still the one it claimed. A change
committed after the claim has a new `seq`, so its row stays for the next
publish; a publisher that fails releases its rows, and one that dies leaves
them to be claimed again when the lease ends. No lock is held while DynamoDB
answers. The loader publishes after each batch and every few seconds, so a
quarter left by a failure goes out even when no traffic follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import func, literal_column, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db import realtime_outbox
from shared.realtime import (
    QUARTER_RETENTION_S,
    RECENT_S,
    SHOWN,
    TIMED,
    put_if_newer,
    quarter_key,
    quarters_partition,
)
from shared.rollups import ENTRY, HIST_CODE, Rollup
from shared.timebuckets import epoch_s, instant

if TYPE_CHECKING:
    from sqlalchemy.engine import Row
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.sql.elements import ColumnElement
    from types_aiobotocore_dynamodb import DynamoDBClient

    from services.loader.rollups import Key

log = logging.getLogger(__name__)

BATCH = 500  # quarters per round
PUT_CONCURRENCY = 8
_CODES = [HIST_CODE[kind] for kind in TIMED]
UNLEASED: ColumnElement[Any] = literal_column("'-infinity'::timestamptz")

LEASE_S = 30
ROUNDS = 20  # at most BATCH * ROUNDS quarters per call; the periodic publish takes the rest
PUBLISH_EVERY_S = 5.0  # the loader also publishes on its own, so no quarter waits for traffic
CLAIM_SQL = text("""
UPDATE realtime_outbox AS o SET lease = now() + make_interval(secs => :lease_s)
FROM (SELECT tenant_id, bucket FROM realtime_outbox WHERE lease < now()
      ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED) AS c
WHERE o.tenant_id = c.tenant_id AND o.bucket = c.bucket
RETURNING o.tenant_id, o.bucket, o.seq, o.lease
""")
SNAPSHOT_SQL = text("""
SELECT c.tenant_id, c.bucket, r.cells, r.hists, r.version
FROM unnest(CAST(:tenants AS text[]), CAST(:buckets AS timestamptz[])) AS c(tenant_id, bucket)
LEFT JOIN rollups AS r ON r.tenant_id = c.tenant_id AND r.dim = 'all' AND r.level = 0
                      AND r.bucket = c.bucket AND r.dim_value = ''
""")
# Rows still as claimed (same seq, same lease), locked in key order as `enqueue`
# locks them, so a publisher and a loader never deadlock.
_STILL_CLAIMED = """
WITH mine AS (
    SELECT o.tenant_id, o.bucket FROM realtime_outbox AS o
    JOIN unnest(CAST(:tenants AS text[]), CAST(:buckets AS timestamptz[]),
                CAST(:seqs AS bigint[]), CAST(:leases AS timestamptz[]))
         AS d(tenant_id, bucket, seq, lease)
      ON o.tenant_id = d.tenant_id AND o.bucket = d.bucket AND o.seq = d.seq
     AND o.lease = d.lease
    ORDER BY o.tenant_id, o.bucket FOR UPDATE OF o
)
"""
DONE_SQL = text(
    _STILL_CLAIMED
    + """
DELETE FROM realtime_outbox AS o USING mine
WHERE o.tenant_id = mine.tenant_id AND o.bucket = mine.bucket
"""
)
RELEASE_SQL = text(
    _STILL_CLAIMED
    + """
UPDATE realtime_outbox AS o SET lease = '-infinity' FROM mine
WHERE o.tenant_id = mine.tenant_id AND o.bucket = mine.bucket
"""
)


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
        and any(kind in SHOWN and any(values) for kind, values in rollup.cells.items())
    )
    if rows:
        stmt = pg_insert(realtime_outbox).values(
            [{"tenant_id": t, "bucket": instant(b)} for t, b in rows]
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[realtime_outbox.c.tenant_id, realtime_outbox.c.bucket],
                set_={"seq": func.nextval("realtime_outbox_seq"), "lease": UNLEASED},
            )
        )


def quarter_item(
    tenant: str, bucket_s: int, cells: dict[str, Any], hists: bytes, version: int
) -> dict[str, Any]:
    """The view's part of a row: its counts, and the histograms of its timed kinds."""
    entries = np.frombuffer(hists, dtype=ENTRY)
    return {
        "tenant_id": {"S": quarters_partition(tenant)},
        "ticket_id": {"S": quarter_key(bucket_s)},
        "version": {"N": str(version)},
        "cells": {"S": orjson.dumps({k: v for k, v in cells.items() if k in SHOWN}).decode()},
        "hists": {"B": entries[np.isin(entries["kind"], _CODES)].tobytes()},
        "expires_at": {"N": str(bucket_s + QUARTER_RETENTION_S)},
    }


async def _put_all(dynamodb: DynamoDBClient, table: str, pending: Sequence[Row[Any]]) -> None:
    slots = asyncio.Semaphore(PUT_CONCURRENCY)

    async def put(item: dict[str, Any]) -> None:
        async with slots:
            await put_if_newer(dynamodb, table, item)

    async with asyncio.TaskGroup() as group:
        for row in pending:
            if row.version is not None:  # a row always exists; the join is defensive
                item = quarter_item(
                    row.tenant_id, epoch_s(row.bucket), row.cells, row.hists, row.version
                )
                group.create_task(put(item))


def _columns(rows: Sequence[Row[Any]]) -> dict[str, list[Any]]:
    return {"tenants": [r.tenant_id for r in rows], "buckets": [r.bucket for r in rows],
            "seqs": [r.seq for r in rows], "leases": [r.lease for r in rows]}  # fmt: skip


async def _release(engine: AsyncEngine, claimed: Sequence[Row[Any]]) -> None:
    """Best effort, bounded: the lease ends on its own anyway."""
    try:
        async with asyncio.timeout(2), engine.begin() as conn:
            await conn.execute(RELEASE_SQL, _columns(claimed))
    except Exception:
        log.warning("could not release %d claimed quarters", len(claimed), exc_info=True)


async def publish(engine: AsyncEngine, dynamodb: DynamoDBClient, table: str) -> int:
    """Pending quarters (of any tenant, oldest change first) that no other
    publisher holds; returns how many were put."""
    published = 0
    for _ in range(ROUNDS):
        async with engine.begin() as conn:
            claimed = (await conn.execute(CLAIM_SQL, {"lease_s": LEASE_S, "limit": BATCH})).all()
        if not claimed:
            break
        try:
            async with engine.connect() as conn:  # a snapshot taken after the claim
                keys = {"tenants": [r.tenant_id for r in claimed],
                        "buckets": [r.bucket for r in claimed]}  # fmt: skip
                pending = (await conn.execute(SNAPSHOT_SQL, keys)).all()
            await _put_all(dynamodb, table, pending)
        except BaseException:
            await _release(engine, claimed)
            raise
        async with engine.begin() as conn:
            await conn.execute(DONE_SQL, _columns(claimed))
        published += len(pending)
        if len(claimed) < BATCH:
            break
    return published
