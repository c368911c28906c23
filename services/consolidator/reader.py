"""Reading store files through the byte-bounded cache: footers, blocks, lookups, streams.

A lookup asks a file's bloom filter first, then fetches only the blocks of the
tickets that may be there: one GET of the whole body when those blocks are a
large share of it, otherwise at most `MAX_RANGES` range GETs. What a batch
reads is therefore bounded by the tickets it touches, not by the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from services.consolidator.cache import ByteCache
from services.consolidator.manifest import Manifest
from services.consolidator.runs import (
    Array,
    Footer,
    Ticket,
    decode_block,
    parse_file,
    parse_footer,
    parse_trailer,
)
from services.consolidator.s3io import S3Io

Block = dict[bytes, Ticket]
WHOLE_BYTES = 256 * 1024  # smaller objects are read whole at once
TAIL_BYTES = 64 * 1024  # first guess of a footer's size when it is not known
MAX_RANGES = 4  # range GETs per file per lookup
CHUNK_BYTES = 4 * 1024 * 1024  # what a stream reads at once


def block_nbytes(block: Block) -> int:
    return 64 + sum(len(t.token) + len(t.events) + 160 for t in block.values())


def _ranges(wanted: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """Blocks as at most `limit` runs [a, b), joining the smallest gaps first."""
    runs = [[b, b + 1] for b in wanted]
    merged: list[list[int]] = []
    for r in runs:
        if merged and merged[-1][1] == r[0]:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    while len(merged) > limit:
        gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
        i = gaps.index(min(gaps))
        merged[i : i + 2] = [[merged[i][0], merged[i + 1][1]]]
    return [(a, b) for a, b in merged]


@dataclass
class Reader:
    io: S3Io
    cache: ByteCache

    def remember(self, key: str, data: bytes, blocks: Sequence[Sequence[Ticket]]) -> None:
        """A file this process just wrote: nobody needs to fetch it back here."""
        offset, length = parse_trailer(data)
        footer = parse_footer(data[offset : offset + length])
        self._keep(key, footer, {i: {t.token: t for t in b} for i, b in enumerate(blocks)})

    def forget(self, keys: Sequence[str]) -> None:
        for key in keys:
            footer = self.cache.get(("f", key))
            self.cache.drop(("f", key))
            if footer is not None:
                for i in range(len(footer.offsets) - 1):
                    self.cache.drop(("b", key, i))

    def _keep(self, key: str, footer: Footer, blocks: dict[int, Block]) -> None:
        self.cache.put(("f", key), footer, footer.nbytes)
        for i, block in blocks.items():
            self.cache.put(("b", key, i), block, block_nbytes(block))

    async def manifest(self, key: str) -> Manifest:
        if not key:
            return Manifest()
        cached: Manifest | None = self.cache.get(("m", key))
        if cached is None:
            cached = Manifest.decode(await self.io.get(key))
            self.cache.put(("m", key), cached, cached.nbytes)
        return cached

    async def footer(self, key: str, size: int, at: tuple[int, int] | None = None) -> Footer:
        cached: Footer | None = self.cache.get(("f", key))
        if cached is not None:
            return cached
        if at is not None:
            footer = parse_footer(await self.io.get(key, at[0], at[0] + at[1]))
        elif size <= WHOLE_BYTES:
            footer, blocks = parse_file(await self.io.get(key))
            self._keep(key, footer, {i: {t.token: t for t in b} for i, b in enumerate(blocks)})
            return footer
        else:
            tail = await self.io.get(key, -min(size, TAIL_BYTES))
            offset, length = parse_trailer(tail)
            start = len(tail) - 24 - length
            if start >= 0:
                footer = parse_footer(tail[start : start + length])
            else:
                footer = parse_footer(await self.io.get(key, offset, offset + length))
        self.cache.put(("f", key), footer, footer.nbytes)
        return footer

    async def blocks(
        self, key: str, footer: Footer, wanted: set[int], keep_all: bool = True
    ) -> dict[int, Block]:
        """The wanted blocks; when the whole body is read, the others are kept too if
        `keep_all` (hot files, whose other tickets the next batches want)."""
        out: dict[int, Block] = {}
        missing = []
        for b in sorted(wanted):
            block = self.cache.get(("b", key, b))
            if block is None:
                missing.append(b)
            else:
                out[b] = block
        if not missing:
            return out
        offsets = footer.offsets
        need = sum(offsets[b + 1] - offsets[b] for b in missing)
        whole = need * 4 >= offsets[-1]
        spans = [(0, len(offsets) - 1)] if whole else _ranges(missing, MAX_RANGES)
        datas = await asyncio.gather(*(self.io.get(key, offsets[a], offsets[b]) for a, b in spans))
        for (a, b), data in zip(spans, datas, strict=True):
            for i in range(a, b):
                if not keep_all and i not in wanted:
                    continue
                chunk = data[offsets[i] - offsets[a] : offsets[i + 1] - offsets[a]]
                block = {t.token: t for t in decode_block(chunk, footer.codec)}
                self.cache.put(("b", key, i), block, block_nbytes(block))
                if i in wanted:
                    out[i] = block
        return out

    async def find(
        self,
        key: str,
        size: int,
        tokens: Sequence[bytes],
        hashes: tuple[Array, Array],
        at: tuple[int, int] | None = None,
    ) -> list[Ticket]:
        """The tickets among `tokens` that the file holds (hashes: `token_hashes(tokens)`).
        `at` (where the footer is) is known for cold files: only their wanted blocks are
        kept in the cache."""
        footer = await self.footer(key, size, at)
        by_block: dict[int, list[bytes]] = {}
        for i in np.flatnonzero(footer.may_hold(*hashes)).tolist():
            b = footer.block_of(tokens[i])
            if b >= 0:
                by_block.setdefault(b, []).append(tokens[i])
        if not by_block:
            return []
        blocks = await self.blocks(key, footer, set(by_block), keep_all=at is None)
        found = []
        for b, wanted in by_block.items():
            for token in wanted:
                ticket = blocks[b].get(token)
                if ticket is not None:
                    found.append(ticket)
        return found

    async def stream(
        self,
        key: str,
        size: int,
        at: tuple[int, int] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> AsyncIterator[list[Ticket]]:
        """Every block of a file in order, at most `chunk_bytes` fetched at a time;
        cached blocks are used, fetched ones are not kept (a merge deletes them)."""
        footer = await self.footer(key, size, at)
        offsets = footer.offsets
        n = len(offsets) - 1
        i = 0
        while i < n:
            block: Block | None = self.cache.get(("b", key, i))
            if block is not None:
                yield list(block.values())
                i += 1
                continue
            j = i + 1
            while (
                j < n
                and offsets[j + 1] - offsets[i] <= chunk_bytes
                and self.cache.get(("b", key, j)) is None
            ):
                j += 1
            data = await self.io.get(key, offsets[i], offsets[j])
            for k in range(i, j):
                chunk = data[offsets[k] - offsets[i] : offsets[k + 1] - offsets[i]]
                yield decode_block(chunk, footer.codec)
            i = j
