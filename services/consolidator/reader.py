"""Reading store files through the byte-bounded cache: footers, blocks, lookups, streams.

A lookup asks a file's bloom filter first, then fetches only the blocks of the
tickets that may be there: one GET of the whole body when those blocks are a
large share of it, otherwise at most `MAX_RANGES` range GETs. What a batch
reads is therefore bounded by the tickets it touches, not by the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from services.consolidator.cache import ByteCache
from services.consolidator.manifest import ColdRun, Manifest
from services.consolidator.runs import (
    BLOOM_K,
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


@dataclass(frozen=True)
class RunIndex:
    """What a batch needs to look tickets up in a cold run, in one numpy pass: the
    files' key ranges and, end to end, their bloom filters (the footers keep their
    block indexes only, so the bits are held once)."""

    firsts: Array  # 'S': first token of each file
    lasts: Array
    footers: list[Footer]
    bloom: Array  # uint8: every file's filter, one after the other
    starts: Array  # uint64: bit offset of each file's filter
    bits: Array  # uint64: each file's filter size in bits

    @property
    def nbytes(self) -> int:
        return len(self.bloom) + sum(f.nbytes for f in self.footers) + 64 * len(self.footers)

    def candidates(self, tokens: Array, h1: Array, h2: Array) -> dict[int, list[int]]:
        """File -> the tickets (indexes into `tokens`) that file may hold."""
        where = np.searchsorted(self.firsts, tokens, side="right") - 1
        inside = (where >= 0) & (tokens <= self.lasts[np.maximum(where, 0)])
        idx = np.flatnonzero(inside)
        if not len(idx):
            return {}
        files = where[idx]
        probes = _probes(h1[idx], h2[idx], self.bits[files]) + self.starts[files][:, None]
        hit = (self.bloom[probes >> np.uint64(3)] >> (probes & np.uint64(7)).astype(np.uint8)) & 1
        out: dict[int, list[int]] = {}
        for i in idx[hit.all(axis=1)].tolist():
            out.setdefault(int(where[i]), []).append(i)
        return out


def _probes(h1: Array, h2: Array, bits: Array) -> Array:
    steps = np.arange(BLOOM_K, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (h1[:, None] + steps[None, :] * h2[:, None]) % np.asarray(bits, np.uint64)[:, None]


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

    async def run_index(self, run: ColdRun) -> RunIndex:
        cached: RunIndex | None = self.cache.get(("r", run.id))
        if cached is not None:
            return cached
        footers = await asyncio.gather(
            *(self._cold_footer(f.key, (f.footer_at, f.footer_len)) for f in run.files)
        )
        bits = np.array([f.bloom_bits for f in footers], dtype=np.uint64)
        index = RunIndex(
            np.array([f.first for f in run.files], dtype="S"),
            np.array([f.last for f in run.files], dtype="S"),
            [replace(f, bloom=np.zeros(0, np.uint8)) for f in footers],
            np.concatenate([f.bloom for f in footers]),
            np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.uint64),
            bits,
        )
        self.cache.put(("r", run.id), index, index.nbytes)
        return index

    async def _cold_footer(self, key: str, at: tuple[int, int]) -> Footer:
        return parse_footer(await self.io.get(key, at[0], at[0] + at[1]))

    async def find_cold(
        self, run: ColdRun, tokens: Sequence[bytes], hashes: tuple[Array, Array]
    ) -> list[Ticket]:
        """The tickets among `tokens` that a cold run holds; only the blocks found to
        hold them are fetched, and only those are kept in the cache."""
        index = await self.run_index(run)
        found = []
        wanted = np.array(tokens, dtype="S")
        for f, idx in index.candidates(wanted, *hashes).items():
            footer = index.footers[f]
            by_block: dict[int, list[bytes]] = {}
            for i in idx:
                b = footer.block_of(tokens[i])
                if b >= 0:
                    by_block.setdefault(b, []).append(tokens[i])
            blocks = await self.blocks(run.files[f].key, footer, set(by_block), keep_all=False)
            for b, want in by_block.items():
                found += [t for token in want if (t := blocks[b].get(token)) is not None]
        return found

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
        after: bytes = b"",
    ) -> AsyncIterator[list[Ticket]]:
        """Every block of a file in order (its tickets after `after` only), at most
        `chunk_bytes` fetched at a time; cached blocks are used, fetched ones are
        not kept (a merge deletes them)."""
        footer = await self.footer(key, size, at)
        offsets = footer.offsets
        n = len(offsets) - 1
        i = max(0, footer.block_of(after)) if after else 0
        while i < n:
            block: Block | None = self.cache.get(("b", key, i))
            if block is not None:
                yield [t for t in block.values() if t.token > after]
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
                tickets = decode_block(chunk, footer.codec)
                yield [t for t in tickets if t.token > after] if after else tickets
            i = j
