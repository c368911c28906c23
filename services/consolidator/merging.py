"""Streaming k-way merge of sorted files, and sinks that cut files as they fill.

Every rewrite of the store (compaction, sealing, splitting, migration) and
the full scan go through here, in memory bounded by a chunk per input and a
file per output, whatever the size of what is merged.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from services.consolidator.runs import (
    RAW,
    TRAILER,
    FileStats,
    RunWriter,
    Ticket,
    parse_trailer,
    union,
)
from services.consolidator.s3io import S3Io

HOT_FILE_BYTES = 8 * 1024 * 1024  # raw bytes of one written hot file, about
COLD_FILE_BYTES = 32 * 1024 * 1024  # and of a cold one (compressed, about a tenth of that)
MERGE_BUFFER_BYTES = 32 * 1024 * 1024  # what the inputs of one merge read ahead, in all

Blocks = AsyncIterator[list[Ticket]]


class _Source:
    def __init__(self, blocks: Blocks) -> None:
        self.blocks = blocks
        self.buffer: list[Ticket] = []
        self.at = 0

    async def ready(self) -> bool:
        while self.at >= len(self.buffer):
            try:
                self.buffer = await anext(self.blocks)
            except StopAsyncIteration:
                return False
            self.at = 0
        return True


def chunk_for(inputs: int) -> int:
    """Read-ahead of each of `inputs` streams merged at once."""
    return max(256 * 1024, MERGE_BUFFER_BYTES // max(1, inputs))


async def merged(inputs: Sequence[Blocks]) -> AsyncIterator[Ticket]:
    """Tickets of every input in token order, each once with the union of its lines."""
    sources = [_Source(b) for b in inputs]
    heap: list[tuple[bytes, int]] = []
    for i, s in enumerate(sources):
        if await s.ready():
            heap.append((s.buffer[s.at].token, i))
    heapq.heapify(heap)
    while heap:
        token = heap[0][0]
        parts = []
        while heap and heap[0][0] == token:
            _, i = heapq.heappop(heap)
            s = sources[i]
            parts.append(s.buffer[s.at])
            s.at += 1
            if await s.ready():
                heapq.heappush(heap, (s.buffer[s.at].token, i))
        yield union(parts)


async def chained(parts: Sequence[Callable[[], Blocks]]) -> Blocks:
    """The blocks of several files one after the other (the files of one run)."""
    for make in parts:
        async for block in make():
            yield block


@dataclass(frozen=True)
class Written:
    key: str
    size: int
    footer: tuple[int, int]
    stats: FileStats


@dataclass
class FileSink:
    """Tickets in token order into files of about `file_bytes` raw bytes each;
    `kept` (if set) sees each file as written, e.g. to cache it."""

    io: S3Io
    next_key: Callable[[int], str]
    codec: int = RAW
    file_bytes: int = HOT_FILE_BYTES
    kept: Callable[[str, bytes, RunWriter], None] | None = None
    files: list[Written] = field(default_factory=list)
    _writer: RunWriter | None = None

    async def add(self, ticket: Ticket) -> None:
        if self._writer is None:
            self._writer = RunWriter(self.codec, keep_blocks=self.kept is not None)
        self._writer.add(ticket)
        if self._writer.size >= self.file_bytes:
            await self.flush()

    async def flush(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None or not writer.stats.tickets:
            return
        data = writer.finish()
        key = self.next_key(len(self.files))
        await self.io.put(key, data)
        offset, length = _footer_at(data)
        self.files.append(Written(key, len(data), (offset, length), writer.stats))
        if self.kept is not None:
            self.kept(key, data, writer)

    @property
    def raw_bytes(self) -> int:
        return sum(f.stats.raw_bytes for f in self.files) + (
            self._writer.stats.raw_bytes if self._writer else 0
        )

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]


def _footer_at(data: bytes) -> tuple[int, int]:
    return parse_trailer(data[-TRAILER.size :])
