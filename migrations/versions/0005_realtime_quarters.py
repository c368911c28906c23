"""Rollup row versions, and the outbox of quarter hours to publish to the
real-time store (services/loader/quarters.py).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "rollups", sa.Column("version", sa.BigInteger, nullable=False, server_default="0")
    )
    op.create_table(
        "realtime_outbox",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("realtime_outbox")
    op.drop_column("rollups", "version")
