"""The rollup row format, shared by the loader that writes it and the reports.

One row per (tenant, dimension, level, bucket, dimension value) holds the
cells of every kind of measurement counted there:
`{kind: [count, sum_ms]}`, plus `{bin: [count, sum_ms]}` as a third item for
kinds with a histogram (shared/histogram.py). Everything in a cell adds and
subtracts exactly, so a ticket's old contribution can be retracted.
"""

from __future__ import annotations

from typing import Any

SEP = "\x1f"  # joins channel, first group and last agent in the `combo` dimension

Cells = dict[str, list[Any]]  # kind -> [n, total] or [n, total, {bin: [count, sum]}]


def combo(channel: str | None, first_group: str | None, last_agent: str | None) -> str:
    return SEP.join(v or "" for v in (channel, first_group, last_agent))


def add_cells(into: Cells, cells: Cells, sign: int = 1) -> None:
    for kind, cell in cells.items():
        mine = into.get(kind)
        if mine is None:
            mine = into[kind] = [0, 0, {}] if len(cell) > 2 else [0, 0]
        mine[0] += sign * cell[0]
        mine[1] += sign * cell[1]
        if len(cell) > 2:
            hist = mine[2]
            for b, (count, total) in cell[2].items():
                bin_ = hist.get(b)
                if bin_ is None:
                    hist[b] = [sign * count, sign * total]
                else:
                    bin_[0] += sign * count
                    bin_[1] += sign * total


def pruned(cells: Cells) -> Cells:
    """Without the bins and kinds that cancelled out."""
    out: Cells = {}
    for kind, cell in cells.items():
        if len(cell) > 2:
            hist = {b: v for b, v in cell[2].items() if v[0] or v[1]}
            if cell[0] or cell[1] or hist:
                out[kind] = [cell[0], cell[1], hist]
        elif cell[0] or cell[1]:
            out[kind] = cell
    return out
