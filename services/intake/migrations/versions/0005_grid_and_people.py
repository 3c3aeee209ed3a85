"""The grid: communities, buildings, units and households as nodes with a responsible person;
residents' language and flags; the health register

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from services.intake.migrations.rebuild import is_sqlite, rebuild_sqlite_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Each level above a household, as (kind, its path's columns, the columns left empty).
LEVELS = (
    ("community", ("community",), ("building", "unit", "household")),
    ("building", ("community", "building"), ("unit", "household")),
    ("unit", ("community", "building", "unit"), ("household",)),
)
# Each level below a community: its parent's kind and the columns naming the parent.
PARENT = {
    "building": ("community", ("community",)),
    "unit": ("building", ("community", "building")),
    "household": ("unit", ("community", "building", "unit")),
}


def upgrade() -> None:
    # Every household already on the grid becomes a household node, keeping its id (residents
    # point at it); the levels above it are made from the paths the households name. All in
    # place: residents refer to the table, which SQLite could not rebuild under them.
    op.rename_table("households", "grid_nodes")
    op.execute("ALTER TABLE grid_nodes RENAME COLUMN number TO household")
    op.add_column(
        "grid_nodes", sa.Column("kind", sa.String(10), nullable=False, server_default="household")
    )
    op.execute("ALTER TABLE grid_nodes ADD COLUMN parent_id INTEGER REFERENCES grid_nodes (id)")
    op.add_column("grid_nodes", sa.Column("name", sa.String(100), nullable=False, server_default=""))
    op.add_column("grid_nodes", sa.Column("responsible_name", sa.String(100)))
    op.add_column("grid_nodes", sa.Column("responsible_phone", sa.String(32)))
    op.add_column("grid_nodes", sa.Column("responsible_resident_id", sa.String(64)))
    op.create_index("ix_grid_nodes_parent_id", "grid_nodes", ["parent_id"])
    if not is_sqlite():
        # Households inserted with their ids would leave the sequence behind them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('grid_nodes', 'id'), "
            "COALESCE((SELECT max(id) FROM grid_nodes), 0) + 1, false)"
        )
    for kind, named, empty in LEVELS:
        columns = ", ".join(named)
        blanks = ", ".join(f"'' AS {column}" for column in empty)
        op.execute(
            f"INSERT INTO grid_nodes (kind, {columns}, {', '.join(empty)}, name) "
            f"SELECT DISTINCT '{kind}', {columns}, {blanks}, '' FROM grid_nodes "
            "WHERE kind = 'household'"
        )
    for kind, (parent, path) in PARENT.items():
        same = " AND ".join(f"p.{column} = grid_nodes.{column}" for column in path)
        op.execute(
            f"UPDATE grid_nodes SET parent_id = (SELECT p.id FROM grid_nodes AS p "
            f"WHERE p.kind = '{parent}' AND {same}) WHERE kind = '{kind}'"
        )
    op.add_column(
        "residents", sa.Column("language", sa.String(10), nullable=False, server_default="zh-CN")
    )
    op.add_column(
        "residents",
        sa.Column("is_disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "residents",
        sa.Column("has_reduced_mobility", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_residents_household_id", "residents", ["household_id"])
    op.create_table(
        "health_notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resident_id", sa.String(64), sa.ForeignKey("residents.id"), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("written_by", sa.String(150), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_health_notes_resident_id", "health_notes", ["resident_id"])


def downgrade() -> None:
    op.drop_index("ix_health_notes_resident_id", "health_notes")
    op.drop_table("health_notes")
    op.drop_index("ix_residents_household_id", "residents")
    for column in ("has_reduced_mobility", "is_disabled", "language"):
        op.drop_column("residents", column)
    op.execute("UPDATE grid_nodes SET parent_id = NULL")
    op.execute("DELETE FROM grid_nodes WHERE kind <> 'household'")
    op.drop_index("ix_grid_nodes_parent_id", "grid_nodes")
    if is_sqlite():
        # A column that refers to another cannot be dropped in place on SQLite.
        rebuild_sqlite_table("grid_nodes", dropped=("parent_id",))
    else:
        op.drop_column("grid_nodes", "parent_id")
    for column in ("responsible_resident_id", "responsible_phone", "responsible_name", "name",
                   "kind"):
        op.drop_column("grid_nodes", column)
    op.execute("ALTER TABLE grid_nodes RENAME COLUMN household TO number")
    op.rename_table("grid_nodes", "households")
