"""A tenant's first state, with the store layout before version 2 migrated into it.

The old layout is `store/<tenant>/<bucket:04d>/` holding gzip event-line
objects (`d-*` deltas, `c-*` compactions), each sorted by ticket. The first
worker to see a tenant converts each of them into a cold run (same lines,
now indexed), publishes them in the tenant's first state by a conditional
put, and only then deletes them: a worker that loses the race deletes its
copies and uses the winner's. No line is lost or counted twice, as a view is
a set. Consolidators of the old version must be stopped before the new ones
start: a delta they wrote after the conversion listed the bucket would not
be seen.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Iterator
from functools import partial

from services.consolidator.manifest import ColdFile, ColdRun, Manifest
from services.consolidator.merging import COLD_FILE_BYTES, FileSink
from services.consolidator.runs import ZLIB, Ticket, tickets_of
from services.consolidator.s3io import S3Io
from services.consolidator.state import ROOT, StateConflictError, StateTable, TenantState
from shared.layout import cold_file_key, epoch_marker_key, manifest_key, new_batch_id, store_root
from shared.objects import ObjectMissingError

LEGACY_BUCKET = re.compile(r"\d{4}")
LEASE_WAIT_S = 60.0


def _lines(blob: bytes) -> Iterator[bytes]:
    """The lines of a gzip object, decompressed a chunk at a time."""
    inflate = zlib.decompressobj(wbits=31)
    rest = b""
    for at in range(0, len(blob), 1 << 20):
        *lines, rest = (rest + inflate.decompress(blob[at : at + (1 << 20)])).split(b"\n")
        yield from lines
    yield from (rest + inflate.flush()).split(b"\n")


def legacy_tickets(blob: bytes) -> Iterator[Ticket]:
    """Consecutive lines of one ticket as a ticket."""
    group: list[tuple[bytes, bytes]] = []
    for line in _lines(blob):
        token, _, event = line.partition(b"\t")
        if group and token != group[0][0]:
            yield from tickets_of(group)
            group = []
        if line:
            group.append((token, event))
    if group:
        yield from tickets_of(group)


async def convert(io: S3Io, tenant: str, key: str) -> list[ColdRun]:
    """One old object as cold runs (one, unless its lines are out of order)."""
    blob = await io.get(key)
    runs: list[ColdRun] = []
    sink: FileSink | None = None
    run = ""
    last = b""

    async def close() -> None:
        if sink is not None:
            await sink.flush()
            files = (ColdFile.of(f.key, f.size, f.footer, f.stats) for f in sink.files)
            runs.append(ColdRun(run, tuple(files)))

    for n, ticket in enumerate(legacy_tickets(blob)):
        if sink is None or ticket.token <= last:
            await close()
            run = new_batch_id()
            sink = FileSink(
                io, partial(cold_file_key, tenant, run), codec=ZLIB, file_bytes=COLD_FILE_BYTES
            )
        await sink.add(ticket)
        last = ticket.token
        if n % 2000 == 0:
            await asyncio.sleep(0)  # a long conversion leaves the other messages their turn
    await close()
    return [r for r in runs if r.files]


async def initialize(io: S3Io, table: StateTable, tenant: str, owner: str) -> TenantState:
    """Create the tenant's state (version 1), converting the old layout first."""
    if not await table.take_lease(tenant, owner, LEASE_WAIT_S):
        for _ in range(int(LEASE_WAIT_S * 4)):  # another worker is converting: wait for it
            await asyncio.sleep(0.25)
            state = await table.read(tenant)
            if state is not None:
                return state
    try:
        _, dirs = await io.listdir(store_root(tenant), delimiter="/")
        old: list[str] = []
        for d in dirs:
            if LEGACY_BUCKET.fullmatch(d.rstrip("/").rsplit("/", 1)[1]):
                found, _ = await io.listdir(d)
                old += [o.key for o in found]
        try:
            runs = [r for key in old for r in await convert(io, tenant, key)]
        except ObjectMissingError:  # converted and deleted by another worker meanwhile
            state = await table.read(tenant)
            if state is None:
                raise
            return state
        manifest = manifest_key(tenant) if runs else ""
        if runs:
            await io.put(manifest, Manifest(tuple(runs)).encode())
        await io.put(epoch_marker_key(tenant, ROOT, 1), b"")
        state = TenantState(1, {ROOT: 1}, {}, manifest)
        try:
            await table.write(tenant, state)
        except StateConflictError:
            copies = [f.key for r in runs for f in r.files]
            await io.delete([*copies, *([manifest] if manifest else [])])
            existing = await table.read(tenant)
            if existing is None:
                raise
            return existing
        await io.delete(old)
        return state
    finally:
        await table.release_lease(tenant, owner)
