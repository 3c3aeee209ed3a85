"""points's initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op)
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("balance", sa.Numeric(12, 2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('holder', 'issuance')", name="ck_accounts_kind"),
        sa.CheckConstraint(
            "kind = 'issuance' OR balance >= 0", name="ck_accounts_holder_not_negative"
        ),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("debit_account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("credit_account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("memo", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_transfers_two_accounts"
        ),
    )
    op.create_index("ix_transfers_request_id", "transfers", ["request_id"])
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("transfer_id", sa.String(100), sa.ForeignKey("transfers.id"), nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("amount <> 0", name="ck_entries_amount_not_zero"),
    )
    op.create_index("ix_entries_transfer_id", "entries", ["transfer_id"])
    op.create_index("ix_entries_account_id", "entries", ["account_id", "id"])
    op.create_table(
        "earning_rates",
        sa.Column("category", sa.String(64), primary_key=True),
        sa.Column("points_per_hour", sa.Numeric(10, 2), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points_per_hour > 0", name="ck_earning_rates_positive"),
    )


def downgrade() -> None:
    for table in ("earning_rates", "entries", "transfers", "accounts"):
        op.drop_table(table)
    drop_messaging_tables(op)
