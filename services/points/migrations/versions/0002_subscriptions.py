"""Events name their subscribers, not a queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

from shared.migrations import outbox_with_routing, outbox_without_routing

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox_without_routing(op)


def downgrade() -> None:
    outbox_with_routing(op)
