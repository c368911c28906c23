"""Consolidator: merge a filtered batch into the ticket store, emit full event sets.

The output names every variant of every event of each touched ticket; the
enricher dedupes them. Unlike every other stage output, its name is unique per
attempt: a slow attempt that listed the store early must never overwrite the
view of a later attempt that saw more (see docs/design.md).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

import orjson

from services.consolidator.store import EventLine, TicketStore
from shared.layout import (
    CONSOLIDATED,
    FILTERED,
    attempt_name,
    decode_lines,
    encode_lines,
    expect_key,
    stage_key,
    ticket_bucket,
)
from shared.objects import get_bytes, put_bytes


@dataclass(frozen=True)
class ConsolidatorDeps:
    store: TicketStore
    buckets: int


async def handle(deps: ConsolidatorDeps, key: str) -> None:
    tenant, batch = expect_key(key, FILTERED)
    store = deps.store
    lines = list(decode_lines(await get_bytes(store.s3, store.bucket, key)))
    by_bucket: dict[int, list[EventLine]] = defaultdict(list)
    bucket_of: dict[bytes, int] = {}
    for line in lines:
        token = line[0]
        if token not in bucket_of:
            bucket_of[token] = ticket_bucket(orjson.loads(token), deps.buckets)
        by_bucket[bucket_of[token]].append(line)
    merged = await asyncio.gather(
        *(store.merge(tenant, b, batch, bucket_lines) for b, bucket_lines in by_bucket.items())
    )
    out = sorted(set().union(*merged))
    await put_bytes(
        store.s3,
        store.bucket,
        stage_key(CONSOLIDATED, tenant, attempt_name(batch)),
        encode_lines(out),
    )
