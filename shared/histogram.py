"""Mergeable latency histograms: exact ranks, values within 2%.

A histogram is a sparse mapping bin -> [count, sum of values]. Bins are
half-open on the left, `(edge[i-1], edge[i]]`, so "value <= limit" is exact
whenever `limit` is an edge; every `sla_seconds` of the contract is an edge.
Up to 250 ms every millisecond is its own bin; above, a bin's largest value is
at most 1.8% above its smallest, so the rounded mean of a bin's values is
within 2% of any value in it, and exact when they are all equal (one ticket).
Counts and sums add and subtract exactly, so a ticket's old contribution can
be retracted.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence

EXACT_UP_TO_MS = 250
GROWTH = 1.018
SLA_SECONDS = (10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600)
MAX_MS = 10**12  # ~31 years; larger values share the last bin


def _edges() -> tuple[int, ...]:
    edges = list(range(EXACT_UP_TO_MS + 1))
    slas = sorted(s * 1000 for s in SLA_SECONDS)
    while edges[-1] < MAX_MS:
        nxt = max(edges[-1] + 1, math.floor((edges[-1] + 1) * GROWTH))
        while slas and slas[0] <= edges[-1]:
            slas.pop(0)
        if slas and slas[0] < nxt:
            nxt = slas.pop(0)
        edges.append(nxt)
    return tuple(edges)


EDGES = _edges()

Histogram = dict[int, list[int]]  # bin -> [count, sum]


def bin_of(value_ms: int) -> int:
    """The bin holding `value_ms` (values are non-negative durations)."""
    return min(bisect_left(EDGES, max(0, value_ms)), len(EDGES) - 1)


def rank(n: int, percent: int) -> int:
    """Nearest rank ceil(p*n), 1-based, in integers (0.9 * 10 is 9, not 9.000…02)."""
    return max(1, -(-n * percent // 100))


def percentiles(hist: Mapping[int, Sequence[int]], percents: Sequence[int]) -> list[int | None]:
    """The value of each nearest rank: the exact rank, its bin's mean value."""
    count = sum(cell[0] for cell in hist.values())
    if count <= 0:
        return [None] * len(percents)
    targets = sorted((rank(count, p), i) for i, p in enumerate(percents))
    out: list[int | None] = [None] * len(percents)
    seen, t = 0, 0
    for b in sorted(hist):
        n, total = hist[b]
        seen += n
        while t < len(targets) and seen >= targets[t][0]:
            out[targets[t][1]] = round(total / n)
            t += 1
        if t == len(targets):
            break
    return out


def last_bin_at_most(limit_ms: int) -> int:
    """The last bin whose values are all <= limit_ms (exact when it is an edge)."""
    last = bisect_left(EDGES, limit_ms)
    if last < len(EDGES) and EDGES[last] != limit_ms:
        last -= 1
    return last


def at_most(hist: Mapping[int, Sequence[int]], limit_ms: int) -> int:
    """How many values are <= limit_ms: exact when limit_ms is an edge, else
    it counts the bins that end at or below it."""
    last = last_bin_at_most(limit_ms)
    return sum(cell[0] for b, cell in hist.items() if b <= last)
