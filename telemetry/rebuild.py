"""The bucket and the database must describe the same events.

PostgreSQL and the real-time table are derived from the ticket store in the
bucket. If the two come apart (the local emulator restarted empty, or from an
older snapshot, while PostgreSQL kept its data), a later event of an old
ticket would build a view that lacks the earlier events and replace the
right one. So both carry a *generation*: a marker object in the bucket and a
row in `deployment_state`. Equal means they match; otherwise the derived data
is rebuilt from the store (`telemetry rebuild`; `telemetry up` does it by
itself, with a message, since only local data is at stake).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.consolidator.store import make_store
from shared.db import DERIVED_TABLES, deployment_state, tickets
from shared.layout import (
    CONSOLIDATED,
    STORE,
    attempt_name,
    encode_lines,
    new_batch_id,
    stage_key,
)
from shared.objects import ObjectMissingError, get_bytes, put_bytes
from telemetry.provision import ProvisionError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from shared.aws import Aws
    from shared.settings import Settings

GENERATION_KEY = "_state/generation"  # outside every prefix a queue is notified of
REPLAY_TICKETS = 1000  # tickets per replayed batch
PROVISION_MARKERS = "#provision"  # the real-time table's own marker items stay


class GenerationMismatchError(ProvisionError):
    """The bucket and the database were not derived from the same events."""


def _row(settings: Settings) -> str:
    """One row per bucket: a database serves the bucket it was derived from."""
    return f"generation/{settings.bucket}"


@dataclass(frozen=True)
class Generations:
    bucket: str | None
    database: str | None
    database_has_tickets: bool

    def mismatch(self, *, local: bool) -> str | None:
        """Why the two disagree, or None. A fresh pair adopts a generation; in the
        local stack an emulator without one beside a database with tickets has
        lost its data (an older version kept none across restarts)."""
        if self.bucket == self.database:
            if self.bucket is None and local and self.database_has_tickets:
                return "the emulator's data is gone but PostgreSQL still holds tickets"
            return None
        if self.bucket is None:
            return "the bucket has no generation but the database has one: the bucket was emptied"
        if self.database is None:
            return "the database was not derived from this bucket"
        return "the bucket and the database come from different states (an unclean stop?)"


async def generations(aws: Aws, settings: Settings, engine: AsyncEngine) -> Generations:
    try:
        bucket: str | None = (await get_bytes(aws.s3, settings.bucket, GENERATION_KEY)).decode()
    except ObjectMissingError:
        bucket = None
    async with engine.connect() as conn:
        database = await conn.scalar(
            select(deployment_state.c.value).where(deployment_state.c.name == _row(settings))
        )
        any_ticket = await conn.scalar(select(tickets.c.tenant_id).limit(1))
    return Generations(bucket, database, any_ticket is not None)


async def set_generation(aws: Aws, settings: Settings, engine: AsyncEngine) -> str:
    """A new generation on both sides (the database last: it is the one compared)."""
    generation = uuid.uuid4().hex
    await aws.s3.put_object(Bucket=settings.bucket, Key=GENERATION_KEY, Body=generation.encode())
    async with engine.begin() as conn:
        stmt = pg_insert(deployment_state).values(name=_row(settings), value=generation)
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=["name"], set_={"value": generation})
        )
    return generation


async def tenants_in_store(aws: Aws, settings: Settings) -> list[str]:
    found: list[str] = []
    kwargs = {"Bucket": settings.bucket, "Prefix": f"{STORE}/", "Delimiter": "/"}
    while True:
        page = await aws.s3.list_objects_v2(**kwargs)  # type: ignore[arg-type]
        found += [p["Prefix"].split("/")[1] for p in page.get("CommonPrefixes", [])]
        if not page.get("IsTruncated"):
            return found
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


async def replay_tenant(aws: Aws, settings: Settings, tenant: str) -> int:
    """Every ticket of the tenant's store as `consolidated/` batches: the enricher
    and the loaders take them as any other batch. Returns the tickets replayed.
    The store is read by `TicketStore.scan`: every ticket once, with all its
    lines (hot and sealed), in bounded memory, beside live consolidators."""
    store = make_store(aws, settings)
    replayed = 0
    chunk: list[tuple[bytes, list[bytes]]] = []

    async def flush() -> None:
        body = encode_lines((t, e) for t, events in chunk for e in events)
        name = attempt_name(new_batch_id())
        await put_bytes(aws.s3, settings.bucket, stage_key(CONSOLIDATED, tenant, name), body)
        chunk.clear()

    async for token, events in store.scan(tenant):
        chunk.append((token, events))
        replayed += 1
        if len(chunk) == REPLAY_TICKETS:
            await flush()
    if chunk:
        await flush()
    return replayed


async def clear_realtime(aws: Aws, table: str) -> int:
    """Delete every ticket and quarter item (the loaders write them again)."""
    deleted = 0
    kwargs: dict[str, object] = {
        "TableName": table, "ProjectionExpression": "tenant_id, ticket_id",
    }  # fmt: skip
    while True:
        page = await aws.dynamodb.scan(**kwargs)  # type: ignore[arg-type]
        keys = [i for i in page.get("Items", []) if i["tenant_id"]["S"] != PROVISION_MARKERS]
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]
            await aws.dynamodb.batch_write_item(RequestItems={table: requests})  # type: ignore[dict-item]
        deleted += len(keys)
        if "LastEvaluatedKey" not in page:
            return deleted
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class Rebuilt:
    tenants: int
    tickets: int


async def rebuild(aws: Aws, settings: Settings, engine: AsyncEngine) -> Rebuilt:
    """Empty what is derived from the store and derive it again.

    The database and the real-time table are emptied, then every ticket of the
    store is written as a batch the running pipeline loads (its messages are
    durable in the queues), and only then are the two sides given one new
    generation: a rebuild that stops halfway still shows a mismatch, and the
    next one starts again from empty.
    """
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(DERIVED_TABLES)}"))
    await clear_realtime(aws, settings.realtime_table)
    names = await tenants_in_store(aws, settings)
    total = 0
    for tenant in names:
        total += await replay_tenant(aws, settings, tenant)
    await set_generation(aws, settings, engine)
    return Rebuilt(len(names), total)


async def reconcile(aws: Aws, settings: Settings, engine: AsyncEngine, *, local: bool) -> list[str]:
    """Check that the bucket and the database match; returns what to tell the user.

    A fresh pair adopts a generation. On a mismatch a local stack rebuilds the
    derived data from the store (only local data is at stake); a deployment
    stops with GenerationMismatchError, for an operator to run `telemetry
    rebuild`. A local stack also takes a new generation at every start, so a
    snapshot older than the database (an unclean stop) shows as a mismatch.
    """
    found = await generations(aws, settings, engine)
    why = found.mismatch(local=local)
    if why is None:
        if local or found.bucket is None:
            await set_generation(aws, settings, engine)
        return []
    if not local:
        raise GenerationMismatchError(
            f"{why}. The reports and the real-time view must be derived again from the"
            " ticket store: run `telemetry rebuild` (it empties them first)"
        )
    done = await rebuild(aws, settings, engine)
    return [
        f"{why}: PostgreSQL and the real-time view were emptied and are being rebuilt",
        f"from the ticket store ({done.tickets} tickets of {done.tenants} tenants queued;"
        " reports fill in as the pipeline loads them)",
    ]
