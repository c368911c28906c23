"""Drill-down reads the measurement ledger by (tenant, kind, time): an index for it.

Revision ID: 0008
Revises: 0006
"""

from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ticket_measures_tenant_kind_at", "ticket_measures", ["tenant_id", "kind", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_measures_tenant_kind_at", "ticket_measures")
