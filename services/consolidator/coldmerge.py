"""Cold merges: runs of one size class merged into one, then published by the state.

The merged run is written first; the state then moves to a manifest that
lists it instead of its inputs (conditional on the version), and only then
are the inputs deleted: a reader holding the older manifest that finds an
input gone reads the state again (docs/design.md, "The ticket store").
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

from services.consolidator.manifest import ColdFile, ColdRun
from services.consolidator.merging import chained, chunk_for, merged
from services.consolidator.runs import Ticket
from services.consolidator.state import CAS_ATTEMPTS, LEASE_S, StateConflictError
from shared.layout import new_batch_id
from shared.objects import ObjectMissingError

if TYPE_CHECKING:
    from services.consolidator.compaction import Compactor


async def compact_cold(c: Compactor, tenant: str) -> bool:
    """One tiered merge of cold runs; False when none is due."""
    state = await c.table.read(tenant)
    if state is None or not state.manifest:
        return False
    try:
        runs = (await c.reader.manifest(state.manifest)).merge_plan()
    except ObjectMissingError:
        return await _moved_on(c, tenant, state.manifest)
    if not runs:
        return False
    run = new_batch_id()
    sink = c.cold_sink(tenant, run)
    chunk = chunk_for(len(runs))
    sources = [
        chained(
            [
                partial(c.reader.stream, f.key, f.size, (f.footer_at, f.footer_len), chunk)
                for f in r.files
            ]
        )
        for r in runs
    ]
    try:
        await c.fill(_renewing(c, tenant, merged(sources)), [sink])
    except ObjectMissingError:
        return await _moved_on(c, tenant, state.manifest)
    out = ColdRun(run, tuple(ColdFile.of(f.key, f.size, f.footer, f.stats) for f in sink.files))
    merged_ids = {r.id for r in runs}
    for _ in range(CAS_ATTEMPTS):
        state = await c.table.read(tenant)
        if state is None:
            return False
        try:
            manifest = (await c.reader.manifest(state.manifest)).replace(merged_ids, out)
        except ObjectMissingError:
            continue  # replaced since the state was read: read it again
        if manifest is None:  # another compactor merged them meanwhile
            await c.io.delete(sink.keys)
            return True
        key = await c.publish(tenant, manifest)
        try:
            await c.write_state(tenant, state.next(manifest=key))
        except StateConflictError:
            await c.io.delete([key])
            continue
        inputs = [f.key for r in runs for f in r.files]
        await c.io.delete([*inputs, state.manifest])
        c.reader.forget(inputs)
        for r in runs:
            c.reader.cache.drop(("r", r.id))
        c.counts["cold merge"] += 1
        c.counts["lines rewritten"] += sum(f.lines for f in out.files)
        return True
    return False


async def _moved_on(c: Compactor, tenant: str, manifest: str) -> bool:
    """True when another compactor replaced the manifest (look again).

    An object missing under a manifest that is still current is lost, not
    merged away: looking again would find it missing forever.
    """
    state = await c.table.read(tenant)
    if state is not None and state.manifest == manifest:
        raise ObjectMissingError(f"{manifest} or one of its runs is lost while still current")
    return True


async def _renewing(
    c: Compactor, tenant: str, tickets: AsyncIterator[Ticket]
) -> AsyncIterator[Ticket]:
    """Keep the lease while a long merge runs."""
    renewed = time.monotonic()
    async for t in tickets:
        yield t
        if time.monotonic() - renewed > LEASE_S / 3:
            await c.table.take_lease(tenant, c.owner, LEASE_S)
            renewed = time.monotonic()
