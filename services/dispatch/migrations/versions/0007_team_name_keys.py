"""Team names are compared case folded in Python, alike on SQLite and PostgreSQL

The index on lower(name) of 0006 folded only ASCII letters on SQLite ("ÉQUIPE" and "équipe"
were two teams there, one on PostgreSQL) and followed the database's locale on PostgreSQL.
Each team now keeps its name folded the Unicode way, in a unique column dispatch sets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _folded(name: str) -> str:
    # As services/dispatch/models.py folds a name when it is written; fixed here as it was.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


def upgrade() -> None:
    connection = op.get_bind()
    teams = connection.execute(sa.text("SELECT id, name FROM teams")).all()
    keys: dict[str, list[str]] = defaultdict(list)
    for team_id, name in teams:
        keys[_folded(name)].append(name)
    clashes = [names for names in keys.values() if len(names) > 1]
    if clashes:
        raise RuntimeError(
            "Team names that differ only in case must be made distinct before upgrading: "
            + "; ".join(" / ".join(map(repr, names)) for names in clashes)
        )
    # NOT NULL from the start, which SQLite allows a column it adds only with a default; the
    # default is dropped once every team has its key where the database can (PostgreSQL:
    # SQLite would rebuild ``teams``, a table volunteers refer to), and dispatch always sets it.
    op.add_column("teams", sa.Column("name_key", sa.Text(), nullable=False, server_default=""))
    for team_id, name in teams:
        connection.execute(
            sa.text("UPDATE teams SET name_key = :key WHERE id = :id"),
            {"key": _folded(name), "id": team_id},
        )
    if connection.dialect.name != "sqlite":
        op.alter_column("teams", "name_key", server_default=None)
    op.create_index("uq_teams_name_key", "teams", ["name_key"], unique=True)
    op.drop_index("uq_teams_name_folded", table_name="teams")


def downgrade() -> None:
    op.create_index("uq_teams_name_folded", "teams", [sa.text("lower(name)")], unique=True)
    op.drop_index("uq_teams_name_key", table_name="teams")
    op.drop_column("teams", "name_key")
