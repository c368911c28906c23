"""A ticket's contribution to the rollups, and the guarded update that applies it.

The loader retracts the measurements it deletes from the ledger and adds the
ones it inserts, under the ticket row's lock: each version's contribution is
counted exactly once. The touched rollup rows are locked by one upsert in key
order (so concurrent loaders cannot deadlock each other), merged here and
written back, with the percentiles of each row, before the transaction commits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import rollups
from shared.histogram import bin_of
from shared.rollups import (
    HIST_CODE,
    SLA_CELL,
    SLA_MS,
    Rollup,
    add_cells,
    combo,
    decode_hists,
    row_values,
)
from shared.timebuckets import Calendar, buckets_of, instant, span_s

SUMMARY_KINDS = frozenset({
    "created", "closed", "abandoned", "transfers", "customer_message", "agent_message",
    "bot_message", "assigned", "first_response", "handle", "resolution", "reply",
})  # fmt: skip
AGENT_KINDS = frozenset({"agent_stint", "agent_message", "first_response", "closed"})
GROUP_OUTCOMES = (("answered", "group_answered"), ("abandoned", "group_abandoned"),
                  ("transferred_out", "group_transferred"))  # fmt: skip

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    return at if isinstance(at, int) else (at - EPOCH) // timedelta(milliseconds=1)


MEASURE_FIELDS = ("tenant_id", "kind", "at", "value_ms", "agent_id", "channel",
                  "first_group_id", "last_agent_id", "group_id", "answered", "abandoned",
                  "transferred_out")  # fmt: skip


def changes(
    old: Iterable[Mapping[Any, Any]], new: Iterable[Mapping[Any, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(removed, added): the measurements only in `old`, only in `new`, as multisets.
    A new version of a ticket usually changes few of them."""
    before = Counter(tuple(m[f] for f in MEASURE_FIELDS) for m in old)
    after = Counter(tuple(m[f] for f in MEASURE_FIELDS) for m in new)
    return (
        [dict(zip(MEASURE_FIELDS, t, strict=True)) for t in (before - after).elements()],
        [dict(zip(MEASURE_FIELDS, t, strict=True)) for t in (after - before).elements()],
    )


def contribution(
    measures: Iterable[Mapping[Any, Any]],
    sign: int,
    into: dict[Key, Rollup],
    cals: tuple[Calendar, ...] = (),
) -> None:
    """Add (sign=1) or retract (sign=-1) measurements into `into`, in the UTC
    buckets and in the calendar buckets of every report zone."""
    for m in measures:
        value = m["value_ms"]
        total = 0 if value is None else sign * value
        buckets = buckets_of(_epoch_ms(m["at"]), cals)
        for dim, dim_value, kind in _slots(m):
            hist = kind in HIST_CODE and value is not None
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


# Rows per statement: the lock statement binds every column of a row, and
# asyncpg takes at most 32,767 parameters.
CHUNK = 32_767 // len(rollups.c)
PK = ("tenant_id", "dim", "level", "bucket", "dim_value")


def lock_order(key: Key) -> tuple[int, bool, Key]:
    """A total order (so concurrent loaders cannot deadlock) that locks the rows
    every batch touches (long buckets, dimension `all`) last: held briefly."""
    dim, level, _, _ = key
    return (span_s(level), dim == "all", key)


async def apply(conn: AsyncConnection, tenant: str, delta: Mapping[Key, Rollup]) -> int:
    """Add `delta` to the tenant's rollups; returns rows written."""
    keys = sorted((k for k, rollup in delta.items() if rollup.pruned()), key=lock_order)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        rows = [
            {"tenant_id": tenant, "dim": dim, "level": level, "bucket": instant(bucket),
             "dim_value": value, "cells": {}, "hists": b"", "pcts": {}}
            for dim, level, bucket, value in chunk
        ]  # fmt: skip
        stmt = pg_insert(rollups).values(rows)
        lock = stmt.on_conflict_do_update(index_elements=list(PK), set_={"cells": rollups.c.cells})
        returned = [rollups.c[c] for c in PK[1:]] + [rollups.c.cells, rollups.c.hists]
        locked = await conn.execute(lock.returning(*returned))  # creates or locks, in key order
        merged = []
        for dim, level, bucket, value, cells, hists in locked.tuples():
            row = Rollup(cells, decode_hists(hists))
            row.add(delta[(dim, level, int(bucket.timestamp()), value)])
            merged.append(
                {"k_dim": dim, "k_level": level, "k_bucket": bucket, "k_value": value,
                 **{f"new_{k}": v for k, v in row_values(row.pruned()).items()}}
            )  # fmt: skip
        await conn.execute(
            update(rollups)
            .where(
                rollups.c.tenant_id == tenant,
                rollups.c.dim == bindparam("k_dim"),
                rollups.c.level == bindparam("k_level"),
                rollups.c.bucket == bindparam("k_bucket"),
                rollups.c.dim_value == bindparam("k_value"),
            )
            .values(
                cells=bindparam("new_cells"),
                hists=bindparam("new_hists"),
                pcts=bindparam("new_pcts"),
            ),
            merged,
        )
    return len(keys)
