"""Requests done as group work keep who took part and their hours

The confirmation carries them, so that points credits each participant even when the
confirmation reaches it before the completion.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("participants", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("participants")
