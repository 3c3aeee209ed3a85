"""The index of merged requests holds the merged ones only

Every submission looks for the household's latest request of the category that was not merged
(``duplicate_of IS NULL``). With an index of every request's ``duplicate_of``, PostgreSQL
without statistics of the table (a new deployment, a table that grew fast since its last
ANALYZE) chose it for that condition and read every request at each submission. Partial, the
index still serves the one question it is for: which requests were merged into this one.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MERGED = sa.text("duplicate_of IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_requests_duplicate_of", table_name="requests")
    op.create_index(
        "ix_requests_duplicate_of",
        "requests",
        ["duplicate_of"],
        postgresql_where=MERGED,
        sqlite_where=MERGED,
    )


def downgrade() -> None:
    op.drop_index("ix_requests_duplicate_of", table_name="requests")
    op.create_index("ix_requests_duplicate_of", "requests", ["duplicate_of"])
