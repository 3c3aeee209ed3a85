"""The change feed goes by the transaction that wrote each timeline entry

On PostgreSQL an entry's id is handed out when it is written, and its transaction may commit
after one that wrote a higher id: a feed that went by id alone, waiting a fixed two seconds for
such stragglers, skipped for good those that took longer (a loaded machine, a lock waited for).
Each entry now keeps the id of its transaction (``pg_current_xact_id()``, the column's default);
the feed serves entries in the order of that id and only those of transactions older than every
one still running, so none can appear behind a cursor. Entries written before keep 0 and come
first, in their old order. SQLite has one writer at a time and needs none of it: the column
stays empty there.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

WRITTEN = sa.text("xid IS NOT NULL")


def upgrade() -> None:
    op.add_column("request_timeline", sa.Column("xid", sa.BigInteger()))
    if op.get_context().dialect.name == "postgresql":
        op.execute("UPDATE request_timeline SET xid = 0")
        op.execute(
            "ALTER TABLE request_timeline "
            "ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint)"
        )
    op.create_index(
        "ix_request_timeline_feed",
        "request_timeline",
        ["xid", "id"],
        postgresql_where=WRITTEN,
        sqlite_where=WRITTEN,
    )


def downgrade() -> None:
    op.drop_index("ix_request_timeline_feed", table_name="request_timeline")
    op.drop_column("request_timeline", "xid")
