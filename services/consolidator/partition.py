"""A hot partition as one listing shows it, and what its compaction should do next.

A partition's prefix holds deltas (`d-`, one per batch), minor runs (`r-`,
merges of deltas, each cut into files of at most 8 MiB), the files of its
last major merge (`m-`, what was kept when the partition last sealed) and
epoch markers (`e-<version>`). Minor merges are tiered by run, not by file:
`fanout` runs of one size class become one run, so a line is rewritten
about log_F(partition / delta) times before the next major merge. (Tiering
by file never ended once runs outgrew a file: six full 8 MiB files merged
into six more.) A major merge takes everything, seals what is closed and
idle, and happens when the rest has grown as large as what the last one
kept, so a partition holds between one and two times its active set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from services.consolidator.runs import CLOSED, Ticket
from services.consolidator.s3io import Listed, S3Io
from shared.layout import EPOCH_MARK, hot_prefix

MAJOR_MIN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Policy:
    fanout: int = 6
    retention_ms: int = 86_400_000
    open_retention_ms: int = 30 * 86_400_000
    partition_bytes: int = 256 * 1024 * 1024
    max_partitions: int = 64
    major_min_bytes: int = MAJOR_MIN_BYTES

    def sealable(self, t: Ticket, now_ms: int) -> bool:
        """Closed and idle longer than the retention, or idle longer than the open retention."""
        idle = now_ms - t.last_ms
        return idle > self.open_retention_ms or (
            bool(t.flags & CLOSED) and idle > self.retention_ms
        )


def name_of(key: str) -> str:
    return key.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Listing:
    objects: list[Listed]
    mark: int | None  # highest epoch marker; None: no marker (not a live partition)
    marks: list[str]  # marker keys

    @property
    def majors(self) -> list[Listed]:
        return [o for o in self.objects if name_of(o.key).startswith("m-")]

    @property
    def minors(self) -> list[Listed]:
        return [o for o in self.objects if not name_of(o.key).startswith("m-")]

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)


async def list_partition(io: S3Io, tenant: str, partition: str) -> Listing:
    found, _ = await io.listdir(hot_prefix(tenant, partition))
    objects, marks, mark = [], [], None
    for o in found:
        name = name_of(o.key)
        if name.startswith(EPOCH_MARK):
            marks.append(o.key)
            mark = max(mark or 0, int(name[len(EPOCH_MARK) :]))
        else:
            objects.append(o)
    return Listing(objects, mark, marks)


def _class(size: int, fanout: int) -> int:
    """Size classes F times apart: F runs of one class merge into the next one."""
    return int(math.log(max(size, 1), fanout))


def run_of(key: str) -> str:
    """The run a file belongs to: `r-<run>-<n>.run` files are one minor merge's output,
    cut in files; a delta, or a minor run of the first layout (`r-<run>.run`), is its own."""
    name = name_of(key)
    return name[: -len("-00000.run")] if _FILE_OF_RUN.fullmatch(name) else name


_FILE_OF_RUN = re.compile(r"r-\d{13}-[0-9a-f]{12}-\d{5}\.run")


@dataclass(frozen=True)
class Plan:
    kind: str  # "major", "minor" or "none"
    inputs: list[Listed]


def plan(listing: Listing, policy: Policy) -> Plan:
    majors = sum(o.size for o in listing.majors)
    minors = listing.minors
    rest = sum(o.size for o in minors)
    if rest >= max(majors, policy.major_min_bytes):
        return Plan("major", listing.objects)
    runs: dict[str, list[Listed]] = {}
    for o in minors:
        runs.setdefault(run_of(o.key), []).append(o)
    classes: dict[int, list[list[Listed]]] = {}
    for files in runs.values():
        classes.setdefault(_class(sum(o.size for o in files), policy.fanout), []).append(files)
    for c in sorted(classes):
        if len(classes[c]) >= policy.fanout:
            return Plan("minor", [o for files in classes[c] for o in files])
    return Plan("none", [])
