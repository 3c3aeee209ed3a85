"""Team names are unique ignoring case: "Repair team" and "repair TEAM" are one name

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_teams_name_folded", "teams", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_teams_name_folded", table_name="teams")
