"""Two-phase transfers with their metadata, the bank's pool and sink, rate history and refused
earnings

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import re
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACCOUNT_KINDS = "kind IN ('holder', 'issuance', 'pool', 'sink')"
CODES = "kind IN ('earn', 'redeem', 'reversal', 'adjust', 'donate', 'gift', 'expiry')"
# How credits were described before the rate, hours and category had columns of their own.
_EARN_MEMO = re.compile(r"^(?P<hours>[0-9.]+) h of (?P<category>[a-z0-9_]+) at (?P<rate>[0-9.]+) ")


def _copy_tables_freely() -> None:
    """On SQLite, changing a table's constraints copies it and drops the original, which the
    rows referring to it forbid while foreign keys are enforced; and SQLite only lets them be
    switched off between transactions. So: commit what came before, switch them off, and go
    on in a new transaction that _check_references closes with a check of every reference."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("COMMIT")
        bind.exec_driver_sql("PRAGMA foreign_keys = OFF")
        bind.exec_driver_sql("BEGIN IMMEDIATE")


def _check_references() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"rows refer to rows that are gone: {broken[:5]}")


def upgrade() -> None:
    _copy_tables_freely()
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("debits_pending", sa.Numeric(12, 2), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("credits_pending", sa.Numeric(12, 2), nullable=False, server_default="0")
        )
        batch.drop_constraint("ck_accounts_kind", type_="check")
        batch.drop_constraint("ck_accounts_holder_not_negative", type_="check")
        batch.create_check_constraint("ck_accounts_kind", ACCOUNT_KINDS)
        batch.create_check_constraint(
            "ck_accounts_available_not_negative", "kind = 'issuance' OR balance - debits_pending >= 0"
        )
        batch.create_check_constraint(
            "ck_accounts_pending_not_negative", "debits_pending >= 0 AND credits_pending >= 0"
        )
    with op.batch_alter_table("transfers") as batch:
        batch.add_column(
            sa.Column("is_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("timeout_s", sa.Integer))
        batch.add_column(sa.Column("on_timeout", sa.String(4)))
        batch.add_column(sa.Column("category", sa.String(64)))
        batch.add_column(sa.Column("hours", sa.Numeric(6, 2)))
        batch.add_column(sa.Column("rate", sa.Numeric(10, 2)))
        batch.add_column(sa.Column("operator", sa.String(150)))
        batch.add_column(sa.Column("reason", sa.Text))
        batch.add_column(sa.Column("reverses_id", sa.String(100)))
        batch.create_foreign_key(
            "fk_transfers_reverses_id_transfers", "transfers", ["reverses_id"], ["id"]
        )
        batch.create_check_constraint("ck_transfers_kind", CODES)
        batch.create_check_constraint(
            "ck_transfers_on_timeout", "on_timeout IS NULL OR on_timeout IN ('post', 'void')"
        )
        batch.create_index("ix_transfers_reverses_id", ["reverses_id"], unique=True)
    _describe_earlier_credits()
    op.create_table(
        "transfer_resolutions",
        sa.Column(
            "transfer_id", sa.String(100), sa.ForeignKey("transfers.id"), primary_key=True
        ),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("operator", sa.String(150)),
        sa.Column("reason", sa.Text),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('posted', 'voided', 'expired')", name="ck_transfer_resolutions_outcome"
        ),
        sa.CheckConstraint(
            "(outcome = 'posted' AND amount > 0) OR (outcome <> 'posted' AND amount = 0)",
            name="ck_transfer_resolutions_amount",
        ),
    )
    op.create_table(
        "earning_rate_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("points_per_hour", sa.Numeric(10, 2), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(150)),
        sa.CheckConstraint("points_per_hour > 0", name="ck_earning_rate_changes_positive"),
    )
    op.create_index(
        "ix_earning_rate_changes_category", "earning_rate_changes", ["category", "id"]
    )
    # The rates in force so far are the first entries of their history.
    op.execute(
        "INSERT INTO earning_rate_changes (category, points_per_hour, set_at) "
        "SELECT category, points_per_hour, updated_at FROM earning_rates ORDER BY category"
    )
    op.create_table(
        "earning_refusals",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("volunteer_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
    )
    _check_references()


def _describe_earlier_credits() -> None:
    """Give the credits written before this revision their hours, category and rate, read
    from the memo each was written with, so that every earn says how it was priced."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, memo FROM transfers WHERE kind = 'earn' AND rate IS NULL")
    ).all()
    update = sa.text(
        "UPDATE transfers SET hours = :hours, category = :category, rate = :rate WHERE id = :id"
    ).bindparams(
        sa.bindparam("hours", type_=sa.Numeric(6, 2)), sa.bindparam("rate", type_=sa.Numeric(10, 2))
    )
    for transfer_id, memo in rows:
        found = _EARN_MEMO.match(memo or "")
        if found is None:
            continue
        try:
            hours, rate = Decimal(found["hours"]), Decimal(found["rate"])
        except InvalidOperation:
            continue
        connection.execute(
            update,
            {"hours": hours, "category": found["category"], "rate": rate, "id": transfer_id},
        )


def downgrade() -> None:
    for table in ("earning_refusals", "earning_rate_changes"):
        op.drop_table(table)
    connection = op.get_bind()
    # The earlier ledger has no place for pending transfers or the bank's pool and sink:
    # refuse rather than lose them.
    unrepresentable = connection.execute(
        sa.text(
            "SELECT (SELECT count(*) FROM transfers WHERE is_pending OR kind <> 'earn')"
            " + (SELECT count(*) FROM accounts WHERE kind NOT IN ('holder', 'issuance'))"
        )
    ).scalar_one()
    if unrepresentable:
        raise RuntimeError(
            "points cannot go below revision 0004: the ledger holds pending transfers, "
            "transfers other than earnings, or the bank's pool or sink accounts"
        )
    op.drop_table("transfer_resolutions")
    _copy_tables_freely()
    with op.batch_alter_table("transfers") as batch:
        batch.drop_index("ix_transfers_reverses_id")
        batch.drop_constraint("ck_transfers_on_timeout", type_="check")
        batch.drop_constraint("ck_transfers_kind", type_="check")
        batch.drop_constraint("fk_transfers_reverses_id_transfers", type_="foreignkey")
        for column in (
            "reverses_id",
            "reason",
            "operator",
            "rate",
            "hours",
            "category",
            "on_timeout",
            "timeout_s",
            "is_pending",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("ck_accounts_pending_not_negative", type_="check")
        batch.drop_constraint("ck_accounts_available_not_negative", type_="check")
        batch.drop_constraint("ck_accounts_kind", type_="check")
        batch.create_check_constraint("ck_accounts_kind", "kind IN ('holder', 'issuance')")
        batch.create_check_constraint(
            "ck_accounts_holder_not_negative", "kind = 'issuance' OR balance >= 0"
        )
        batch.drop_column("credits_pending")
        batch.drop_column("debits_pending")
    _check_references()
