"""A household's latest request of a category found by one index seek

Every submission looks for a possible duplicate (the same household and category within a
week); the place index alone made that read every request the household ever made.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PLACE = ["community", "building", "unit", "household"]


def upgrade() -> None:
    op.create_index(
        "ix_requests_place_category", "requests", [*PLACE, "category", "created_at"]
    )
    op.drop_index("ix_requests_location", table_name="requests")


def downgrade() -> None:
    op.create_index("ix_requests_location", "requests", PLACE)
    op.drop_index("ix_requests_place_category", table_name="requests")
