"""Reading a tenant's whole store: every ticket once, in token order.

A k-way merge of every hot object and cold run in bounded memory. Each
ticket comes from one listing of its partition and one state (checked by the
epoch markers, as a batch does), so it is whole as of then; when a
compaction removes an object being read, the scan lists again and goes on
after the last ticket it gave. `telemetry rebuild` replays tenants with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

from services.consolidator.manifest import Manifest
from services.consolidator.merging import Blocks, chained, merged
from services.consolidator.partition import Listing, list_partition
from services.consolidator.reader import Reader
from shared.objects import ObjectMissingError

if TYPE_CHECKING:
    from services.consolidator.store import TicketStore

SCAN_BUFFER_BYTES = 64 * 1024 * 1024  # read-ahead of all the objects merged at once
SCAN_ATTEMPTS = 20
SCAN_MIN_CHUNK_BYTES = 256 * 1024


class ScanRaceError(RuntimeError):
    """The store kept changing under a scan; run it again."""


async def scan_store(store: TicketStore, tenant: str) -> AsyncIterator[tuple[bytes, list[bytes]]]:
    last = b""
    for _ in range(SCAN_ATTEMPTS):
        state = await store.state(tenant)
        listings = [await list_partition(store.io, tenant, p) for p in sorted(state.parts)]
        if any(ls.mark is None or ls.mark > state.parts[p]
               for p, ls in zip(sorted(state.parts), listings, strict=True)):  # fmt: skip
            continue  # a seal or a split moved a partition: as a batch does, read again
        try:
            manifest = await store.reader.manifest(state.manifest)
            inputs = _inputs(store.reader, listings, manifest, last)
            async for t in merged(inputs):
                yield t.token, t.lines()
                last = t.token
            return
        except ObjectMissingError:
            continue  # compacted away meanwhile: list again, from where we were
    raise ScanRaceError(f"{tenant}: the store kept changing under the scan")


def _inputs(
    reader: Reader, listings: list[Listing], manifest: Manifest, after: bytes
) -> list[Blocks]:
    n = sum(len(ls.objects) for ls in listings) + len(manifest.runs)
    chunk = max(SCAN_MIN_CHUNK_BYTES, SCAN_BUFFER_BYTES // max(1, n))
    inputs = [
        reader.stream(o.key, o.size, chunk_bytes=chunk, after=after)
        for ls in listings
        for o in ls.objects
    ]
    for run in manifest.runs:
        files = [f for f in run.files if f.last > after]
        at = [(f.footer_at, f.footer_len) for f in files]
        inputs.append(
            chained(
                [
                    partial(reader.stream, f.key, f.size, a, chunk, after)
                    for f, a in zip(files, at, strict=True)
                ]
            )
        )
    return inputs
