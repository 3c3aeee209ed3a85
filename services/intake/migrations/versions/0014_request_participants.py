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


# Plain ALTER TABLE, also on SQLite (3.35 and later drop a column in place): a batch copy of
# the table would lose what SQLite's reflection does not see of its indexes (a DESC column).


def upgrade() -> None:
    op.add_column("requests", sa.Column("participants", sa.JSON()))


def downgrade() -> None:
    op.drop_column("requests", "participants")
