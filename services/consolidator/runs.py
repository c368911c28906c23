"""The one file format of the ticket store: a sorted run of tickets in blocks.

A file holds tickets in increasing token order, each with its distinct event
lines, cut into blocks of about `BLOCK_BYTES`; a footer indexes the blocks by
their first token and carries a bloom filter of the file's tickets, so a
reader that knows the footer fetches only the blocks of the tickets it wants
(S3 range GETs), and skips the file altogether for a ticket that is not in it.
Each ticket also carries what sealing needs (the time of its newest event,
whether it holds a closing), so compaction never parses an event.

    file    = block* footer trailer
    block   = payload, raw or zlib (per file)
    payload = u32 n | u32 token_len[n] | u32 blob_len[n] | i64 last_ms[n] | u8 flags[n]
              | tokens | blobs                (blob: the ticket's events, joined by \\n)
    footer  = u32 n_blocks | u32 codec | u64 tickets | u64 lines | u64 bloom_bits | u32 k
              | u64 offsets[n_blocks + 1] | u32 first_len[n_blocks] | first tokens | bloom
    trailer = u64 footer_offset | u64 footer_len | magic (8 bytes)
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from shared.events import to_ms

Array = np.ndarray[Any, Any]
MAGIC = b"TSTORE01"
TRAILER = struct.Struct("<QQ8s")
FOOTER_HEAD = struct.Struct("<IIQQQI")
BLOCK_BYTES = 64 * 1024
RAW, ZLIB = 0, 1
ZLIB_LEVEL = 1  # 300 MB/s on event lines, ratio about 9
BLOOM_BITS_PER_KEY = 24  # false positives about 1 in 100,000 checks
BLOOM_K = 17
CLOSED = 1  # flags bit: the ticket's lines hold a ticket_closed


class CorruptRunError(ValueError):
    """A store object that does not follow the run format."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """One ticket's lines in one file: `events` sorted, distinct, joined by \\n."""

    token: bytes
    events: bytes
    last_ms: int
    flags: int

    def lines(self) -> list[bytes]:
        return self.events.split(b"\n")


def event_summary(event: bytes) -> tuple[int, int]:
    """(time of the event in epoch ms, flags) of a canonical event line."""
    try:
        doc = orjson.loads(event)
        at = to_ms(datetime.fromisoformat(doc["occurred_at"]))
        return at, CLOSED if doc.get("type") == "ticket_closed" else 0
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 2**62, 0  # unreadable: never idle, so never sealed on its account


def tickets_of(lines: Iterable[tuple[bytes, bytes]]) -> list[Ticket]:
    """Event lines (any order, repeats allowed) as sorted tickets with their summaries."""
    grouped: dict[bytes, set[bytes]] = {}
    for token, event in lines:
        grouped.setdefault(token, set()).add(event)
    out = []
    for token in sorted(grouped):
        events = sorted(grouped[token])
        last, flags = 0, 0
        for e in events:
            at, f = event_summary(e)
            last, flags = max(last, at), flags | f
        out.append(Ticket(token, b"\n".join(events), last, flags))
    return out


def union(parts: Sequence[Ticket]) -> Ticket:
    """One ticket's lines from several files: the union of their events."""
    if len(parts) == 1:
        return parts[0]
    events: set[bytes] = set()
    for p in parts:
        events.update(p.events.split(b"\n"))
    flags = 0
    for p in parts:
        flags |= p.flags
    return Ticket(parts[0].token, b"\n".join(sorted(events)), max(p.last_ms for p in parts), flags)


def token_hashes(tokens: Sequence[bytes]) -> tuple[Array, Array]:
    """Two 64-bit hashes per ticket token: the partition bits and the bloom probes."""
    digests = b"".join(hashlib.blake2b(t, digest_size=16).digest() for t in tokens)
    pairs = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1] | np.uint64(1)


def _probes(h1: Array, h2: Array, bits: int) -> Array:
    steps = np.arange(BLOOM_K, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (h1[:, None] + steps[None, :] * h2[:, None]) % np.uint64(bits)


def bloom_of(tokens: Sequence[bytes]) -> tuple[int, bytes]:
    bits = max(64, -(-len(tokens) * BLOOM_BITS_PER_KEY // 64) * 64)
    array = np.zeros(bits, dtype=bool)
    if tokens:
        array[_probes(*token_hashes(tokens), bits).ravel()] = True
    return bits, np.packbits(array, bitorder="little").tobytes()


def _encode_payload(tickets: Sequence[Ticket]) -> bytes:
    n = len(tickets)
    head = np.empty(n * 2, dtype="<u4")
    head[:n] = [len(t.token) for t in tickets]
    head[n:] = [len(t.events) for t in tickets]
    last = np.array([t.last_ms for t in tickets], dtype="<i8")
    flags = np.array([t.flags for t in tickets], dtype="u1")
    return b"".join(
        (
            struct.pack("<I", n),
            head.tobytes(),
            last.tobytes(),
            flags.tobytes(),
            *(t.token for t in tickets),
            *(t.events for t in tickets),
        )
    )


def decode_payload(payload: bytes) -> list[Ticket]:
    try:
        (n,) = struct.unpack_from("<I", payload)
        head = np.frombuffer(payload, dtype="<u4", count=2 * n, offset=4)
        last = np.frombuffer(payload, dtype="<i8", count=n, offset=4 + 8 * n).tolist()
        flags = np.frombuffer(payload, dtype="u1", count=n, offset=4 + 16 * n).tolist()
    except (struct.error, ValueError) as exc:
        raise CorruptRunError(str(exc)) from exc
    ends = np.cumsum(head, dtype=np.int64).tolist()
    base = 4 + 17 * n
    starts = [base, *(base + e for e in ends[:-1])]
    ends = [base + e for e in ends]
    return [
        Ticket(
            payload[starts[i] : ends[i]], payload[starts[n + i] : ends[n + i]], last[i], flags[i]
        )
        for i in range(n)
    ]


def decode_block(data: bytes, codec: int) -> list[Ticket]:
    return decode_payload(zlib.decompress(data) if codec == ZLIB else data)


@dataclass
class FileStats:
    """What a writer knows of the file it wrote (kept in manifests)."""

    tickets: int = 0
    lines: int = 0
    raw_bytes: int = 0
    first: bytes = b""
    last: bytes = b""


@dataclass
class RunWriter:
    """Builds one file from tickets given in increasing token order."""

    codec: int = RAW
    keep_blocks: bool = True  # hold the tickets written, by block (to cache them)
    block_bytes: int = BLOCK_BYTES
    stats: FileStats = field(default_factory=FileStats)
    _chunks: list[bytes] = field(default_factory=list)
    _offsets: list[int] = field(default_factory=lambda: [0])
    _firsts: list[bytes] = field(default_factory=list)
    _tokens: list[bytes] = field(default_factory=list)
    _pending: list[Ticket] = field(default_factory=list)
    _pending_bytes: int = 0
    blocks: list[list[Ticket]] = field(default_factory=list)  # what the file holds, by block

    def add(self, ticket: Ticket) -> None:
        if self._tokens and ticket.token <= self._tokens[-1]:
            raise CorruptRunError("tickets must be added in increasing token order")
        if not self._tokens:
            self.stats.first = ticket.token
        self.stats.last = ticket.token
        self._tokens.append(ticket.token)
        self._pending.append(ticket)
        size = len(ticket.token) + len(ticket.events) + 17
        self._pending_bytes += size
        self.stats.tickets += 1
        self.stats.lines += ticket.events.count(b"\n") + 1
        self.stats.raw_bytes += size
        if self._pending_bytes >= self.block_bytes:
            self._cut()

    def _cut(self) -> None:
        if not self._pending:
            return
        payload = _encode_payload(self._pending)
        data = zlib.compress(payload, ZLIB_LEVEL) if self.codec == ZLIB else payload
        self._chunks.append(data)
        self._offsets.append(self._offsets[-1] + len(data))
        self._firsts.append(self._pending[0].token)
        if self.keep_blocks:
            self.blocks.append(self._pending)
        self._pending = []
        self._pending_bytes = 0

    @property
    def size(self) -> int:
        return self._offsets[-1] + self._pending_bytes

    def finish(self) -> bytes:
        self._cut()
        bits, bloom = bloom_of(self._tokens)
        n = len(self._firsts)
        footer = b"".join(
            (
                FOOTER_HEAD.pack(
                    n, self.codec, self.stats.tickets, self.stats.lines, bits, BLOOM_K
                ),
                np.array(self._offsets, dtype="<u8").tobytes(),
                np.array([len(f) for f in self._firsts], dtype="<u4").tobytes(),
                *self._firsts,
                bloom,
            )
        )
        body = self._offsets[-1]
        return b"".join((*self._chunks, footer, TRAILER.pack(body, len(footer), MAGIC)))


def write_file(tickets: Iterable[Ticket], codec: int = RAW) -> tuple[bytes, RunWriter]:
    writer = RunWriter(codec)
    for t in tickets:
        writer.add(t)
    return writer.finish(), writer


@dataclass(frozen=True)
class Footer:
    """The index of one file: where its blocks are, their first tokens, its bloom filter."""

    codec: int
    tickets: int
    lines: int
    offsets: list[int]  # block i is bytes offsets[i]:offsets[i+1]
    firsts: list[bytes]
    bloom_bits: int
    bloom: Array  # uint8

    @property
    def nbytes(self) -> int:
        return 200 + len(self.bloom) + sum(len(f) + 60 for f in self.firsts)

    def may_hold(self, h1: Array, h2: Array) -> Array:
        """Per ticket: False if surely not in the file (no false negatives)."""
        if not len(h1):
            return np.zeros(0, dtype=bool)
        probes = _probes(h1, h2, self.bloom_bits)
        bits = (self.bloom[probes >> np.uint64(3)] >> (probes & np.uint64(7)).astype(np.uint8)) & 1
        return np.asarray(bits.all(axis=1))

    def block_of(self, token: bytes) -> int:
        """The only block that can hold `token` (-1: before the first)."""
        lo, hi = 0, len(self.firsts)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.firsts[mid] <= token:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1


def parse_trailer(tail: bytes) -> tuple[int, int]:
    if len(tail) < TRAILER.size:
        raise CorruptRunError("object shorter than a trailer")
    offset, length, magic = TRAILER.unpack_from(tail, len(tail) - TRAILER.size)
    if magic != MAGIC:
        raise CorruptRunError("not a store run (bad magic)")
    return offset, length


def parse_footer(data: bytes) -> Footer:
    try:
        n, codec, tickets, lines, bits, k = FOOTER_HEAD.unpack_from(data)
        at = FOOTER_HEAD.size
        offsets = np.frombuffer(data, dtype="<u8", count=n + 1, offset=at).tolist()
        at += 8 * (n + 1)
        lens = np.frombuffer(data, dtype="<u4", count=n, offset=at).tolist()
        at += 4 * n
    except (struct.error, ValueError) as exc:
        raise CorruptRunError(str(exc)) from exc
    if k != BLOOM_K:
        raise CorruptRunError(f"bloom with {k} probes")
    firsts = []
    for length in lens:
        firsts.append(data[at : at + length])
        at += length
    bloom = np.frombuffer(data, dtype=np.uint8, count=bits // 8, offset=at)
    return Footer(codec, tickets, lines, offsets, firsts, bits, bloom)


def parse_file(data: bytes) -> tuple[Footer, list[list[Ticket]]]:
    """A whole file: its footer and every block."""
    offset, length = parse_trailer(data)
    footer = parse_footer(data[offset : offset + length])
    blocks = [decode_block(data[a:b], footer.codec) for a, b in itertools.pairwise(footer.offsets)]
    return footer, blocks


def iter_tickets(blocks: Iterable[Sequence[Ticket]]) -> Iterator[Ticket]:
    for block in blocks:
        yield from block
