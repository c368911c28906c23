"""Report loader: an enriched batch into PostgreSQL, one transaction per batch.

A ticket row is replaced only by a higher version (its event set only grows).
In the same transaction, under that row's lock, its old measurements are
deleted from the ledger and retracted from the rollups, and the new ones are
inserted and added: a redelivered or concurrent batch can never count a ticket
twice or bring back an old version. Only quarter-hour rollup rows are written,
plus the coarse rows of buckets already folded (services/loader/folds.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    Text,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.loader.batches import batch_records
from services.loader.folds import hold, lift
from services.loader.quarters import enqueue, publish
from services.loader.rollups import Key, apply, changes, contribution, measure_key
from shared.db import report_zones, ticket_measures, tickets
from shared.isolation import bisect_failures, park, reason_of
from shared.layout import ENRICHED, expect_key
from shared.objects import get_bytes
from shared.observe import HOT_ROWS_HELD_SECONDS
from shared.timebuckets import Calendar

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client


@dataclass(frozen=True)
class ReportLoaderDeps:
    s3: S3Client
    bucket: str
    engine: AsyncEngine
    dynamodb: DynamoDBClient
    realtime_table: str
    calendars: tuple[Calendar, ...] = ()


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def measures(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each measurement at the time it completes (SPEC §2, time attribution)."""
    f = rec["facts"]
    m = rec["metrics"]
    rows: list[dict[str, Any]] = []

    def add(kind: str, t: int, value: int | None = None, **extra: Any) -> None:
        rows.append({"kind": kind, "at": _ts(t), "value_ms": value, **extra})

    for t, sender, agent in f["messages"]:
        add(f"{sender}_message", t, agent_id=agent)
    for t, value in f["replies"]:
        add("reply", t, value)
    if f["created_at"] is not None:
        add("created", f["created_at"])
        if f["first_assigned_at"] is not None:
            add("assigned", f["first_assigned_at"], m["wait_time_ms"])
        if f["first_response_at"] is not None:
            add(
                "first_response",
                f["first_response_at"],
                m["first_response_time_ms"],
                agent_id=f["first_response_agent_id"],
            )
        closed = f["closed_at"]
        if closed is not None:
            add("closed", closed, m["resolution_time_ms"], agent_id=f["closing_agent_id"])
            add("transfers", closed, m["transfers"])
            if m["abandoned"]:
                add("abandoned", closed, m["abandon_time_ms"])
            else:
                add("resolution", closed, m["resolution_time_ms"])
            if m["agents_involved"]:
                add("handle", closed, m["handle_time_ms"])
    for group, _, ended, queue, answered, abandoned, transferred in f["group_stints"]:
        if ended is not None:
            add("group_stint", ended, queue, group_id=group, answered=answered,
                abandoned=abandoned, transferred_out=transferred)  # fmt: skip
    for agent, _, ended, handle, _ in f["agent_stints"]:
        if ended is not None:
            add("agent_stint", ended, handle, agent_id=agent)
    common = {
        "tenant_id": rec["tenant_id"],
        "ticket_id": rec["ticket_id"],
        "channel": f["channel"],
        "first_group_id": f["first_group_id"],
        "last_agent_id": f["last_agent_id"],
        "agent_id": None,
        "group_id": None,
        "answered": None,
        "abandoned": None,
        "transferred_out": None,
    }
    return [{**common, **row} for row in rows]


def ticket_row(rec: dict[str, Any]) -> dict[str, Any]:
    f = rec["facts"]
    m = rec["metrics"]
    return {
        "tenant_id": rec["tenant_id"],
        "ticket_id": rec["ticket_id"],
        "version": rec["version"],
        "status": f["status"],
        "channel": f["channel"],
        "first_group_id": f["first_group_id"],
        "last_agent_id": f["last_agent_id"],
        "created_at": _ts(f["created_at"]),
        "closed_at": _ts(f["closed_at"]),
        "doc": {k: rec[k] for k in ("metrics", "group_stints", "agent_stints")},
        "first_assigned_at": _ts(f["first_assigned_at"]),
        "first_response_at": _ts(f["first_response_at"]),
        "wait_time_ms": m["wait_time_ms"],
        "first_response_time_ms": m["first_response_time_ms"],
        "handle_time_ms": m["handle_time_ms"],
        "resolution_time_ms": m["resolution_time_ms"],
        "abandoned": m["abandoned"],
        "transfers": m["transfers"],
        "customer_messages": m["customer_messages"],
        "agent_messages": m["agent_messages"],
        "bot_messages": m["bot_messages"],
    }


# The SQL type of each column type of `tickets`, for the CAST of its array
# parameter (a column of another type fails here, at import).
ARRAY_OF = {Text: "text", Integer: "integer", BigInteger: "bigint", Boolean: "boolean",
            DateTime: "timestamptz", JSON: "json"}  # fmt: skip


UPSERT_COLUMNS = tuple(c.name for c in tickets.columns)
# One statement of one array per column, compiled and planned once for any
# number of rows (a VALUES list of N rows was compiled anew for each batch:
# about a third of the loader's CPU). JSON travels as text: asyncpg has no json[] codec.
UPSERT_SQL = text(
    "INSERT INTO tickets AS t ({columns})\nSELECT * FROM unnest({arrays})\n"
    "ON CONFLICT (tenant_id, ticket_id) DO UPDATE SET {updates}\n"
    "WHERE t.version < excluded.version\nRETURNING t.tenant_id, t.ticket_id".format(
        columns=", ".join(UPSERT_COLUMNS),
        arrays=", ".join(
            f"CAST(CAST(:{c.name} AS text[]) AS json[])"
            if ARRAY_OF[type(c.type)] == "json"
            else f"CAST(:{c.name} AS {ARRAY_OF[type(c.type)]}[])"
            for c in tickets.columns
        ),
        updates=", ".join(
            f"{name} = excluded.{name}"
            for name in UPSERT_COLUMNS
            if name not in ("tenant_id", "ticket_id")
        ),
    )
)


def _upsert_params(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """UPSERT_SQL's parameters: one list per column of `tickets`, a row per record."""
    columns: dict[str, list[Any]] = {name: [] for name in UPSERT_COLUMNS}
    for r in records:
        row = ticket_row(r)
        row["doc"] = orjson.dumps(row["doc"]).decode()
        for name in UPSERT_COLUMNS:
            columns[name].append(row[name])
    return columns


OLD_MEASURES_SQL = text("""
SELECT m.ctid::text AS row_id, m.* FROM ticket_measures AS m
JOIN unnest(CAST(:tenants AS text[]), CAST(:tickets AS text[])) AS k(tenant_id, ticket_id)
  ON m.tenant_id = k.tenant_id AND m.ticket_id = k.ticket_id
""")
DELETE_MEASURES_SQL = text(
    "DELETE FROM ticket_measures WHERE ctid = ANY(CAST(CAST(:rows AS text[]) AS tid[]))"
)  # rows of tickets whose row lock this transaction holds: their ctids stay put


async def replace_measures(
    conn: AsyncConnection, keys: set[tuple[str, str]], records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Bring the ledger to the records' measurements, deleting and inserting only
    the ones that changed (a new version of a big ticket changes a few);
    returns (removed, added)."""
    tenants, tickets_ = zip(*sorted(keys), strict=True)
    old = (await conn.execute(
        OLD_MEASURES_SQL, {"tenants": list(tenants), "tickets": list(tickets_)}
    )).mappings().all()  # fmt: skip
    removed, added = changes(old, [row for r in records for row in measures(r)])
    ids: dict[tuple[Any, ...], list[str]] = {}
    for m in old:
        ids.setdefault(measure_key(m), []).append(m["row_id"])
    doomed = [ids[measure_key(m)].pop() for m in removed]
    if doomed:
        await conn.execute(DELETE_MEASURES_SQL, {"rows": doomed})
    if added:
        await conn.execute(insert(ticket_measures), added)
    return removed, added


_EVENTS_SQL = """
INSERT INTO ticket_events AS t (tenant_id, ticket_id, event_id, event)
SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:tickets AS text[]),
                     CAST(:ids AS text[]), CAST(CAST(:events AS text[]) AS json[]))
ON CONFLICT (tenant_id, ticket_id, event_id) DO {}
"""
# Only a ticket with two variants of one event id can change an event already
# stored; for the others (nearly all) DO NOTHING spares each stored event the
# row lock DO UPDATE takes even when its WHERE is false (a heap write and WAL
# per event per version).
NEW_EVENTS_SQL = text(_EVENTS_SQL.format("NOTHING"))
EVENTS_SQL = text(_EVENTS_SQL.format(
    "UPDATE SET event = excluded.event WHERE CAST(t.event AS text) <> CAST(excluded.event AS text)"
))  # fmt: skip


async def write_events(conn: AsyncConnection, records: list[dict[str, Any]]) -> None:
    """Each new event, and each event whose kept variant changed (SPEC §1: the
    one whose canonical JSON sorts first); the others are not rewritten. One
    statement of arrays per kind of record: compiled once, any number of rows.

    A view with as many events as variants (its version) has one variant of
    each id, and so had every earlier view (views grow by inclusion): what is
    stored of it is already right."""
    for conflicting, sql in ((False, NEW_EVENTS_SQL), (True, EVENTS_SQL)):
        columns: dict[str, list[str]] = {"tenants": [], "tickets": [], "ids": [], "events": []}
        for r in records:
            if (len(r["events"]) != r["version"]) != conflicting:
                continue
            for e in r["events"]:
                columns["tenants"].append(r["tenant_id"])
                columns["tickets"].append(r["ticket_id"])
                columns["ids"].append(e["event_id"])
                columns["events"].append(orjson.dumps(e).decode())
        if columns["ids"]:
            await conn.execute(sql, columns)


async def load_records(
    engine: AsyncEngine,
    records: list[dict[str, Any]],
    cals: tuple[Calendar, ...] = (),
    held: list[float] | None = None,
) -> int:
    """Upsert newer versions, their measurements and their rollup deltas, in one
    transaction; returns how many tickets changed. `held` (for the benchmark)
    gets the seconds the tenant's hot rollup rows were locked, until commit."""
    records = sorted(records, key=lambda r: (r["tenant_id"], r["ticket_id"]))  # lock order
    changed = 0
    deltas: dict[str, dict[Key, Any]] = {}
    async with engine.begin() as conn:
        keys: set[tuple[str, str]] = set()
        if records:
            upserted = await conn.execute(UPSERT_SQL, _upsert_params(records))
            keys = {(row.tenant_id, row.ticket_id) for row in upserted}
        if keys:
            newer = [r for r in records if (r["tenant_id"], r["ticket_id"]) in keys]
            await write_events(conn, newer)
            removed, added = await replace_measures(conn, keys, newer)
            for sign, changed_rows in ((-1, removed), (1, added)):
                for m in changed_rows:
                    contribution([m], sign, deltas.setdefault(m["tenant_id"], {}), finest=True)
            changed += len(keys)
        hot = time.perf_counter()
        for tenant in sorted(deltas):  # last, in key order: hot rows are held briefly
            delta = deltas[tenant]
            folded = await hold(conn, tenant, {b for _, lv, b, _ in delta if lv == 0}, cals)
            lift(delta, folded, cals)
            await apply(conn, tenant, delta)
        await enqueue(conn, deltas)
    if held is not None and deltas:
        held.append(time.perf_counter() - hot)
    return changed


async def register_zones(engine: AsyncEngine, cals: tuple[Calendar, ...]) -> None:
    """Record since when each report zone's rows are complete: from the start if
    no ticket was loaded yet, else from now (older rows lack the zone). A zone
    dropped from the setting loses its record, so adding it back starts anew."""
    async with engine.begin() as conn:
        names = [c.name for c in cals]
        await conn.execute(delete(report_zones).where(report_zones.c.name.not_in(names)))
        empty = (await conn.execute(select(tickets.c.tenant_id).limit(1))).first() is None
        since = datetime.fromtimestamp(0, UTC) if empty else datetime.now(UTC)
        for cal in cals:
            await conn.execute(
                pg_insert(report_zones).values(name=cal.name, since=since).on_conflict_do_nothing()
            )


async def handle(deps: ReportLoaderDeps, key: str) -> None:
    tenant, name = expect_key(key, ENRICHED)
    records = batch_records(await get_bytes(deps.s3, deps.bucket, key), tenant)

    async def load(part: Sequence[dict[str, Any]]) -> None:
        held: list[float] = []
        await load_records(deps.engine, list(part), deps.calendars, held)
        for seconds in held:
            HOT_ROWS_HELD_SECONDS.observe(seconds)

    # A ticket PostgreSQL cannot take (a NUL in an id from before validation
    # refused it) is parked; the rest of the batch is loaded.
    failed = await bisect_failures(records, load)
    if failed:
        parked = [
            {"reason": reason_of(exc), "ticket_id": r["ticket_id"], "record": r}
            for r, exc in failed
        ]
        await park(deps.s3, deps.bucket, "reports", tenant, name, parked)
    try:
        await publish(deps.engine, deps.dynamodb, deps.realtime_table)
    except* (BotoCoreError, ClientError) as failed_publish:  # the batch is loaded
        log.warning("real-time quarters not published (next batch retries): %s", failed_publish)
