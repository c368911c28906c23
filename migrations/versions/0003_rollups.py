"""Rollups for reports, typed per-ticket facts.

Reports read `rollups` only; `ticket_measures` stays as the ledger the loader
retracts a ticket's old contribution from, so it loses its time index. No
deployment holds data from before this revision, so nothing is backfilled.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FACTS = (
    ("first_assigned_at", sa.DateTime(timezone=True)),
    ("first_response_at", sa.DateTime(timezone=True)),
    ("wait_time_ms", sa.BigInteger),
    ("first_response_time_ms", sa.BigInteger),
    ("handle_time_ms", sa.BigInteger),
    ("resolution_time_ms", sa.BigInteger),
    ("abandoned", sa.Boolean),
    ("transfers", sa.Integer),
    ("customer_messages", sa.Integer),
    ("agent_messages", sa.Integer),
    ("bot_messages", sa.Integer),
)


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("dim", sa.Text, primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("dim_value", sa.Text, primary_key=True),
        sa.Column("cells", JSONB, nullable=False),
        sa.Column("hists", sa.LargeBinary, nullable=False),
        sa.Column("pcts", JSONB, nullable=False),
    )
    for name, type_ in FACTS:
        op.add_column("tickets", sa.Column(name, type_))
    op.create_index("ix_tickets_tenant_created", "tickets", ["tenant_id", "created_at"])
    op.drop_index("ix_ticket_measures_tenant_at", "ticket_measures")


def downgrade() -> None:
    op.create_index("ix_ticket_measures_tenant_at", "ticket_measures", ["tenant_id", "at"])
    op.drop_index("ix_tickets_tenant_created", "tickets")
    for name, _ in reversed(FACTS):
        op.drop_column("tickets", name)
    op.drop_table("rollups")
