"""The ticket event store: per (tenant, ticket bucket), a set of immutable objects.

A bucket's content is the union of the event lines of every object under its
prefix. Writers only add objects, so two listings are always ordered by
inclusion and a ticket's event set never shrinks: that is what lets several
consolidators run at once without locks. Compaction writes the union of what
it read as one new object *before* deleting what it read, so the union is
never smaller; a reader that finds a listed object gone lists again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.layout import decode_lines, encode_lines, new_batch_id, store_prefix
from shared.objects import ObjectMissingError, delete_keys, get_bytes, list_keys, put_bytes
from shared.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

EventLine = tuple[bytes, bytes]
READ_ATTEMPTS = 5


class StoreRaceError(RuntimeError):
    """Objects kept vanishing between listing and reading; the message is retried."""


Tickets = dict[bytes, tuple[bytes, ...]]  # ticket token -> its event lines in one object


class ObjectCache:
    """Decoded store objects by key, least recently used out first.

    A store object never changes once written (deltas are a pure function of
    their batch, compactions have unique names), so a hit is always right: a
    batch then fetches only the objects written since, not the whole bucket.
    """

    def __init__(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self._items: OrderedDict[str, tuple[Tickets, int]] = OrderedDict()
        self._lines = 0

    def get(self, key: str) -> Tickets | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, tickets: Tickets) -> None:
        size = sum(len(v) for v in tickets.values())
        if key in self._items or size > self.max_lines:
            return
        self._items[key] = (tickets, size)
        self._lines += size
        while self._lines > self.max_lines:
            _, (_, dropped) = self._items.popitem(last=False)
            self._lines -= dropped

    def drop(self, keys: list[str]) -> None:
        for key in keys:
            item = self._items.pop(key, None)
            if item is not None:
                self._lines -= item[1]


def by_ticket(lines: Iterable[EventLine]) -> Tickets:
    grouped: dict[bytes, list[bytes]] = defaultdict(list)
    for token, event in lines:
        grouped[token].append(event)
    return {token: tuple(events) for token, events in grouped.items()}


def decode_object(blob: bytes) -> Tickets:
    return by_ticket(decode_lines(blob))


@dataclass(frozen=True)
class TicketStore:
    s3: S3Client
    bucket: str
    compact_after: int
    cache: ObjectCache = field(default_factory=lambda: ObjectCache(0))

    async def merge(
        self, tenant: str, bucket: int, batch: str, lines: list[EventLine]
    ) -> set[EventLine]:
        """Add `lines` to the bucket and return every line of the tickets they touch."""
        prefix = store_prefix(tenant, bucket)
        await put_bytes(
            self.s3, self.bucket, f"{prefix}d-{batch}.lines.gz", encode_lines(sorted(lines))
        )
        wanted = {token for token, _ in lines}
        objects = await self._read(prefix)
        if len(objects) > self.compact_after:
            everything = {
                (t, e) for tickets in objects.values() for t, es in tickets.items() for e in es
            }
            await self._compact(prefix, list(objects), everything)
            return {line for line in everything if line[0] in wanted}
        return {(t, e) for tickets in objects.values() for t in wanted for e in tickets.get(t, ())}

    async def _read(self, prefix: str) -> dict[str, Tickets]:
        """Every object under the prefix, decoded; a listed object gone means list again."""
        for _ in range(READ_ATTEMPTS):
            keys = await list_keys(self.s3, self.bucket, prefix)
            objects = {k: self.cache.get(k) for k in keys}
            missing = [k for k, v in objects.items() if v is None]
            try:
                blobs = await asyncio.gather(*(get_bytes(self.s3, self.bucket, k) for k in missing))
            except ObjectMissingError:
                continue  # compacted away under us
            for key, blob in zip(missing, blobs, strict=True):
                # Off the event loop, so other messages' heartbeats keep their beat.
                decoded = await asyncio.to_thread(decode_object, blob)
                objects[key] = decoded
                self.cache.put(key, decoded)
            return {k: v for k, v in objects.items() if v is not None}
        raise StoreRaceError(f"{prefix}: objects kept vanishing")

    async def _compact(self, prefix: str, keys: list[str], lines: set[EventLine]) -> None:
        await put_bytes(
            self.s3,
            self.bucket,
            f"{prefix}c-{new_batch_id()}.lines.gz",
            encode_lines(sorted(lines)),
        )
        await delete_keys(self.s3, self.bucket, keys)
        self.cache.drop(keys)


def make_store(s3: S3Client, settings: Settings) -> TicketStore:
    return TicketStore(
        s3=s3,
        bucket=settings.bucket,
        compact_after=settings.compact_after,
        cache=ObjectCache(settings.store_cache_lines),
    )
