"""Group and agent stints as measurements.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ticket_measures", sa.Column("group_id", sa.Text))
    op.add_column("ticket_measures", sa.Column("answered", sa.Boolean))
    op.add_column("ticket_measures", sa.Column("abandoned", sa.Boolean))
    op.add_column("ticket_measures", sa.Column("transferred_out", sa.Boolean))


def downgrade() -> None:
    for column in ("transferred_out", "abandoned", "answered", "group_id"):
        op.drop_column("ticket_measures", column)
