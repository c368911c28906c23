"""The history's ticket rows and ledger are what the report loader writes for the same events.

Two tenants get the same tickets of the store model (`bench/store_history.py`):
one through `bench.history_tickets` (COPY), the other through the loader's
`load_records` in batches, as enriched objects arrive. Every column of
`tickets` and every row of `ticket_events` and `ticket_measures` must be
equal, tenant aside.
"""

from __future__ import annotations

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import create_async_engine

from bench.history_tickets import records, write_tickets
from bench.store_history import DAY_MS, Model
from services.loader.reports import load_records
from shared.db import async_url

DAYS = 3


def model(tenant: str) -> Model:
    return Model(tenant, 4, 25, 1_780_000_000_000 // DAY_MS * DAY_MS)


async def table(conn: asyncpg.Connection, name: str, tenant: str) -> list[bytes]:
    """Every row as canonical JSON (jsonb: `doc` compared as a value), the tenant's
    name (also in each event of `doc`) written as TENANT."""
    rows = await conn.fetch(
        f"SELECT to_jsonb(t) AS row FROM {name} AS t WHERE tenant_id = $1", tenant
    )
    return sorted(
        orjson.dumps(orjson.loads(r["row"]), option=orjson.OPT_SORT_KEYS).replace(
            f'"{tenant}"'.encode(), b'"TENANT"'
        )
        for r in rows
    )


async def test_copied_tickets_and_ledger_equal_the_loaders(fresh_database_url: str) -> None:
    copied, loaded = model("hist-copy"), model("hist-load")
    conn = await asyncpg.connect(fresh_database_url)
    engine = create_async_engine(async_url(fresh_database_url))
    try:
        assert await write_tickets(conn, copied, range(DAYS)) == DAYS * 25
        recs = list(records(loaded, range(DAYS)))
        for start in range(0, len(recs), 20):
            await load_records(engine, recs[start : start + 20])
        for name in ("tickets", "ticket_events", "ticket_measures"):
            want = await table(conn, name, loaded.tenant)
            got = await table(conn, name, copied.tenant)
            assert len(want) > DAYS * 25 - 1
            assert got == want, name
        kinds = {r["kind"] for r in await conn.fetch("SELECT kind FROM ticket_measures")}
        assert {"created", "closed", "reply", "group_stint", "agent_stint"} <= kinds
    finally:
        await engine.dispose()
        await conn.close()
