"""Changing a table other tables refer to, on SQLite, without losing or orphaning a row.

SQLite alters a column only by rebuilding its table, and alembic's batch mode drops the old
table before renaming the new one into place: with foreign keys on, dropping a table that
other rows refer to fails (and ``PRAGMA foreign_keys`` cannot be turned off inside the
migration's transaction). Here the old table is renamed aside without touching its referrers
(``legacy_alter_table``), the new one is made under the old name, the rows are copied, and the
old table is dropped: at no point does a referring row lose its row. PostgreSQL alters in
place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic import op


def is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def rebuild_sqlite_table(
    name: str,
    *,
    nullable: Iterable[str] = (),
    not_null: Iterable[str] = (),
    dropped: Iterable[str] = (),
    dropped_indexes: Iterable[str] = (),
    added: Iterable[sa.Column | sa.Index] = (),
) -> None:
    """Rebuild SQLite table ``name`` with the columns ``nullable`` or ``not_null`` changed,
    those ``dropped`` left behind and the columns and indexes ``added``, keeping every row."""
    connection = op.get_bind()
    old = sa.Table(name, sa.MetaData(), autoload_with=connection)
    gone = set(dropped)
    kept = [column for column in old.columns if column.name not in gone]

    def is_kept(columns: Iterable[sa.Column]) -> bool:
        return all(column.name not in gone for column in columns)

    def default_of(column: sa.Column) -> sa.TextClause | None:
        found = column.server_default
        return sa.text(str(found.arg)) if isinstance(found, sa.DefaultClause) else None

    parts: list[Any] = [
        sa.Column(
            column.name,
            column.type,
            primary_key=column.primary_key,
            nullable=(
                True
                if column.name in set(nullable)
                else False
                if column.name in set(not_null)
                else column.nullable
            ),
            server_default=default_of(column),
        )
        for column in kept
    ]
    parts += [
        sa.ForeignKeyConstraint(
            [element.parent.name for element in constraint.elements],
            [element.target_fullname for element in constraint.elements],
            name=constraint.name,
        )
        for constraint in old.foreign_key_constraints
        if is_kept(constraint.columns)
    ]
    parts += [
        sa.UniqueConstraint(*[column.name for column in constraint.columns], name=constraint.name)
        for constraint in old.constraints
        if isinstance(constraint, sa.UniqueConstraint) and is_kept(constraint.columns)
    ]
    parts += [
        sa.Index(index.name, *[column.name for column in index.columns], unique=index.unique)
        for index in old.indexes
        if index.name not in set(dropped_indexes) and is_kept(index.columns)
    ]
    metadata = sa.MetaData()
    # The tables it refers to, so that its foreign keys can be written out.
    for constraint in old.foreign_key_constraints:
        if constraint.referred_table.name != name:
            sa.Table(constraint.referred_table.name, metadata, autoload_with=connection)
    new = sa.Table(name, metadata, *parts, *added)
    # Foreign keys can be switched off only between transactions: the migration's is
    # committed on the driver's connection (beneath SQLAlchemy, which goes on as if in one
    # transaction), the table is rebuilt in a transaction of its own that commits only if
    # every row still has what it refers to, and a new transaction takes up the rest.
    raw = connection.connection.driver_connection
    if raw is None:
        raise RuntimeError("the migration's connection has no driver connection")
    raw.execute("COMMIT")
    raw.execute("PRAGMA foreign_keys = OFF")
    raw.execute("BEGIN IMMEDIATE")
    try:
        for index in old.indexes:
            raw.execute(f'DROP INDEX IF EXISTS "{index.name}"')
        new.name = f"_new_{name}"
        new.create(connection)
        columns = ", ".join(f'"{column.name}"' for column in kept)
        raw.execute(f'INSERT INTO "_new_{name}" ({columns}) SELECT {columns} FROM "{name}"')
        raw.execute(f'DROP TABLE "{name}"')
        raw.execute(f'ALTER TABLE "_new_{name}" RENAME TO "{name}"')
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"rebuilding {name} would leave rows without their rows: {broken}")
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    finally:
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("BEGIN IMMEDIATE")
