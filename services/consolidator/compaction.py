"""Compaction of a tenant's store: minor and major merges, sealing, splitting, cold merges.

Each step writes what it produces before it deletes what it read, and every
step that moves lines out of a hot partition (sealing, splitting) or out of
the cold runs a reader may hold (cold merges) first moves the tenant's
state by a conditional put, and for a partition writes its new epoch marker
before deleting anything in it (docs/design.md, "The ticket store"). So any
number of compactors may run at once; the lease only saves the work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

from services.consolidator import coldmerge, splitting
from services.consolidator.manifest import ColdFile, ColdRun, Manifest
from services.consolidator.merging import (
    COLD_FILE_BYTES,
    FileSink,
    Written,
    chunk_for,
    merged,
)
from services.consolidator.partition import Listing, Policy, list_partition, plan
from services.consolidator.reader import Reader
from services.consolidator.runs import ZLIB, RunWriter, Ticket
from services.consolidator.s3io import Listed, S3Io
from services.consolidator.state import (
    CAS_ATTEMPTS,
    LEASE_S,
    StateConflictError,
    StateTable,
    TenantState,
    now_ms,
)
from shared.layout import (
    cold_file_key,
    epoch_marker_key,
    hot_file_key,
    manifest_key,
    new_batch_id,
)
from shared.objects import ObjectMissingError

log = logging.getLogger(__name__)

COLD = "#cold"  # pending work on the cold runs, beside partition ids


@dataclass
class Compactor:
    io: S3Io
    reader: Reader
    table: StateTable
    policy: Policy
    states: dict[str, TenantState] = field(default_factory=dict)  # shared with the store
    clock: Callable[[], int] = now_ms  # what sealing calls now (a replay sets its own)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    # tenant -> partitions (and COLD) with work, with the last listing a batch saw of each
    pending: dict[str, dict[str, Listing | None]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)  # what was done, and lines rewritten
    _task: asyncio.Task[None] | None = None
    _leases: dict[str, float] = field(default_factory=dict)  # tenant -> when ours ends

    def note(self, tenant: str, partition: str, listing: Listing) -> None:
        """A batch saw this listing: remember the partition if it has work."""
        if plan(listing, self.policy).kind != "none":
            self.pending.setdefault(tenant, {})[partition] = listing

    def tick(self) -> None:
        """Start working through the pending tenants, unless already at it."""
        if self.pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.run_pending())

    async def close(self) -> None:
        """Stop: anything half done is left as it is, which is always safe."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for tenant in list(self._leases):
            await self.table.release_lease(tenant, self.owner)
        self._leases.clear()

    async def _lease(self, tenant: str) -> bool:
        """Hold the tenant's lease (renewed when a third of it is left); False if another
        worker holds it. Held across batches, it costs a write every 40 s, not per merge."""
        if self._leases.get(tenant, 0.0) - time.monotonic() > LEASE_S / 3:
            return True
        asked = time.monotonic()
        if await self.table.take_lease(tenant, self.owner, LEASE_S):
            self._leases[tenant] = asked + LEASE_S
            return True
        self._leases.pop(tenant, None)
        return False

    async def run_pending(self) -> None:
        for tenant in list(self.pending):
            if not await self._lease(tenant):
                continue  # another worker compacts it; try again later
            work = self.pending.pop(tenant, {})
            try:
                await self.compact(tenant, work)
            except Exception:
                log.exception("compaction of %s failed; it is retried later", tenant)
                self.pending.setdefault(tenant, {}).update(dict.fromkeys(work))

    async def compact(self, tenant: str, work: dict[str, Listing | None]) -> None:
        for partition, listing in sorted(work.items()):
            if partition == COLD:
                continue
            seen: Listing | bool | None = listing
            while seen is not False:
                seen = await self.compact_partition(
                    tenant, partition, seen if isinstance(seen, Listing) else None
                )
                if seen is not False and not await self._lease(tenant):
                    return
        if COLD in work:
            while await self.compact_cold(tenant):
                if not await self._lease(tenant):
                    return

    async def compact_all(self, tenant: str) -> None:
        """Everything the tenant's store needs now (tests and benchmarks)."""
        while True:
            state = await self.table.read(tenant)
            if state is None:
                return
            self.states[tenant] = state
            before = sum(self.counts.values())
            await self.compact(tenant, dict.fromkeys([*state.parts, COLD]))
            if sum(self.counts.values()) == before:
                return

    async def major(self, tenant: str) -> None:
        """A major merge of every partition now: all that is sealable is sealed (an
        operator's tool, e.g. before a rebuild; tests and benchmarks)."""
        state = await self.table.read(tenant)
        for partition in sorted(state.parts if state else ()):
            listing = await list_partition(self.io, tenant, partition)
            if listing.objects and listing.mark is not None:
                await self._major(tenant, partition, listing)

    async def compact_partition(
        self, tenant: str, partition: str, listing: Listing | None = None
    ) -> Listing | bool:
        """One merge (or a split) of a partition; False when there was nothing to do, else
        what the partition holds now as far as this merge knows (True: list it again).
        `listing` is one a batch just made, saving a LIST: any listing is safe to act on
        (an input gone means another compactor was faster, and nothing is done)."""
        state = self.states.get(tenant) or await self.table.read(tenant)
        if state is None or partition not in state.parts:
            return False
        if partition in state.freezing:
            await self.complete_split(tenant, partition)
            return False
        if listing is None:
            listing = await list_partition(self.io, tenant, partition)
        if listing.mark is None:
            return False
        work = plan(listing, self.policy)
        try:
            if work.kind == "minor":
                written = await self._rewrite(tenant, partition, work.inputs)
                gone = {o.key for o in work.inputs}
                rest = [o for o in listing.objects if o.key not in gone]
                return Listing([*rest, *written], listing.mark, listing.marks)
            if work.kind == "major":
                kept, largest = await self._major(tenant, partition, listing)
                # Splitting helps only if no single ticket is most of what is kept.
                if kept > self.policy.partition_bytes and largest * 2 < kept:
                    await self.split(tenant, partition)
                return True
        except ObjectMissingError:
            return False  # another compactor took these inputs: look again later
        return False

    async def write_state(self, tenant: str, new: TenantState) -> None:
        await self.table.write(tenant, new)
        self.states[tenant] = new

    async def fill(
        self,
        tickets: AsyncIterator[Ticket],
        sinks: list[FileSink],
        choose: Callable[[Ticket], int] = lambda _: 0,
    ) -> None:
        """Tickets into sinks[choose(ticket)]; if an input vanished (another
        compactor was faster), what was written is removed and the error raised."""
        try:
            async for t in tickets:
                await sinks[choose(t)].add(t)
            for sink in sinks:
                await sink.flush()
        except ObjectMissingError:
            await self.io.delete([k for sink in sinks for k in sink.keys])
            raise

    def merged_inputs(self, inputs: list[Listed]) -> AsyncIterator[Ticket]:
        chunk = chunk_for(len(inputs))
        return merged([self.reader.stream(o.key, o.size, chunk_bytes=chunk) for o in inputs])

    def cold_sink(self, tenant: str, run: str) -> FileSink:
        return FileSink(
            self.io, partial(cold_file_key, tenant, run), codec=ZLIB, file_bytes=COLD_FILE_BYTES
        )

    def remember(self, key: str, data: bytes, writer: RunWriter) -> None:
        self.reader.remember(key, data, writer.blocks)

    async def _rewrite(self, tenant: str, partition: str, inputs: list[Listed]) -> list[Listed]:
        """Minor merge: inputs into one run of the partition, nothing sealed."""
        sink = FileSink(self.io, partial(hot_file_key, tenant, partition, "r", new_batch_id()),
                        kept=self.remember)  # fmt: skip
        await self.fill(self.merged_inputs(inputs), [sink])
        keys = [o.key for o in inputs]
        await self.io.delete(keys)
        self.reader.forget(keys)
        self.counts["minor"] += 1
        self.counts["lines rewritten"] += sum(f.stats.lines for f in sink.files)
        return [Listed(f.key, f.size) for f in sink.files]

    async def _major(self, tenant: str, partition: str, listing: Listing) -> tuple[int, int]:
        """Everything of the partition merged; closed idle tickets sealed into a cold run.
        Returns the raw bytes kept hot, and those of its largest ticket."""
        now = self.clock()
        run = new_batch_id()
        hot = FileSink(self.io, partial(hot_file_key, tenant, partition, "m", run),
                       kept=self.remember)  # fmt: skip
        cold = self.cold_sink(tenant, run)
        largest = 0

        def choose(t: Ticket) -> int:
            nonlocal largest
            if self.policy.sealable(t, now):
                return 1
            largest = max(largest, len(t.events))
            return 0

        await self.fill(self.merged_inputs(listing.objects), [hot, cold], choose)
        keys = [o.key for o in listing.objects]
        if cold.files and not await self._seal(tenant, partition, run, cold.files, listing):
            await self.io.delete(cold.keys)  # the partition moved on: nothing is deleted
            return 0, 0
        await self.io.delete(keys)
        self.reader.forget(keys)
        self.counts["major"] += 1
        self.counts["sealed lines"] += sum(f.stats.lines for f in cold.files)
        self.counts["lines rewritten"] += sum(f.stats.lines for f in hot.files + cold.files)
        return hot.raw_bytes, largest

    async def publish(self, tenant: str, manifest: Manifest) -> str:
        key = manifest_key(tenant)
        await self.io.put(key, manifest.encode())
        return key

    async def _seal(
        self, tenant: str, partition: str, run: str, files: list[Written], listing: Listing
    ) -> bool:
        """Add the sealed run to the manifest and move the partition's epoch, then mark it."""
        sealed = ColdRun(run, tuple(ColdFile.of(f.key, f.size, f.footer, f.stats) for f in files))
        for _ in range(CAS_ATTEMPTS):
            state = await self.table.read(tenant)
            if state is None or partition not in state.parts or partition in state.freezing:
                return False
            try:
                manifest = await self.reader.manifest(state.manifest)
            except ObjectMissingError:
                continue  # replaced since the state was read: read it again
            key = await self.publish(tenant, manifest.with_run(sealed))
            new = state.next(parts={**state.parts, partition: state.version + 1}, manifest=key)
            try:
                await self.write_state(tenant, new)
            except StateConflictError:
                await self.io.delete([key])
                continue
            await self.io.put(epoch_marker_key(tenant, partition, new.version), b"")
            await self.io.delete([*listing.marks, *([state.manifest] if state.manifest else [])])
            if manifest.with_run(sealed).merge_plan():
                self.pending.setdefault(tenant, {})[COLD] = None
            return True
        return False

    async def compact_cold(self, tenant: str) -> bool:
        """One tiered merge of cold runs; False when none is due."""
        return await coldmerge.compact_cold(self, tenant)

    async def split(self, tenant: str, partition: str) -> bool:
        """Freeze the partition (batches touching it wait), then move it into two."""
        return await splitting.split(self, tenant, partition)

    async def complete_split(self, tenant: str, partition: str) -> None:
        """Copy a frozen partition into its two children and make them live."""
        await splitting.complete_split(self, tenant, partition)
