"""Time buckets of the rollups and the decomposition of a range into them.

Buckets are aligned on the Unix epoch at seven levels: 15 minutes, 1 hour,
then 1, 4, 16, 64 and 256 days. Every zone offset in use is a multiple of 15
minutes, so a day (or hour, week, month) in any zone is an exact union of
buckets, and a range of any length is a few dozen of them at most.
"""

from __future__ import annotations

from datetime import UTC, datetime

QUARTER_S = 900
LEVEL_SECONDS = (900, 3600, 86400, 4 * 86400, 16 * 86400, 64 * 86400, 256 * 86400)

Piece = tuple[int, int]  # (level, bucket start in epoch seconds)


def buckets_of(epoch_ms: int) -> list[Piece]:
    """The bucket of every level holding this instant."""
    s = epoch_ms // 1000
    return [(level, s - s % width) for level, width in enumerate(LEVEL_SECONDS)]


def decompose(start_s: int, end_s: int) -> list[Piece]:
    """[start_s, end_s) as the fewest aligned buckets, greedily from the left."""
    if start_s % QUARTER_S or end_s % QUARTER_S:
        raise ValueError("range edges must be multiples of 15 minutes")
    pieces: list[Piece] = []
    t = start_s
    while t < end_s:
        level = max(lv for lv, w in enumerate(LEVEL_SECONDS) if t % w == 0 and t + w <= end_s)
        pieces.append((level, t))
        t += LEVEL_SECONDS[level]
    return pieces


def epoch_s(t: datetime) -> int:
    return int(t.timestamp())


def instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
