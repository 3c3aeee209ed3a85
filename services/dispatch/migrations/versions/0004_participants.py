"""Assignments done as group work record who took part and their hours

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("participants", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("participants")
