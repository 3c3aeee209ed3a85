"""The catalogue of services and goods, and redemptions of points for them

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
    op.create_table(
        "catalogue_items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("stock", sa.Integer),
        sa.Column("limit_per_person", sa.Integer),
        sa.Column("limit_period_days", sa.Integer),
        sa.Column("available_from", sa.DateTime(timezone=True)),
        sa.Column("available_until", sa.DateTime(timezone=True)),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('service', 'goods')", name="ck_catalogue_items_kind"),
        sa.CheckConstraint("price > 0", name="ck_catalogue_items_price_positive"),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name="ck_catalogue_items_stock"),
        sa.CheckConstraint(
            "limit_per_person IS NULL OR limit_per_person > 0",
            name="ck_catalogue_items_limit_positive",
        ),
    )
    op.create_table(
        "redemptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "item_id", sa.String(64), sa.ForeignKey("catalogue_items.id"), nullable=False
        ),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("points", sa.Numeric(12, 2), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column(
            "transfer_id",
            sa.String(100),
            sa.ForeignKey("transfers.id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("operator", sa.String(150)),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "status IN ('reserved', 'fulfilled', 'cancelled')", name="ck_redemptions_status"
        ),
        sa.CheckConstraint("quantity > 0", name="ck_redemptions_quantity_positive"),
    )
    op.create_index(
        "ix_redemptions_item_holder", "redemptions", ["item_id", "holder", "created_at"]
    )
    op.create_index("ix_redemptions_holder", "redemptions", ["holder", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_redemptions_holder", "redemptions")
    op.drop_index("ix_redemptions_item_holder", "redemptions")
    op.drop_table("redemptions")
    op.drop_table("catalogue_items")
