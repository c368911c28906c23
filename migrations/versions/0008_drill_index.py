"""Drill-down reads the measurement ledger by (tenant, kind, time), and the open
tickets by status: an index for each (the second holds open tickets only).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


OPEN = "status IN ('waiting', 'assigned')"


def upgrade() -> None:
    op.create_index(
        "ix_ticket_measures_tenant_kind_at", "ticket_measures", ["tenant_id", "kind", "at"]
    )
    op.create_index(
        "ix_tickets_tenant_open", "tickets", ["tenant_id", "status", "ticket_id"],
        postgresql_where=sa.text(OPEN),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_tickets_tenant_open", "tickets")
    op.drop_index("ix_ticket_measures_tenant_kind_at", "ticket_measures")
