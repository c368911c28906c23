"""Rollup row versions, and the outbox of quarter hours to publish to the
real-time store (services/loader/quarters.py).

Versions come from a sequence, so they only grow, even across a rebuilt row.
The outbox starts with the last two days' quarters, so the real-time store of
an existing deployment holds today's counts from the first publish on.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
NEXT_SEQ = sa.text("nextval('realtime_outbox_seq')")


def upgrade() -> None:
    op.execute("CREATE SEQUENCE rollups_version_seq")
    op.add_column(
        "rollups", sa.Column("version", sa.BigInteger, nullable=False, server_default="0")
    )
    op.execute("CREATE SEQUENCE realtime_outbox_seq")
    op.create_table(
        "realtime_outbox",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default=NEXT_SEQ),
        sa.Column("lease", sa.DateTime(timezone=True), nullable=False, server_default="-infinity"),
    )
    op.execute("""
        INSERT INTO realtime_outbox (tenant_id, bucket)
        SELECT tenant_id, bucket FROM rollups
        WHERE dim = 'all' AND level = 0 AND dim_value = ''
          AND bucket >= now() - interval '2 days'
    """)


def downgrade() -> None:
    op.drop_table("realtime_outbox")
    op.execute("DROP SEQUENCE realtime_outbox_seq")
    op.drop_column("rollups", "version")
    op.execute("DROP SEQUENCE rollups_version_seq")
