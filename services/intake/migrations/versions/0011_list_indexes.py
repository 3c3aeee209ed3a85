"""The staff lists read a page's rows however many requests there are

A community's newest requests, a building's most urgent (urgency descending, then the nearest
deadline, as the list sorts), and a building's open or overdue ones counted: without these
indexes, with a million requests stored, each read every request of the community or of the
building.

Revision ID: 0011
Revises: 0010
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES: dict[str, list[Any]] = {
    "ix_requests_community_created": ["community", "created_at", "id"],
    "ix_requests_building_urgency": [
        "community",
        "building",
        sa.desc(sa.column("urgency")),
        "due_at",
        "id",
    ],
    "ix_requests_building_status": ["community", "building", "status", "due_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "requests", columns)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="requests")
