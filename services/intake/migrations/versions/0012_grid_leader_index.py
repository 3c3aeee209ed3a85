"""A grid leader's places are found by an index, not by reading the whole grid

Every request a grid leader lists or reads is checked against the nodes they are responsible
for; without this index each check read every node of the grid.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_grid_nodes_responsible_resident_id", "grid_nodes", ["responsible_resident_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_grid_nodes_responsible_resident_id", table_name="grid_nodes")
