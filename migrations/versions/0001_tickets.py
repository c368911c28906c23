"""Tickets and their measurements.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("ticket_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("channel", sa.Text),
        sa.Column("first_group_id", sa.Text),
        sa.Column("last_agent_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("doc", sa.JSON, nullable=False),  # json, not jsonb: keeps key order
    )
    op.create_table(
        "ticket_measures",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("ticket_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value_ms", sa.BigInteger),
        sa.Column("agent_id", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("first_group_id", sa.Text),
        sa.Column("last_agent_id", sa.Text),
    )
    op.create_index("ix_ticket_measures_tenant_at", "ticket_measures", ["tenant_id", "at"])
    op.create_index(
        "ix_ticket_measures_tenant_ticket", "ticket_measures", ["tenant_id", "ticket_id"]
    )


def downgrade() -> None:
    op.drop_table("ticket_measures")
    op.drop_table("tickets")
