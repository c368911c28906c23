"""Fold states of the coarse rollup buckets, and the events of tickets as rows.

The loader now writes only the quarter-hour rows; a coarse bucket's row is
folded from its children once the bucket has closed (services/loader/folds.py).
Existing coarse rows are complete sums of their quarters: a closed bucket's rows
stay, marked folded (a late event adds to them, as before); an open bucket's
rows are deleted and the bucket is marked unfolded, since its quarters hold
everything and the folder writes it again when it closes.

Events leave the per-version `tickets.doc` for `ticket_events` (one row per
event), so a new version of a big ticket writes only its new events. (A
downgrade puts them back in the doc in storage order, not evaluation order;
the next version of each ticket writes them in order again.) The downgrade
first folds every unfolded bucket from its children, since 0006 reads only
coarse rows (loaders stopped; docs/operations.md, "Migration 0007").

Revision ID: 0007
Revises: 0006
"""

import time

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.loader import folds
from shared.timebuckets import (
    CALENDAR_LEVELS,
    Calendar,
    calendar_of,
    children,
    end_of,
    epoch_s,
    instant,
    span_s,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FOLDS = sa.table(
    "rollup_folds",
    sa.column("tenant_id", sa.Text),
    sa.column("level", sa.SmallInteger),
    sa.column("bucket", sa.DateTime(timezone=True)),
    sa.column("folded", sa.Boolean),
)
ZONE_MAX_S = 32 * 86400  # a bucket of a dropped zone is closed once this is past


def upgrade() -> None:
    op.create_table(
        "rollup_folds",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("folded", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_rollup_folds_open", "rollup_folds", ["tenant_id"], postgresql_where="NOT folded"
    )
    op.create_index(  # the folder's round: the oldest unfolded states of every tenant
        "ix_rollup_folds_due", "rollup_folds", ["bucket"], postgresql_where="NOT folded"
    )
    op.create_table(
        "ticket_events",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("ticket_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("event", sa.JSON, nullable=False),
    )
    bind = op.get_bind()
    cals = tuple(Calendar(n) for (n,) in bind.execute(sa.text("SELECT name FROM report_zones")))
    now = time.time()
    buckets = bind.execute(
        sa.text("SELECT DISTINCT tenant_id, level, bucket FROM rollups WHERE level > 0")
    ).all()
    for tenant, level, bucket in buckets:
        start = epoch_s(bucket)
        end = end_of((level, start), cals) or start + ZONE_MAX_S
        closed = end <= now
        if not closed:
            op.execute(
                sa.text(
                    "DELETE FROM rollups WHERE tenant_id = :t AND level = :l AND bucket = :b"
                ).bindparams(t=tenant, l=level, b=instant(start))
            )
        op.execute(
            pg_insert(FOLDS)
            .values(tenant_id=tenant, level=level, bucket=instant(start), folded=closed)
            .on_conflict_do_nothing()
        )
    op.execute("""
        INSERT INTO ticket_events (tenant_id, ticket_id, event_id, event)
        SELECT t.tenant_id, t.ticket_id, e.value ->> 'event_id', e.value
        FROM tickets AS t, json_array_elements(t.doc -> 'events') AS e
        ON CONFLICT DO NOTHING
    """)
    op.execute("""
        UPDATE tickets AS t
        SET doc = (SELECT json_object_agg(d.key, d.value ORDER BY d.n)
                   FROM json_each(t.doc) WITH ORDINALITY AS d(key, value, n)
                   WHERE d.key <> 'events')
        WHERE (t.doc -> 'events') IS NOT NULL
    """)


def fold_everything() -> None:
    """Write the coarse rows of every unfolded bucket from its children, finer
    levels first, as the folder does (0006 reads coarse rows only). Loaders must
    be stopped. Buckets of a zone no longer registered have no calendar: left out
    (0006 reports never read them)."""
    bind = op.get_bind()
    cals = tuple(Calendar(n) for (n,) in bind.execute(sa.text("SELECT name FROM report_zones")))
    states = bind.execute(
        sa.text("SELECT tenant_id, level, bucket FROM rollup_folds WHERE NOT folded")
    )
    pieces = [(tenant, (level, epoch_s(bucket))) for tenant, level, bucket in states]
    for tenant, piece in sorted(pieces, key=lambda p: (span_s(p[1][0]), p[1][1], p[0])):
        if piece[0] >= CALENDAR_LEVELS and calendar_of(piece[0], cals) is None:
            continue
        at = {"tenant": tenant, "level": piece[0], "bucket": instant(piece[1])}
        parts = children(piece, cals)
        inner = {"tenant": tenant, "levels": [lv for lv, _ in parts],
                 "buckets": [instant(b) for _, b in parts]}  # fmt: skip
        written = folds.coarse_rows(bind.execute(folds.CHILDREN_SQL, inner))
        bind.execute(folds.CLEAR_SQL, at)
        if written["dims"]:
            bind.execute(folds.WRITE_SQL, {**at, **written})
        bind.execute(folds.DONE_SQL, at)


def downgrade() -> None:
    fold_everything()
    op.execute("""
        UPDATE tickets AS t
        SET doc = json_build_object(
            'metrics', t.doc -> 'metrics', 'group_stints', t.doc -> 'group_stints',
            'agent_stints', t.doc -> 'agent_stints',
            'events', COALESCE((SELECT json_agg(e.event) FROM ticket_events AS e
                                WHERE e.tenant_id = t.tenant_id AND e.ticket_id = t.ticket_id),
                               '[]'))
    """)
    op.drop_table("ticket_events")
    op.drop_index("ix_rollup_folds_due", "rollup_folds")
    op.drop_index("ix_rollup_folds_open", "rollup_folds")
    op.drop_table("rollup_folds")
