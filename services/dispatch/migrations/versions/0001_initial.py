"""dispatch's initial tables

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
        "teams",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "volunteers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id")),
        sa.Column("phone", sa.String(32)),
        sa.Column("is_active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_volunteers_team_id", "volunteers", ["team_id"])
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("volunteer_id", sa.String(64), sa.ForeignKey("volunteers.id"), nullable=False),
        sa.Column("precedence", sa.Integer, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_routing_rules_category", "routing_rules", ["category", "precedence"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("summary", sa.String(200), nullable=False),
        sa.Column("resident_id", sa.String(64), nullable=False),
        sa.Column("location", sa.JSON, nullable=False),
        sa.Column("volunteer_id", sa.String(64), sa.ForeignKey("volunteers.id"), nullable=False),
        sa.Column("rule_id", sa.String(64), sa.ForeignKey("routing_rules.id")),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("hours", sa.Numeric(6, 2)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_assignments_status_assigned", "assignments", ["status", "assigned_at"])
    op.create_index("ix_assignments_volunteer_status", "assignments", ["volunteer_id", "status"])


def downgrade() -> None:
    for table in ("assignments", "routing_rules", "volunteers", "teams"):
        op.drop_table(table)
    drop_messaging_tables(op)
