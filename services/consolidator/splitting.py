"""Splitting a hot partition in two as its active set grows.

Freeze (the state marks it, batches touching it wait), mark it, list and
copy it into its two children by the next bit of the ticket hash, make the
children live, leave a tombstone marker: see docs/design.md, "Splitting".
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from services.consolidator.merging import FileSink
from services.consolidator.partition import list_partition
from services.consolidator.runs import token_hashes
from services.consolidator.state import (
    CAS_ATTEMPTS,
    StateConflictError,
    children,
    depth,
    now_ms,
)
from shared.layout import epoch_marker_key, hot_file_key, new_batch_id
from shared.objects import ObjectMissingError

if TYPE_CHECKING:
    from services.consolidator.compaction import Compactor

READ_ATTEMPTS = 5
MAX_DEPTH = 16
TOMBSTONE = 10**12 - 1  # the epoch marker of a partition that was split


async def split(c: Compactor, tenant: str, partition: str) -> bool:
    """Freeze the partition (batches touching it wait), then move it into two."""
    for _ in range(CAS_ATTEMPTS):
        state = await c.table.read(tenant)
        if state is None or partition not in state.parts:
            return False
        if partition in state.freezing:
            break
        if len(state.parts) >= c.policy.max_partitions or depth(partition) >= MAX_DEPTH:
            return False
        new = state.next(
            parts={**state.parts, partition: state.version + 1},
            freezing={**state.freezing, partition: now_ms()},
        )
        try:
            await c.write_state(tenant, new)
            break
        except StateConflictError:
            continue
    await c.complete_split(tenant, partition)
    return True


async def complete_split(c: Compactor, tenant: str, partition: str) -> None:
    """Copy a frozen partition into its two children and make them live.

    Anyone may run this (a batch that waited too long does): the marker
    goes first, so a batch that listed the partition before this
    listing has its delta copied, and one that lists it after sees the
    marker and waits. Concurrent copies only duplicate lines."""
    state = await c.table.read(tenant)
    if state is None or partition not in state.freezing:
        return
    await c.io.put(epoch_marker_key(tenant, partition, state.parts[partition]), b"")
    bit = 63 - depth(partition)
    kids = children(partition)
    for _ in range(READ_ATTEMPTS):
        listing = await list_partition(c.io, tenant, partition)
        run = new_batch_id()
        sinks = [
            FileSink(c.io, partial(hot_file_key, tenant, kid, "m", run), kept=c.remember)
            for kid in kids
        ]
        streams = c.merged_inputs(listing.objects)
        try:
            await c.fill(streams, sinks, lambda t: int(token_hashes([t.token])[0][0]) >> bit & 1)
        except ObjectMissingError:
            continue  # a merge replaced what we listed: list again
        break
    else:
        raise ObjectMissingError(f"{partition}: objects kept vanishing during the split")
    for _ in range(CAS_ATTEMPTS):
        state = await c.table.read(tenant)
        if state is None or partition not in state.freezing:
            return  # completed by another: our copies are duplicates in live children
        version = state.version + 1
        for kid in kids:
            await c.io.put(epoch_marker_key(tenant, kid, version), b"")
        parts = {p: e for p, e in state.parts.items() if p != partition}
        parts.update(dict.fromkeys(kids, version))
        freezing = {p: t for p, t in state.freezing.items() if p != partition}
        try:
            await c.write_state(tenant, state.next(parts=parts, freezing=freezing))
            break
        except StateConflictError:
            continue
    else:
        return
    c.counts["split"] += 1
    c.counts["lines rewritten"] += sum(f.stats.lines for s in sinks for f in s.files)
    # A tombstone, never deleted: whoever lists the dead partition later sees
    # an epoch above any it knows, so it reads the state again.
    tombstone = epoch_marker_key(tenant, partition, TOMBSTONE)
    await c.io.put(tombstone, b"")
    leftover = await list_partition(c.io, tenant, partition)
    keys = [o.key for o in leftover.objects]
    await c.io.delete([*keys, *(m for m in leftover.marks if m != tombstone)])
    c.reader.forget(keys)
