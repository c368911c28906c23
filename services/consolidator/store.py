"""The ticket event store: per tenant, hot partitions of recent tickets and sealed cold runs.

A ticket's content is the union of its lines in the objects of its hot
partition and in the cold runs of the tenant's manifest. A batch writes its
lines as a delta in each partition it touches *before* it lists that
partition, and its view is what that listing shows plus the cold runs of the
state it holds; the epoch marker in the listing tells it whether that state
is still the partition's. So views of a ticket are ordered by inclusion
whatever the number of consolidators, and a batch reads only the tickets it
touches: whole small objects, blocks of big ones through their bloom filters
and block indexes, all cached by immutable key. The argument in full is in
docs/design.md, "The ticket store".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.consolidator.cache import ByteCache
from services.consolidator.compaction import Compactor
from services.consolidator.migrate import initialize
from services.consolidator.partition import MAJOR_MIN_BYTES, Listing, Policy, list_partition
from services.consolidator.reader import Reader
from services.consolidator.runs import Array, Ticket, tickets_of, token_hashes, write_file
from services.consolidator.s3io import S3Io
from services.consolidator.scan import scan_store
from services.consolidator.state import StateTable, TenantState, now_ms
from shared.layout import delta_key
from shared.objects import ObjectMissingError
from shared.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client

    from shared.aws import Aws

EventLine = tuple[bytes, bytes]
READ_ATTEMPTS = 8
FREEZE_WAIT_S = 30.0  # a batch waits this long for a split, at most
FREEZE_TIMEOUT_MS = 60_000  # a split frozen longer than this is finished by whoever waits


class StoreRaceError(RuntimeError):
    """The store kept changing under a batch; the message is retried."""


@dataclass
class TicketStore:
    io: S3Io
    table: StateTable
    reader: Reader
    compactor: Compactor
    states: dict[str, TenantState] = field(default_factory=dict)

    @property
    def s3(self) -> S3Client:  # the handler's own reads and writes
        return self.io.s3

    @property
    def bucket(self) -> str:
        return self.io.bucket

    async def state(self, tenant: str) -> TenantState:
        """The tenant's state as stored now (created, and the old layout migrated, if new)."""
        state = await self.table.read(tenant)
        if state is None:
            state = await initialize(self.io, self.table, tenant, self.compactor.owner)
        self.states[tenant] = state
        return state

    async def merge(self, tenant: str, batch: str, lines: Sequence[EventLine]) -> set[EventLine]:
        """Add `lines` (of batch `batch`) and return every line of the tickets they touch."""
        tickets = tickets_of(lines)
        if not tickets:
            return set()
        h1, h2 = token_hashes([t.token for t in tickets])
        state = self.states.get(tenant) or await self.state(tenant)
        for _ in range(READ_ATTEMPTS):
            groups: dict[str, list[int]] = {}
            for i, part in enumerate(state.route(h1)):
                groups.setdefault(part, []).append(i)
            if any(p in state.freezing for p in groups):
                state = await self._await_split(tenant, [p for p in groups if p in state.freezing])
                continue
            listings = await asyncio.gather(
                *(
                    self._add(tenant, p, batch, [tickets[i] for i in idx])
                    for p, idx in groups.items()
                )
            )
            if any(
                ls.mark is None or ls.mark > state.parts[p]
                for p, ls in zip(groups, listings, strict=True)
            ):
                state = await self.state(tenant)  # a split or a seal moved the partition
                continue
            try:
                found = await self._view(state, groups, listings, tickets, h1, h2)
            except ObjectMissingError:
                state = await self.state(tenant)  # compacted away under us: list again
                continue
            for p, ls in zip(groups, listings, strict=True):
                self.compactor.note(tenant, p, ls)
            return {(token, e) for token, parts in found.items() for t in parts for e in t.lines()}
        raise StoreRaceError(f"{tenant}: the store kept changing under batch {batch}")

    async def _add(self, tenant: str, part: str, batch: str, tickets: list[Ticket]) -> Listing:
        """Write the batch's delta of a partition, then list the partition."""
        data, writer = write_file(tickets)
        key = delta_key(tenant, part, batch)
        await self.io.put(key, data)
        self.reader.remember(key, data, writer.blocks)
        return await list_partition(self.io, tenant, part)

    async def _view(
        self,
        state: TenantState,
        groups: dict[str, list[int]],
        listings: Sequence[Listing],
        tickets: list[Ticket],
        h1: Array,
        h2: Array,
    ) -> dict[bytes, list[Ticket]]:
        manifest = await self.reader.manifest(state.manifest)
        finds = []
        for idx, listing in zip(groups.values(), listings, strict=True):
            tokens = [tickets[i].token for i in idx]
            hashes = (h1[idx], h2[idx])
            finds += [self.reader.find(o.key, o.size, tokens, hashes) for o in listing.objects]
        tokens = [t.token for t in tickets]
        finds += [self.reader.find_cold(run, tokens, (h1, h2)) for run in manifest.runs]
        found: dict[bytes, list[Ticket]] = {t.token: [t] for t in tickets}
        for result in await asyncio.gather(*finds):
            for t in result:
                found[t.token].append(t)
        return found

    async def _await_split(self, tenant: str, parts: list[str]) -> TenantState:
        """Wait for the splits of `parts`; finish one that its splitter left unfinished."""
        deadline = time.monotonic() + FREEZE_WAIT_S
        while True:
            state = await self.state(tenant)
            frozen = [p for p in parts if p in state.freezing]
            if not frozen:
                return state
            for p in frozen:
                if now_ms() - state.freezing[p] > FREEZE_TIMEOUT_MS:
                    await self.compactor.complete_split(tenant, p)
            if time.monotonic() > deadline:
                raise StoreRaceError(f"{tenant}: partitions {frozen} stay frozen")
            await asyncio.sleep(0.2)

    def scan(self, tenant: str) -> AsyncIterator[tuple[bytes, list[bytes]]]:
        """Every ticket of the tenant once, in token order, with its distinct event
        lines, in bounded memory, beside live consolidators (`scan.py`)."""
        return scan_store(self, tenant)


def build_store(
    s3: S3Client,
    dynamodb: DynamoDBClient,
    bucket: str,
    table: str,
    policy: Policy,
    cache_bytes: int,
) -> TicketStore:
    io = S3Io(s3, bucket)
    reader = Reader(io, ByteCache(cache_bytes))
    states = StateTable(dynamodb, table)
    compactor = Compactor(io, reader, states, policy)
    return TicketStore(io, states, reader, compactor, compactor.states)


def make_store(aws: Aws, settings: Settings) -> TicketStore:
    policy = Policy(
        fanout=settings.compact_after,
        retention_ms=int(settings.store_retention_s * 1000),
        open_retention_ms=int(settings.store_open_retention_s * 1000),
        partition_bytes=settings.store_partition_bytes,
        max_partitions=settings.store_max_partitions,
        major_min_bytes=min(MAJOR_MIN_BYTES, settings.store_partition_bytes // 4),
    )
    return build_store(
        aws.s3, aws.dynamodb, settings.bucket, settings.store_table, policy,
        settings.store_cache_bytes,
    )  # fmt: skip
