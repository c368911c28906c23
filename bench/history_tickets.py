"""The store model's tickets in PostgreSQL as the report loader writes them, COPY-loaded.

Each ticket's record comes from its event lines (`bench/store_history.Model`,
the same tickets the ticket store holds) through the enricher's own
functions, and through JSON as the loader reads it; its rows come from the
report loader's own functions (`ticket_row`, `measures`, the events one row
each). Only the path differs: COPY instead of upserts.
`tests/integration/test_bench_history_tickets.py` checks that the tables then
hold exactly what `load_records` leaves for the same records. (Rollups come
from `bench/history.py`; `bench/history_write.py` says which days get these
rows.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson

from bench.store_history import Model, ticket_id
from services.enricher.handler import ticket_record
from services.enricher.metrics import dedupe, evaluate
from services.loader.reports import measures, ticket_row

BATCH = 5_000  # tickets per COPY


def records(model: Model, days: range) -> Iterator[dict[str, Any]]:
    """The enriched record of every ticket of `days`, as the loader decodes it."""
    for day in days:
        for n in range(model.tickets_per_day):
            lines, _, _ = model.lines(day, n)
            events, version = dedupe(lines)
            rec = ticket_record(model.tenant, ticket_id(model.seed, day, n), version,
                                evaluate(events))  # fmt: skip
            yield orjson.loads(orjson.dumps(rec))


def _json(row: dict[str, Any]) -> dict[str, Any]:
    """asyncpg's COPY takes JSON columns as text."""
    return {
        k: orjson.dumps(v).decode() if isinstance(v, dict | list) else v for k, v in row.items()
    }


async def copy_records(conn: asyncpg.Connection, recs: list[dict[str, Any]]) -> None:
    if not recs:
        return
    rows = [_json(ticket_row(r)) for r in recs]
    columns = list(rows[0])
    await conn.copy_records_to_table(
        "tickets", records=[tuple(row[c] for c in columns) for row in rows], columns=columns
    )
    events = [(r["tenant_id"], r["ticket_id"], e["event_id"], orjson.dumps(e).decode())
              for r in recs for e in r["events"]]  # fmt: skip
    await conn.copy_records_to_table(
        "ticket_events", records=events, columns=("tenant_id", "ticket_id", "event_id", "event")
    )
    ledger = [m for r in recs for m in measures(r)]
    if ledger:
        mcols = list(ledger[0])
        await conn.copy_records_to_table(
            "ticket_measures", records=[tuple(m[c] for c in mcols) for m in ledger], columns=mcols
        )


async def write_tickets(conn: asyncpg.Connection, model: Model, days: range) -> int:
    """Ticket rows, events and ledger of `days` of the model; returns how many tickets."""
    batch: list[dict[str, Any]] = []
    count = 0
    for rec in records(model, days):
        batch.append(rec)
        if len(batch) == BATCH:
            await copy_records(conn, batch)
            count += len(batch)
            batch = []
    await copy_records(conn, batch)
    return count + len(batch)
