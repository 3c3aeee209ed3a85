"""When each entry was posted, the hours each posting confirmed, where an earning's service was
done, holders' names, and the family each member may give points to

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("name", sa.String(100)))
    op.add_column("transfers", sa.Column("team_id", sa.String(64)))
    op.add_column("transfers", sa.Column("community", sa.String(64)))
    op.add_column("transfer_resolutions", sa.Column("hours", sa.Numeric(6, 2)))
    op.add_column("entries", sa.Column("posted_at", sa.DateTime(timezone=True)))
    # Entries so far were posted as their transfer was written, or as its pending phase was.
    op.execute(
        "UPDATE entries SET posted_at = COALESCE("
        "(SELECT resolved_at FROM transfer_resolutions"
        " WHERE transfer_resolutions.transfer_id = entries.transfer_id),"
        "(SELECT created_at FROM transfers WHERE transfers.id = entries.transfer_id))"
    )
    _hours_of_earlier_postings()
    # Nothing refers to entries: SQLite copies the table with foreign keys left on.
    with op.batch_alter_table("entries") as batch:
        batch.alter_column("posted_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_index("ix_entries_account_posted_at", ["account_id", "posted_at"])
    op.create_table(
        "family_links",
        sa.Column("holder", sa.String(100), primary_key=True),
        sa.Column("relative", sa.String(100), primary_key=True),
        sa.Column("relation", sa.String(50), nullable=False),
        sa.Column("recorded_by", sa.String(150)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("holder <> relative", name="ck_family_links_two_members"),
    )
    op.create_index("ix_family_links_relative", "family_links", ["relative"])


def _hours_of_earlier_postings() -> None:
    """Give each posting of an earning written before this revision the hours it stands for:
    all of them, or the part its amount pays at the earning's rate."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT r.transfer_id, r.amount AS posted, t.amount, t.hours, t.rate"
            " FROM transfer_resolutions r JOIN transfers t ON t.id = r.transfer_id"
            " WHERE r.outcome = 'posted' AND t.hours IS NOT NULL"
        ).columns(
            sa.column("transfer_id", sa.String),
            sa.column("posted", sa.Numeric(12, 2)),
            sa.column("amount", sa.Numeric(12, 2)),
            sa.column("hours", sa.Numeric(6, 2)),
            sa.column("rate", sa.Numeric(10, 2)),
        )
    ).all()
    update = sa.text(
        "UPDATE transfer_resolutions SET hours = :hours WHERE transfer_id = :transfer_id"
    ).bindparams(sa.bindparam("hours", type_=sa.Numeric(6, 2)))
    for transfer_id, posted, amount, hours, rate in rows:
        confirmed = hours
        if posted != amount and rate:
            confirmed = (posted / rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        connection.execute(update, {"hours": confirmed, "transfer_id": transfer_id})


def downgrade() -> None:
    op.drop_index("ix_family_links_relative", "family_links")
    op.drop_table("family_links")
    op.drop_index("ix_entries_account_posted_at", "entries")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later too): copying the tables that
    # others refer to would need SQLite's foreign keys switched off.
    op.drop_column("entries", "posted_at")
    op.drop_column("transfer_resolutions", "hours")
    op.drop_column("transfers", "community")
    op.drop_column("transfers", "team_id")
    op.drop_column("accounts", "name")
