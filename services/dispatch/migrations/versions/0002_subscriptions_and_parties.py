"""Events name their subscribers, not a queue; assignments record who did each step and when
the resident confirmed

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


def upgrade() -> None:
    outbox_without_routing(op)
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("accepted_by", sa.String(150)))
        batch.add_column(sa.Column("completed_by", sa.String(150)))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("confirmed_at")
        batch.drop_column("completed_by")
        batch.drop_column("accepted_by")
    outbox_with_routing(op)
