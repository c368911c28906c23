"""A ticket's contribution to the rollups, and the signed upsert that applies it.

The loader retracts the measurements it deletes from the ledger and adds the
ones it inserts, under the ticket row's lock: each version's contribution is
counted exactly once. Rows are written in key order so concurrent loaders
lock them in the same order and cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import rollups
from shared.histogram import bin_of
from shared.timebuckets import buckets_of, instant

SUMMARY_KINDS = frozenset({
    "created", "closed", "abandoned", "transfers", "customer_message", "agent_message",
    "bot_message", "assigned", "first_response", "handle", "resolution", "reply",
})  # fmt: skip
AGENT_KINDS = frozenset({"agent_stint", "agent_message", "first_response", "closed"})
HIST_KINDS = frozenset({
    "assigned", "first_response", "handle", "resolution", "reply", "group_stint", "agent_stint",
})  # fmt: skip
GROUP_OUTCOMES = (("answered", "group_answered"), ("abandoned", "group_abandoned"),
                  ("transferred_out", "group_transferred"))  # fmt: skip
SEP = "\x1f"  # joins channel, first group and last agent in the `combo` dimension

Key = tuple[str, str, int, int, str]  # dim, dim_value, level, bucket (epoch s), kind


def combo(channel: str | None, first_group: str | None, last_agent: str | None) -> str:
    return SEP.join(v or "" for v in (channel, first_group, last_agent))


def _slots(m: Mapping[Any, Any]) -> list[tuple[str, str, str]]:
    """(dim, value, kind) of every rollup row a measurement counts in."""
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
    return at if isinstance(at, int) else int(at.timestamp() * 1000)


def contribution(measures: Iterable[Mapping[Any, Any]], sign: int, into: dict[Key, Any]) -> None:
    """Add (sign=1) or retract (sign=-1) measurements into `into`:
    key -> [n, total, {bin: [count, sum]}]."""
    for m in measures:
        value = m["value_ms"]
        buckets = buckets_of(_epoch_ms(m["at"]))
        for dim, dim_value, kind in _slots(m):
            with_hist = kind in HIST_KINDS and value is not None
            for level, bucket in buckets:
                acc = into.setdefault((dim, dim_value, level, bucket, kind), [0, 0, {}])
                acc[0] += sign
                if value is not None:
                    acc[1] += sign * value
                if with_hist:
                    cell = acc[2].setdefault(bin_of(value), [0, 0])
                    cell[0] += sign
                    cell[1] += sign * value
                    if cell[0] == 0:
                        del acc[2][bin_of(value)]


CHUNK = 3000  # rows per statement: 9 parameters each, asyncpg takes at most 32,767


async def apply(conn: AsyncConnection, tenant: str, delta: Mapping[Key, Any]) -> int:
    """Add `delta` to the tenant's rollups in key order; returns rows written."""
    rows = [
        {
            "tenant_id": tenant, "dim": dim, "level": level, "bucket": instant(bucket),
            "dim_value": value, "kind": kind, "n": n, "total": total,
            "hist": {str(b): c for b, c in sorted(hist.items())},
        }
        for (dim, value, level, bucket, kind), (n, total, hist) in sorted(delta.items())
        if n or total or hist
    ]  # fmt: skip
    for start in range(0, len(rows), CHUNK):
        stmt = pg_insert(rollups).values(rows[start : start + CHUNK])
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=list(rollups.primary_key.columns),
                set_={
                    "n": rollups.c.n + stmt.excluded.n,
                    "total": rollups.c.total + stmt.excluded.total,
                    "hist": func.hist_add(rollups.c.hist, stmt.excluded.hist),
                },
            )
        )
    return len(rows)
