"""A team may name one of its volunteers as its lead

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key: SQLite could drop such a column again only by rebuilding ``teams``, a
    # table volunteers refer to; dispatch checks the lead is an active member when naming them.
    op.add_column("teams", sa.Column("lead_volunteer_id", sa.String(64)))


def downgrade() -> None:
    op.drop_column("teams", "lead_volunteer_id")
