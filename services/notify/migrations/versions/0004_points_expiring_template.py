"""The template that tells a member their unused points are about to expire

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_templates = sa.table(
    "templates",
    sa.column("key", sa.String),
    sa.column("channel", sa.String),
    sa.column("subject", sa.Text),
    sa.column("body", sa.Text),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    # A frozen copy of the text as first released; later changes are made by staff.
    op.bulk_insert(
        _templates,
        [
            {
                "key": "points.expiring",
                "channel": "inbox",
                "subject": "{{ points }} points expire on {{ expires_on }}",
                "body": "{{ points }} of your points have gone unused for long and expire on "
                "{{ expires_on }}, unless you use them before. Your balance is {{ balance }} "
                "points.",
                "updated_at": datetime.now(UTC),
            }
        ],
    )


def downgrade() -> None:
    op.execute(_templates.delete().where(_templates.c.key == "points.expiring"))
