"""The PostgreSQL schema (tables as SQLAlchemy Core) and the engine factory.

Alembic migrations in `migrations/` create exactly these tables.
"""

from __future__ import annotations

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

# One row per ticket: the latest version's API document (its events are in
# `ticket_events`) and its key facts.
tickets = Table(
    "tickets",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("ticket_id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("channel", Text),
    Column("first_group_id", Text),
    Column("last_agent_id", Text),
    Column("created_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("doc", JSON, nullable=False),
    # The ticket's metrics as columns, for ad-hoc SQL over tickets.
    Column("first_assigned_at", DateTime(timezone=True)),
    Column("first_response_at", DateTime(timezone=True)),
    Column("wait_time_ms", BigInteger),
    Column("first_response_time_ms", BigInteger),
    Column("handle_time_ms", BigInteger),
    Column("resolution_time_ms", BigInteger),
    Column("abandoned", Boolean),
    Column("transfers", Integer),
    Column("customer_messages", Integer),
    Column("agent_messages", Integer),
    Column("bot_messages", Integer),
    Index("ix_tickets_tenant_created", "tenant_id", "created_at"),
    # Drill-down of /realtime's "now" numbers: the open tickets only.
    Index(
        "ix_tickets_tenant_open",
        "tenant_id",
        "status",
        "ticket_id",
        postgresql_where=text("status IN ('waiting', 'assigned')"),
    ),
)

# Every measurement of a ticket at the (effective) time it completes, replaced
# as a whole whenever the ticket's version grows: the ledger from which the
# loader retracts a ticket's old contribution to the rollups.
ticket_measures = Table(
    "ticket_measures",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("ticket_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("value_ms", BigInteger),
    Column("agent_id", Text),
    Column("channel", Text),
    Column("first_group_id", Text),
    Column("last_agent_id", Text),
    # Group stints only: the stint's group and how it ended.
    Column("group_id", Text),
    Column("answered", Boolean),
    Column("abandoned", Boolean),
    Column("transferred_out", Boolean),
    Index("ix_ticket_measures_tenant_ticket", "tenant_id", "ticket_id"),
    # Drill-down: the measurements of one kind in a time range (services/report/drill.py).
    Index("ix_ticket_measures_tenant_kind_at", "tenant_id", "kind", "at"),
)


# Per (tenant, dimension, time bucket, dimension value): counts, sums,
# histograms and percentiles of what was measured there (shared/rollups.py).
# Reports read only these.
rollups = Table(
    "rollups",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("dim", Text, primary_key=True),
    Column("level", SmallInteger, primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("dim_value", Text, primary_key=True),
    Column("cells", JSONB, nullable=False),
    Column("hists", LargeBinary, nullable=False),
    Column("pcts", JSONB, nullable=False),
    # From rollups_version_seq at every write: a newer snapshot has a higher one.
    Column("version", BigInteger, nullable=False, server_default="0"),
)


# Every coarse bucket (level > 0) of a tenant that holds data, and whether its
# rows are folded: written once, from its children, when it closed
# (services/loader/folds.py). Until then reports read its children.
rollup_folds = Table(
    "rollup_folds",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("level", SmallInteger, primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("folded", Boolean, nullable=False, server_default=text("false")),
    Index("ix_rollup_folds_open", "tenant_id", postgresql_where=text("NOT folded")),
    Index("ix_rollup_folds_due", "bucket", postgresql_where=text("NOT folded")),
)

# The events of a ticket's latest version, one row each (an event id keeps the
# variant the latest version chose): a new version writes only what changed.
ticket_events = Table(
    "ticket_events",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("ticket_id", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("event", JSON, nullable=False),
)


# Quarter hours whose `all` row changed and is not yet published to the
# real-time store: written in the loader's transaction, deleted once published.
_NEXT_OUTBOX_SEQ = text("nextval('realtime_outbox_seq')")
realtime_outbox = Table(
    "realtime_outbox",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    # A new one at every enqueue: a publisher deletes only the row it claimed.
    Column("seq", BigInteger, nullable=False, server_default=_NEXT_OUTBOX_SEQ),
    # Until when a publisher holds the row (a new change frees it at once).
    Column("lease", DateTime(timezone=True), nullable=False, server_default="-infinity"),
)


# The report zones the loader writes calendar rows for, and from which instant
# on every ticket's rows include them (shared/timebuckets.py).
report_zones = Table(
    "report_zones",
    metadata,
    Column("name", Text, primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False),
)


# Deployment-wide facts; `generation` names the state of the bucket the derived
# tables were built from (telemetry/rebuild.py): a mismatch means they disagree.
deployment_state = Table(
    "deployment_state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Tables that are a pure function of the ticket store: a rebuild empties them.
DERIVED_TABLES = ("tickets", "ticket_events", "ticket_measures", "rollups", "rollup_folds",
                  "realtime_outbox")  # fmt: skip


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the asyncpg driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(url: str, statement_timeout_s: float = 60.0) -> AsyncEngine:
    """Every wait on the database is bounded: a connection (5 s), a free pooled
    connection (5 s), a statement (`statement_timeout_s`, on the client, which
    also fires when the server is frozen, and on the server)."""
    return create_async_engine(
        async_url(url),
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={
            "timeout": 5,
            "command_timeout": statement_timeout_s,
            "server_settings": {"statement_timeout": str(int(statement_timeout_s * 1000))},
        },
        json_serializer=lambda v: orjson.dumps(v).decode(),
        json_deserializer=orjson.loads,
    )
