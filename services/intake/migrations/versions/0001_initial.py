"""intake's initial tables

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
        "api_clients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "households",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("building", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.UniqueConstraint("community", "building", "unit", "number"),
    )
    op.create_table(
        "residents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("household_id", sa.Integer, sa.ForeignKey("households.id"), nullable=False),
        sa.Column("phone", sa.String(32)),
        sa.Column("is_elderly", sa.Boolean, nullable=False),
        sa.Column("lives_alone", sa.Boolean, nullable=False),
    )
    op.create_table(
        "categories",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("default_priority", sa.String(10), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("category", sa.String(64), sa.ForeignKey("categories.code"), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.String(200), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("external_ref", sa.String(100)),
        sa.Column("submitted_by", sa.String(100), nullable=False),
        sa.Column("resident_id", sa.String(64), sa.ForeignKey("residents.id"), nullable=False),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("building", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("household", sa.String(32), nullable=False),
        sa.Column("assignment_id", sa.String(64)),
        sa.Column("assignee_type", sa.String(20)),
        sa.Column("assignee_id", sa.String(64)),
        sa.Column("assignee_name", sa.String(100)),
        sa.Column("hours", sa.Numeric(6, 2)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_requests_status_created", "requests", ["status", "created_at"])
    op.create_index("ix_requests_location", "requests", ["community", "building"])
    op.create_table(
        "request_timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_request_timeline_request_id", "request_timeline", ["request_id"])


def downgrade() -> None:
    for table in ("request_timeline", "requests", "categories", "residents", "households",
                  "api_clients"):
        op.drop_table(table)
    drop_messaging_tables(op)
