"""The catalogue: names in both languages, groups, keywords, deadlines per priority,
sensitivity, typed questions and notices

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# As the catalogue had them when categories carried none of their own (minutes).
DEADLINES = {
    "urgent": {"acknowledge_minutes": 10, "resolve_minutes": 240},
    "high": {"acknowledge_minutes": 30, "resolve_minutes": 1440},
    "normal": {"acknowledge_minutes": 240, "resolve_minutes": 4320},
    "low": {"acknowledge_minutes": 1440, "resolve_minutes": 10080},
}
COLUMNS = (
    "name_zh",
    "group",
    "keywords",
    "deadlines",
    "sensitivity",
    "questions",
    "notice",
    "updated_at",
)


def upgrade() -> None:
    # Columns added in place (no table rebuild, which SQLite would need to drop a default):
    # requests refer to this table. The server defaults stay; the models give every value.
    op.add_column("categories", sa.Column("name_zh", sa.String(100), nullable=False, server_default=""))
    op.add_column(
        "categories",
        sa.Column("group", sa.String(30), nullable=False, server_default="community_matters"),
    )
    op.add_column("categories", sa.Column("keywords", sa.JSON, nullable=False, server_default="[]"))
    op.add_column("categories", sa.Column("deadlines", sa.JSON, nullable=False, server_default="{}"))
    op.add_column(
        "categories", sa.Column("sensitivity", sa.String(20), nullable=False, server_default="none")
    )
    op.add_column("categories", sa.Column("questions", sa.JSON, nullable=False, server_default="[]"))
    op.add_column("categories", sa.Column("notice", sa.JSON))
    op.add_column("categories", sa.Column("updated_at", sa.DateTime(timezone=True)))
    categories = sa.table("categories", sa.column("deadlines", sa.JSON))
    op.execute(categories.update().values(deadlines=DEADLINES))


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("categories", column)
