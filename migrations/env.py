"""Alembic environment: runs on a connection handed over by `telemetry provision`."""

from __future__ import annotations

from alembic import context

from shared.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `telemetry provision`")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
