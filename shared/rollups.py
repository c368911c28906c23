"""The rollup row format, shared by the loader that writes it and the reports.

One row per (tenant, dimension, level, bucket, dimension value) holds:
- `cells` (JSON): `{kind: [count, sum_ms]}` for every kind of measurement
  counted there, and `first_response_sla`: how many first responses were
  within each `sla_seconds` of the contract;
- `hists` (bytes): the histograms of the duration kinds (shared/histogram.py),
  as packed `(kind, bin, count, sum_ms)` records that numpy reads without
  parsing;
- `pcts` (JSON): `{kind: [p50, p90, p95]}` of this row alone, so that a report
  point made of one bucket reads three numbers instead of a histogram.
Counts and sums add and subtract exactly, so a ticket's old contribution can
be retracted; `pcts` is recomputed from `hists` whenever the row changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from shared.histogram import SLA_SECONDS, percentiles, rank

# Kinds with a histogram; a kind's position is its code in `hists`: append only.
HIST_KINDS = ("assigned", "first_response", "handle", "resolution", "reply",
              "group_stint", "agent_stint")  # fmt: skip
HIST_CODE = {kind: code for code, kind in enumerate(HIST_KINDS)}
# The per-agent and per-group reports rank one duration each; their rows keep
# only that histogram (agent rows are most of the table, and a report's cost
# is the bytes of histogram it reads).
_RANKED_BY = {"agent": frozenset({"agent_stint"}), "group": frozenset({"group_stint"})}
_ALL_RANKED = frozenset(HIST_KINDS)
SLA_CELL = "first_response_sla"
SLA_MS = tuple(s * 1000 for s in SLA_SECONDS)
PERCENTS = (50, 90, 95)
ENTRY = np.dtype([("kind", "u1"), ("bin", "<u2"), ("n", "<i8"), ("sum", "<i8")])

Cells = dict[str, list[int]]
Hists = dict[str, dict[int, list[int]]]  # kind -> bin -> [count, sum]


def combo(channel: str | None, first_group: str | None, last_agent: str | None) -> str:
    """The `combo` dimension's value: a JSON array, since ids may hold any character."""
    return orjson.dumps([channel, first_group, last_agent]).decode()


def ranked(dim: str) -> frozenset[str]:
    """The kinds with a histogram (and, for first responses, SLA counts) in `dim`'s rows."""
    return _RANKED_BY.get(dim, _ALL_RANKED)


def add_cells(into: Cells, cells: Cells, sign: int = 1) -> None:
    """Adds (or with sign=-1 retracts) cells, element by element."""
    for kind, values in cells.items():
        mine = into.get(kind)
        if mine is None:
            into[kind] = list(values) if sign == 1 else [-v for v in values]
        elif len(values) == 2:  # [count, sum]: most cells
            mine[0] += sign * values[0]
            mine[1] += sign * values[1]
        else:
            for i, v in enumerate(values):
                mine[i] += sign * v


@dataclass
class Rollup:
    """A row's additive content, as the loader merges it."""

    cells: Cells = field(default_factory=dict)
    hists: Hists = field(default_factory=dict)

    def add(self, other: Rollup, sign: int = 1) -> None:
        add_cells(self.cells, other.cells, sign)
        for kind, hist in other.hists.items():
            mine = self.hists.setdefault(kind, {})
            for b, (n, total) in hist.items():
                cell = mine.get(b)
                if cell is None:
                    mine[b] = [sign * n, sign * total]
                else:
                    cell[0] += sign * n
                    cell[1] += sign * total

    def pruned(self) -> Rollup:
        """Without what cancelled out; empty when the row holds nothing."""
        hists = {
            kind: {b: c for b, c in hist.items() if c[0] or c[1]}
            for kind, hist in self.hists.items()
        }
        return Rollup(
            {k: v for k, v in self.cells.items() if any(v)},
            {k: h for k, h in hists.items() if h},
        )

    def __bool__(self) -> bool:
        return bool(self.cells or self.hists)


def encode_hists(hists: Hists) -> bytes:
    """Packed records, sorted by kind and bin: numpy reads them without parsing."""
    records = [
        (HIST_CODE[kind], b, n, total)
        for kind in sorted(hists, key=HIST_CODE.__getitem__)
        for b, (n, total) in sorted(hists[kind].items())
    ]
    return np.array(records, dtype=ENTRY).tobytes()


def decode_hists(data: bytes) -> Hists:
    out: Hists = {}
    for code, b, n, total in np.frombuffer(data, dtype=ENTRY).tolist():
        out.setdefault(HIST_KINDS[code], {})[b] = [n, total]
    return out


def pcts_of(hists: Hists) -> dict[str, list[int | None]]:
    """A row's own percentiles, stored so that a one-bucket point reads them."""
    return {kind: percentiles(h, PERCENTS) for kind, h in hists.items()}


NUMPY_FROM_ENTRIES = 150  # below, Python dicts merge faster than numpy's fixed cost


def merged_values(cells: Cells, hists: bytes, delta: Rollup) -> dict[str, Any]:
    """`row_values` of a stored row plus `delta`. Most rows hold a few dozen
    bins; a coarse bucket holds thousands and is touched by every batch, so
    large rows are merged in numpy, whose cost per bin is C's, not Python's.
    Both paths give the same result (tested)."""
    if len(hists) < NUMPY_FROM_ENTRIES * ENTRY.itemsize:
        row = Rollup({k: list(v) for k, v in cells.items()}, decode_hists(hists))
        row.add(delta)
        return row_values(row.pruned())
    return _merged_in_numpy(cells, hists, delta)


def _merged_in_numpy(cells: Cells, hists: bytes, delta: Rollup) -> dict[str, Any]:
    merged: Cells = {k: list(v) for k, v in cells.items()}
    add_cells(merged, delta.cells)
    old = np.frombuffer(hists, dtype=ENTRY)
    new = np.array(
        [(HIST_CODE[kind], b, n, total) for kind, hist in delta.hists.items()
         for b, (n, total) in hist.items()],
        dtype=ENTRY,
    )  # fmt: skip
    both = np.concatenate([old, new])
    keys, inverse = np.unique(
        both["kind"].astype(np.int64) << 16 | both["bin"], return_inverse=True
    )  # sorted by kind, then bin
    counts = np.zeros(len(keys), np.int64)
    sums = np.zeros(len(keys), np.int64)
    np.add.at(counts, inverse, both["n"])  # exact int64, unlike a float bincount
    np.add.at(sums, inverse, both["sum"])
    live = (counts != 0) | (sums != 0)
    out = np.empty(int(live.sum()), dtype=ENTRY)
    out["kind"], out["bin"] = keys[live] >> 16, keys[live] & 0xFFFF
    out["n"], out["sum"] = counts[live], sums[live]
    return {
        "cells": {k: v for k, v in merged.items() if any(v)},
        "hists": out.tobytes(),
        "pcts": _entry_percentiles(out),
    }


def _entry_percentiles(entries: Any) -> dict[str, list[int | None]]:
    """`pcts_of` over packed entries sorted by kind and bin."""
    out: dict[str, list[int | None]] = {}
    kinds, starts = np.unique(entries["kind"], return_index=True)
    ends = [*starts[1:].tolist(), len(entries)][: len(starts)]
    for code, start, end in zip(kinds.tolist(), starts.tolist(), ends, strict=True):
        n, total = entries["n"][start:end], entries["sum"][start:end]
        cumulative = np.cumsum(n)
        count = int(cumulative[-1])
        if count <= 0:
            out[HIST_KINDS[code]] = [None] * len(PERCENTS)
            continue
        at = np.searchsorted(cumulative, [rank(count, p) for p in PERCENTS]).tolist()
        out[HIST_KINDS[code]] = [round(int(total[i]) / int(n[i])) for i in at]
    return out


def row_values(rollup: Rollup) -> dict[str, Any]:
    """The stored columns of a merged row."""
    return {
        "cells": rollup.cells,
        "hists": encode_hists(rollup.hists),
        "pcts": pcts_of(rollup.hists),
    }
