"""Consolidator: merge a filtered batch into the ticket store, emit full event sets.

The output names every variant of every event of each touched ticket; the
enricher dedupes them. Unlike every other stage output, its name is unique per
attempt: a slow attempt that read the store early must never overwrite the
view of a later attempt that saw more (see docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.consolidator.store import TicketStore
from shared.layout import (
    CONSOLIDATED,
    FILTERED,
    attempt_name,
    decode_lines,
    encode_lines,
    expect_key,
    stage_key,
)
from shared.objects import get_bytes, put_bytes


@dataclass(frozen=True)
class ConsolidatorDeps:
    store: TicketStore


async def handle(deps: ConsolidatorDeps, key: str) -> None:
    tenant, batch = expect_key(key, FILTERED)
    store = deps.store
    lines = list(decode_lines(await get_bytes(store.s3, store.bucket, key)))
    out = sorted(await store.merge(tenant, batch, lines))
    await put_bytes(
        store.s3,
        store.bucket,
        stage_key(CONSOLIDATED, tenant, attempt_name(batch)),
        encode_lines(out),
    )
