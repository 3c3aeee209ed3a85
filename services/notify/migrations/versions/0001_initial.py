"""notify's initial tables, and the templates the first release sends

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op)
    templates = op.create_table(
        "templates",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("recipient", sa.String(150), nullable=False),
        sa.Column("template", sa.String(100), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("source_message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_inbox_messages_recipient_created", "inbox_messages", ["recipient", "created_at"]
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("recipient", sa.String(150), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("template", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("source_message_id", sa.String(64)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_deliveries_at", "deliveries", ["at"])
    op.create_index("ix_deliveries_source_message_id", "deliveries", ["source_message_id"])

    # Frozen copies of the texts as first released; later changes are made by staff
    # through the API, or by a new migration, never by editing this one.
    now = datetime.now(UTC)
    op.bulk_insert(
        templates,
        [
            {
                "key": "assignment.created",
                "channel": "inbox",
                "subject": "New {{ category }} request",
                "body": "New {{ category }} request: {{ summary }}\n"
                "At building {{ location.building }}, unit {{ location.unit }}, "
                "household {{ location.household }}.",
                "updated_at": now,
            },
            {
                "key": "request.accepted",
                "channel": "inbox",
                "subject": "Your {{ category }} request was accepted",
                "body": "{{ volunteer_name }} accepted your {{ category }} request.",
                "updated_at": now,
            },
            {
                "key": "request.completed",
                "channel": "inbox",
                "subject": "Please confirm your {{ category }} request",
                "body": "{{ volunteer_name }} reports your {{ category }} request done "
                "({{ hours }} hour(s)). Please confirm it, so the volunteer's hours count.",
                "updated_at": now,
            },
            {
                "key": "points.credited",
                "channel": "inbox",
                "subject": "{{ points }} points credited",
                "body": "You earned {{ points }} points for {{ hours }} hour(s) of "
                "{{ category }}. Your balance is {{ balance }} points.",
                "updated_at": now,
            },
        ],
    )


def downgrade() -> None:
    for table in ("deliveries", "inbox_messages", "templates"):
        op.drop_table(table)
    drop_messaging_tables(op)
