"""Coarse rollup buckets, folded once from their children when they close.

A batch writes only quarter-hour rows. Every coarse bucket (1 h to 256 d, and
the report zones' days, weeks and months: exact unions of quarters) that holds
data has a row in `rollup_folds`. The protocol that keeps every level exact:

- A loader, in its transaction, creates the fold states of the ancestors of
  the quarters it changes (if missing) and takes them FOR SHARE, in key order.
  Those already folded also get the batch's delta on their coarse rows (a late
  event: rare). Shared locks never wait for each other; a loader waits only
  when another's transaction has inserted a new state and not committed yet
  (the INSERT waits for that insert). No deadlock: both insert and hold in key
  order, so a loader waits only for keys another takes before its own.
- The folder takes one closed bucket's state FOR UPDATE SKIP LOCKED, so it
  never waits: the state is free only when no loader that touched the bucket is
  in flight. It sums the children (quarters, or the next finer level's folded
  rows, all children folded first), writes the coarse rows and marks the bucket
  folded, in one transaction. A loader that comes later waits for that commit
  (its FOR SHARE) and then, under READ COMMITTED, sees `folded` and adds its
  delta to the folded rows itself. Every change is counted exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.errors import is_transient
from shared.observe import FOLD_FAILURES, FOLD_OLDEST_AGE_SECONDS
from shared.rollups import Rollup, decode_hists, row_values
from shared.timebuckets import (
    CALENDAR_LEVELS,
    LEVEL_SECONDS,
    Calendar,
    Piece,
    ancestors,
    children,
    end_of,
    epoch_s,
    instant,
    span_s,
)

log = logging.getLogger(__name__)
Key = tuple[str, int, int, str]  # dim, level, bucket (epoch s), dim_value

CREATE_SQL = text("""
INSERT INTO rollup_folds (tenant_id, level, bucket)
SELECT :tenant, k.level, k.bucket
FROM unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[])) AS k(level, bucket)
ORDER BY k.level, k.bucket
ON CONFLICT DO NOTHING
""")
HOLD_SQL = text("""
SELECT f.level, f.bucket, f.folded FROM rollup_folds AS f
JOIN unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[])) AS k(level, bucket)
  ON f.tenant_id = :tenant AND f.level = k.level AND f.bucket = k.bucket
ORDER BY f.level, f.bucket
FOR SHARE OF f
""")


async def hold(
    conn: AsyncConnection, tenant: str, quarters: Iterable[int], cals: tuple[Calendar, ...]
) -> set[Piece]:
    """Create and share-lock the fold states of the quarters' ancestors; returns
    the folded ones (their coarse rows need the batch's delta)."""
    pieces = sorted({p for q in set(quarters) for p in ancestors(q, cals)})
    if not pieces:
        return set()
    params = {"tenant": tenant, "levels": [lv for lv, _ in pieces],
              "buckets": [instant(b) for _, b in pieces]}  # fmt: skip
    await conn.execute(CREATE_SQL, params)
    held = await conn.execute(HOLD_SQL, params)
    return {(level, epoch_s(bucket)) for level, bucket, folded in held if folded}


def lift(delta: dict[Key, Rollup], folded: set[Piece], cals: tuple[Calendar, ...]) -> None:
    """Add the quarter rows' delta to the folded coarse buckets holding them."""
    if not folded:
        return
    for (dim, level, bucket, value), rollup in list(delta.items()):
        if level != 0:
            continue
        for piece in ancestors(bucket, cals):
            if piece in folded:
                key = (dim, *piece, value)
                mine = delta.get(key)
                if mine is None:
                    mine = delta[key] = Rollup()
                mine.add(rollup)


CLAIM_SQL = text("""
SELECT 1 FROM rollup_folds
WHERE tenant_id = :tenant AND level = :level AND bucket = :bucket AND NOT folded
FOR UPDATE SKIP LOCKED
""")
PENDING_SQL = text("""
SELECT count(*) FROM rollup_folds AS f
JOIN unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[])) AS k(level, bucket)
  ON f.tenant_id = :tenant AND f.level = k.level AND f.bucket = k.bucket
WHERE NOT f.folded
""")
CHILDREN_SQL = text("""
SELECT r.dim, r.dim_value, r.cells, r.hists FROM rollups AS r
JOIN unnest(CAST(:levels AS smallint[]), CAST(:buckets AS timestamptz[])) AS k(level, bucket)
  ON r.tenant_id = :tenant AND r.level = k.level AND r.bucket = k.bucket
""")
CLEAR_SQL = text(
    "DELETE FROM rollups WHERE tenant_id = :tenant AND level = :level AND bucket = :bucket"
)
WRITE_SQL = text("""
INSERT INTO rollups (tenant_id, dim, level, bucket, dim_value, cells, hists, pcts, version)
SELECT :tenant, u.dim, :level, :bucket, u.value, CAST(u.cells AS jsonb), u.hists,
       CAST(u.pcts AS jsonb), nextval('rollups_version_seq')
FROM unnest(CAST(:dims AS text[]), CAST(:values AS text[]), CAST(:cells AS text[]),
            CAST(:hists AS bytea[]), CAST(:pcts AS text[])) AS u(dim, value, cells, hists, pcts)
""")
ROW_COLUMNS = ("dims", "values", "cells", "hists", "pcts")
DONE_SQL = text("""
UPDATE rollup_folds SET folded = true
WHERE tenant_id = :tenant AND level = :level AND bucket = :bucket
""")


def summed(rows: Iterable[Any]) -> dict[tuple[str, str], Rollup]:
    """Children rows added up per (dimension, value)."""
    out: dict[tuple[str, str], Rollup] = {}
    for dim, value, cells, hists in rows:
        mine = out.get((dim, value))
        if mine is None:
            mine = out[(dim, value)] = Rollup()
        mine.add(Rollup({k: list(v) for k, v in cells.items()}, decode_hists(hists)))
    return out


def coarse_rows(children_rows: Iterable[Any]) -> dict[str, list[Any]]:
    """A bucket's rows summed from its children's rows (CHILDREN_SQL), as
    WRITE_SQL's columns (also migration 0007's downgrade)."""
    written: dict[str, list[Any]] = {k: [] for k in ROW_COLUMNS}
    for (dim, value), rollup in sorted(summed(children_rows).items()):
        stored = row_values(rollup.pruned())
        if not stored["cells"] and not stored["hists"]:
            continue
        for name, item in (("dims", dim), ("values", value),
                           ("cells", orjson.dumps(stored["cells"]).decode()),
                           ("hists", stored["hists"]),
                           ("pcts", orjson.dumps(stored["pcts"]).decode())):  # fmt: skip
            written[name].append(item)
    return written


async def fold(engine: AsyncEngine, tenant: str, piece: Piece, cals: tuple[Calendar, ...]) -> bool:
    """Fold one closed bucket from its children; False if it was not (a loader
    holds it, another folder did it, or a child is not folded yet)."""
    level, bucket = piece
    at = {"tenant": tenant, "level": level, "bucket": instant(bucket)}
    parts = children(piece, cals)
    inner = {"tenant": tenant, "levels": [lv for lv, _ in parts],
             "buckets": [instant(b) for _, b in parts]}  # fmt: skip
    async with engine.begin() as conn:
        if (await conn.execute(CLAIM_SQL, at)).first() is None:
            return False
        if parts and parts[0][0] > 0 and (await conn.execute(PENDING_SQL, inner)).scalar_one():
            return False
        written = coarse_rows(await conn.execute(CHILDREN_SQL, inner))
        await conn.execute(CLEAR_SQL, at)
        if written["dims"]:
            await conn.execute(WRITE_SQL, {**at, **written})
        await conn.execute(DONE_SQL, at)
    return True


# The round's candidates, filtered and ordered in SQL (ix_rollup_folds_due): a
# UTC bucket's end is exact (bucket + span); a zone's day, week or month is at
# least 12 h, 5 d, 27 d long (DST, skipped days), so `bucket + shortest <=
# before` never drops a closed one; Python checks the exact end. Ordered by the
# latest possible end: every surely closed bucket comes before any open one.
SPAN_SQL = """(CASE WHEN level < {zones} THEN (CAST(:utc AS int[]))[level + 1]
  ELSE (CAST(:{bound} AS int[]))[(level - {zones}) % 3 + 1] END) * interval '1 second'"""
OPEN_SQL = text(f"""
SELECT tenant_id, level, bucket FROM rollup_folds
WHERE NOT folded AND bucket <= :before
  AND bucket + {SPAN_SQL.format(zones=CALENDAR_LEVELS, bound="shortest")} <= :before
ORDER BY bucket + {SPAN_SQL.format(zones=CALENDAR_LEVELS, bound="longest")}, level
LIMIT :bound
""")
ZONE_SHORTEST_S = [12 * 3600, 5 * 86400, 27 * 86400]
ZONE_LONGEST_S = [26 * 3600, 7 * 86400 + 7200, 31 * 86400 + 7200]
CANDIDATES_PER_FOLD = 4  # the round reads at most this many states per fold it may do
HELD_PER_FAILURE = 32  # and room for a failed bucket's holders (6 UTC, 3 per zone)


Bucket = tuple[str, int, int]  # tenant, level, bucket (epoch s)


def closed_first(
    states: Iterable[Bucket], cals: tuple[Calendar, ...], before_s: float
) -> list[tuple[int, Bucket]]:
    """The buckets that ended before `before_s` with their ends, finer levels
    first (a bucket folds from folded children). Zones not in `cals` are left alone."""
    out = []
    for tenant, level, bucket in states:
        end = end_of((level, bucket), cals)
        if end is not None and end <= before_s:
            out.append((span_s(level), bucket, level, tenant, end))
    return [(end, (tenant, level, bucket)) for _, bucket, level, tenant, end in sorted(out)]


async def fold_closed(
    engine: AsyncEngine,
    cals: tuple[Calendar, ...],
    grace_s: float,
    limit: int = 200,
    failed: set[Bucket] | None = None,
) -> int:
    """One bounded round of the folder: at most `limit` closed buckets; returns
    how many were folded (the next round takes the rest). A bucket whose fold
    fails for good is logged, counted and put in `failed` (kept across rounds by
    the caller): it and the buckets holding it are tried after the others, so
    it never stops them. A passing failure ends the round; the next retries."""
    failed = set() if failed is None else failed
    now = time.time()
    bound = CANDIDATES_PER_FOLD * limit + HELD_PER_FAILURE * len(failed)
    async with engine.connect() as conn:
        found = await conn.execute(OPEN_SQL, {
            "before": instant(int(now - grace_s)), "bound": bound, "utc": list(LEVEL_SECONDS),
            "shortest": ZONE_SHORTEST_S, "longest": ZONE_LONGEST_S,
        })  # fmt: skip
        states = [(t, lv, epoch_s(b)) for t, lv, b in found]
    if len(states) < bound:  # every due state was read: forget those folded since
        failed.intersection_update(states)
    closed = closed_first(states, cals, now - grace_s)
    FOLD_OLDEST_AGE_SECONDS.set(max(0.0, now - min((e for e, _ in closed), default=now)))
    # A failed bucket and those holding it (they wait for it) go last.
    late = {b for e, b in closed for t, _, f in failed if t == b[0] and b[2] <= f < e}
    todo = [b for _, b in closed if b not in late] + [b for _, b in closed if b in late]
    done = 0
    for tenant, level, bucket in todo[:limit]:
        try:
            done += await fold(engine, tenant, (level, bucket), cals)
            failed.discard((tenant, level, bucket))
        except Exception as exc:
            if is_transient(exc):
                log.warning("fold round ended by a passing failure: %r", exc)
                break
            FOLD_FAILURES.inc()
            failed.add((tenant, level, bucket))
            log.exception("fold failed: tenant %s level %d bucket %d", tenant, level, bucket)
    if done:
        log.info("folded %d coarse rollup buckets", done)
    return done
