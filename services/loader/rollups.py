"""A ticket's contribution to the rollups, and the guarded update that applies it.

The loader retracts the measurements it deletes from the ledger and adds the
ones it inserts, under the ticket row's lock: each version's contribution is
counted exactly once. It writes the quarter-hour rows, and the coarse rows of
buckets already folded (services/loader/folds.py). The touched rollup rows are
locked by one upsert in key order (so concurrent loaders cannot deadlock each
other), merged here and written back, with the percentiles of each row, before
the transaction commits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import to_ms
from shared.histogram import bin_of
from shared.rollups import (
    SLA_CELL,
    SLA_MS,
    Rollup,
    add_cells,
    combo,
    merged_values,
    ranked,
)
from shared.timebuckets import QUARTER_S, Calendar, buckets_of, epoch_s, instant, span_s

SUMMARY_KINDS = frozenset({
    "created", "closed", "abandoned", "transfers", "customer_message", "agent_message",
    "bot_message", "assigned", "first_response", "handle", "resolution", "reply",
})  # fmt: skip
AGENT_KINDS = frozenset({"agent_stint", "agent_message", "first_response", "closed"})
GROUP_OUTCOMES = (("answered", "group_answered"), ("abandoned", "group_abandoned"),
                  ("transferred_out", "group_transferred"))  # fmt: skip

Key = tuple[str, int, int, str]  # dim, level, bucket (epoch s), dim_value


def _slots(m: Mapping[Any, Any]) -> list[tuple[str, str, str]]:
    """(dim, value, kind) of every rollup cell a measurement counts in."""
    kind = m["kind"]
    out: list[tuple[str, str, str]] = []
    if kind in SUMMARY_KINDS:
        out.append(("all", "", kind))
        for dim, col in (("channel", "channel"), ("first_group", "first_group_id"),
                         ("last_agent", "last_agent_id")):  # fmt: skip
            if m[col] is not None:
                out.append((dim, m[col], kind))
        out.append(("combo", combo(m["channel"], m["first_group_id"], m["last_agent_id"]), kind))
    if kind in AGENT_KINDS and m["agent_id"] is not None:
        out.append(("agent", m["agent_id"], kind))
    if kind == "group_stint" and m["group_id"] is not None:
        out.append(("group", m["group_id"], kind))
        out.extend(("group", m["group_id"], name) for flag, name in GROUP_OUTCOMES if m[flag])
    return out


def _epoch_ms(at: datetime | int) -> int:
    return at if isinstance(at, int) else to_ms(at)


MEASURE_FIELDS = ("tenant_id", "ticket_id", "kind", "at", "value_ms", "agent_id", "channel",
                  "first_group_id", "last_agent_id", "group_id", "answered", "abandoned",
                  "transferred_out")  # fmt: skip


def measure_key(m: Mapping[Any, Any]) -> tuple[Any, ...]:
    """What tells one measurement from another (a ledger row's identity)."""
    return tuple(m[f] for f in MEASURE_FIELDS)


def changes(
    old: Iterable[Mapping[Any, Any]], new: Iterable[Mapping[Any, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(removed, added): the measurements only in `old`, only in `new`, as multisets
    (per ticket). A new version of a ticket usually changes few of them."""
    before = Counter(map(measure_key, old))
    after = Counter(map(measure_key, new))
    return (
        [dict(zip(MEASURE_FIELDS, t, strict=True)) for t in (before - after).elements()],
        [dict(zip(MEASURE_FIELDS, t, strict=True)) for t in (after - before).elements()],
    )


def contribution(
    measures: Iterable[Mapping[Any, Any]],
    sign: int,
    into: dict[Key, Rollup],
    cals: tuple[Calendar, ...] = (),
    finest: bool = False,
) -> None:
    """Add (sign=1) or retract (sign=-1) measurements into `into`, in the UTC
    buckets and in the calendar buckets of every report zone; with `finest`,
    in the quarter hours only (what the loader writes)."""
    for m in measures:
        value = m["value_ms"]
        total = 0 if value is None else sign * value
        ms = _epoch_ms(m["at"])
        buckets = [(0, ms // 1000 - ms // 1000 % QUARTER_S)] if finest else buckets_of(ms, cals)
        for dim, dim_value, kind in _slots(m):
            hist = value is not None and kind in ranked(dim)
            b = bin_of(value) if hist else 0
            within = hist and kind == "first_response"
            sla = [sign * (value <= limit) for limit in SLA_MS] if within else None
            for level, bucket in buckets:
                key = (dim, level, bucket, dim_value)
                row = into.get(key)
                if row is None:
                    row = into[key] = Rollup()
                cell = row.cells.get(kind)
                if cell is None:
                    row.cells[kind] = [sign, total]
                else:
                    cell[0] += sign
                    cell[1] += total
                if hist:
                    bins = row.hists.setdefault(kind, {})
                    counts = bins.get(b)
                    if counts is None:
                        bins[b] = [sign, total]
                    else:
                        counts[0] += sign
                        counts[1] += total
                if sla is not None:
                    add_cells(row.cells, {SLA_CELL: sla})


def lock_order(key: Key) -> tuple[int, bool, Key]:
    """A total order (so concurrent loaders cannot deadlock) that locks the rows
    every batch touches (long buckets, dimension `all`) last: held briefly."""
    dim, level, _, _ = key
    return (span_s(level), dim == "all", key)


# Keys go as arrays (any number of rows, one statement compiled once); the
# SELECT's ORDER BY is the order the rows are created or locked in.
LOCK_SQL = text("""
INSERT INTO rollups AS r (tenant_id, dim, level, bucket, dim_value, cells, hists, pcts)
SELECT :tenant, k.dim, k.level, k.bucket, k.value, '{}', '', '{}'
FROM unnest(CAST(:dims AS text[]), CAST(:levels AS smallint[]),
            CAST(:buckets AS timestamptz[]), CAST(:values AS text[]))
     WITH ORDINALITY AS k(dim, level, bucket, value, n)
ORDER BY k.n
ON CONFLICT (tenant_id, dim, level, bucket, dim_value) DO UPDATE SET cells = r.cells
RETURNING r.dim, r.level, r.bucket, r.dim_value, r.cells, r.hists
""")
WRITE_SQL = text("""
UPDATE rollups AS r
SET cells = CAST(u.cells AS jsonb), hists = u.hists, pcts = CAST(u.pcts AS jsonb),
    version = nextval('rollups_version_seq')
FROM unnest(CAST(:dims AS text[]), CAST(:levels AS smallint[]),
            CAST(:buckets AS timestamptz[]), CAST(:values AS text[]), CAST(:cells AS text[]),
            CAST(:hists AS bytea[]), CAST(:pcts AS text[]))
     AS u(dim, level, bucket, value, cells, hists, pcts)
WHERE r.tenant_id = :tenant AND r.dim = u.dim AND r.level = u.level
  AND r.bucket = u.bucket AND r.dim_value = u.value
""")


async def apply(conn: AsyncConnection, tenant: str, delta: Mapping[Key, Rollup]) -> int:
    """Add `delta` to the tenant's rollups; returns rows written."""
    keys = sorted((k for k, rollup in delta.items() if rollup.pruned()), key=lock_order)
    if not keys:
        return 0
    dims, levels, buckets, values = (list(column) for column in zip(*keys, strict=True))
    locked = await conn.execute(
        LOCK_SQL,
        {"tenant": tenant, "dims": dims, "levels": levels,
         "buckets": [instant(b) for b in buckets], "values": values},
    )  # fmt: skip
    written: dict[str, list[Any]] = {k: [] for k in ("dims", "levels", "buckets", "values",
                                                     "cells", "hists", "pcts")}  # fmt: skip
    for dim, level, bucket, value, cells, hists in locked:
        stored = merged_values(cells, hists, delta[(dim, level, epoch_s(bucket), value)])
        for name, item in (("dims", dim), ("levels", level), ("buckets", bucket),
                           ("values", value), ("cells", orjson.dumps(stored["cells"]).decode()),
                           ("hists", stored["hists"]),
                           ("pcts", orjson.dumps(stored["pcts"]).decode())):  # fmt: skip
            written[name].append(item)
    await conn.execute(WRITE_SQL, {"tenant": tenant, **written})
    return len(keys)
