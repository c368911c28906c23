"""The cold tier of a tenant: sealed runs, each a sequence of files in token order.

A manifest is an immutable JSON object named by the tenant's state; it lists
the runs and, for each file, its key range and where its footer is, so a
reader finds the one file of each run that can hold a ticket without any
request, then asks that file's cached bloom filter. Runs are merged tiered
(`COLD_FANOUT` runs of one size class into one), so a sealed line is rewritten
about log_F(cold size / seal size) times, never the whole tier at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from services.consolidator.runs import FileStats

COLD_FANOUT = 8
COLD_BASE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ColdFile:
    key: str
    size: int  # stored bytes
    footer_at: int
    footer_len: int
    first: bytes
    last: bytes
    tickets: int
    lines: int
    raw: int

    @classmethod
    def of(cls, key: str, size: int, footer: tuple[int, int], stats: FileStats) -> ColdFile:
        return cls(key, size, footer[0], footer[1], stats.first, stats.last, stats.tickets,
                   stats.lines, stats.raw_bytes)  # fmt: skip

    def to_json(self) -> list[object]:
        return [self.key, self.size, self.footer_at, self.footer_len, self.first.decode(),
                self.last.decode(), self.tickets, self.lines, self.raw]  # fmt: skip

    @classmethod
    def of_json(cls, v: list[Any]) -> ColdFile:
        key, size, at, length, first, last, tickets, lines, raw = v
        return cls(key, size, at, length, first.encode(), last.encode(), tickets, lines, raw)


@dataclass(frozen=True)
class ColdRun:
    id: str
    files: tuple[ColdFile, ...]

    @property
    def raw(self) -> int:
        return sum(f.raw for f in self.files)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)


def size_class(raw: int, base: int, fanout: int) -> int:
    return 0 if raw <= base else int(math.log(raw / base, fanout))


@dataclass(frozen=True)
class Manifest:
    runs: tuple[ColdRun, ...] = ()

    def encode(self) -> bytes:
        return orjson.dumps(
            {"runs": [{"id": r.id, "files": [f.to_json() for f in r.files]} for r in self.runs]}
        )

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        doc = orjson.loads(data)
        return cls(
            tuple(
                ColdRun(r["id"], tuple(ColdFile.of_json(f) for f in r["files"]))
                for r in doc["runs"]
            )
        )

    @property
    def nbytes(self) -> int:
        return 200 + sum(300 for r in self.runs for _ in r.files)

    def with_run(self, run: ColdRun) -> Manifest:
        return Manifest((*self.runs, run))

    def replace(self, merged: set[str], run: ColdRun) -> Manifest | None:
        """The runs `merged` replaced by `run`; None if one of them is gone already."""
        if not merged <= {r.id for r in self.runs}:
            return None
        return Manifest((*(r for r in self.runs if r.id not in merged), run))

    def merge_plan(self) -> list[ColdRun]:
        """Runs of the smallest size class that holds `COLD_FANOUT` of them, if any."""
        classes: dict[int, list[ColdRun]] = {}
        for r in self.runs:
            classes.setdefault(size_class(r.raw, COLD_BASE_BYTES, COLD_FANOUT), []).append(r)
        for c in sorted(classes):
            if len(classes[c]) >= COLD_FANOUT:
                return classes[c]
        return []
