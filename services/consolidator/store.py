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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.layout import decode_lines, encode_lines, new_batch_id, store_prefix
from shared.objects import ObjectMissingError, delete_keys, get_bytes, list_keys, put_bytes

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

EventLine = tuple[bytes, bytes]
READ_ATTEMPTS = 5


class StoreRaceError(RuntimeError):
    """Objects kept vanishing between listing and reading; the message is retried."""


@dataclass(frozen=True)
class TicketStore:
    s3: S3Client
    bucket: str
    compact_after: int

    async def merge(
        self, tenant: str, bucket: int, batch: str, lines: list[EventLine]
    ) -> set[EventLine]:
        """Add `lines` to the bucket and return every line of the tickets they touch."""
        prefix = store_prefix(tenant, bucket)
        await put_bytes(
            self.s3, self.bucket, f"{prefix}d-{batch}.lines.gz", encode_lines(sorted(lines))
        )
        wanted = {token for token, _ in lines}
        for _ in range(READ_ATTEMPTS):
            keys = await list_keys(self.s3, self.bucket, prefix)
            try:
                blobs = await asyncio.gather(*(get_bytes(self.s3, self.bucket, k) for k in keys))
            except ObjectMissingError:
                continue  # compacted away under us: list again
            break
        else:
            raise StoreRaceError(f"{prefix}: objects kept vanishing")
        if len(keys) > self.compact_after:
            everything = {line for blob in blobs for line in decode_lines(blob)}
            await self._compact(prefix, keys, everything)
            return {line for line in everything if line[0] in wanted}
        return {line for blob in blobs for line in decode_lines(blob) if line[0] in wanted}

    async def _compact(self, prefix: str, keys: list[str], lines: set[EventLine]) -> None:
        await put_bytes(
            self.s3,
            self.bucket,
            f"{prefix}c-{new_batch_id()}.lines.gz",
            encode_lines(sorted(lines)),
        )
        await delete_keys(self.s3, self.bucket, keys)
