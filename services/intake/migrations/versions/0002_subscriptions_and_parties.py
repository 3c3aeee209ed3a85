"""Events name their subscribers, not a queue; requests record who did each step

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import outbox_with_routing, outbox_without_routing

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PARTIES = ("accepted_by", "completed_by", "confirmed_by")


def upgrade() -> None:
    outbox_without_routing(op)
    with op.batch_alter_table("requests") as batch:
        for column in PARTIES:
            batch.add_column(sa.Column(column, sa.String(150)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        for column in reversed(PARTIES):
            batch.drop_column(column)
    outbox_with_routing(op)
