"""Timers, periodic job runs and the scheduler's lease

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

from shared.migrations import create_timer_tables, drop_timer_tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_timer_tables(op)


def downgrade() -> None:
    drop_timer_tables(op)
