"""API keys hold scopes, may have a rate limit of their own, and tell when they were last used

Keys from before scopes get every scope their role was allowed, so none stops working.

Revision ID: 0009
Revises: 0008
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# What each role of key could do when this revision was written (a revision keeps its own
# copy: later changes to the scopes must not change what it did).
SYSTEM_SCOPES = [
    "requests:read",
    "requests:write",
    "catalogue:write",
    "directory:read",
    "directory:write",
    "webhooks",
    "open311",
]
STAFF_SCOPES = [*SYSTEM_SCOPES, "health:write"]


def upgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("scopes", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("rate_limit", sa.String(40)))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True)))
    clients = sa.table("api_clients", sa.column("role", sa.String), sa.column("scopes", sa.JSON))
    for role, scopes in (("system", SYSTEM_SCOPES), ("staff", STAFF_SCOPES)):
        op.execute(clients.update().where(clients.c.role == role).values(scopes=scopes))


def downgrade() -> None:
    # Before this revision a key could do all its role allowed: a key of the admin role, or
    # one given fewer scopes than its role had, would do more than it was given. Revoke them.
    clients = sa.table(
        "api_clients",
        sa.column("id", sa.Integer),
        sa.column("role", sa.String),
        sa.column("scopes", sa.JSON),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
    )
    whole = {"system": set(SYSTEM_SCOPES), "staff": set(STAFF_SCOPES)}
    live = op.get_bind().execute(
        sa.select(clients.c.id, clients.c.role, clients.c.scopes).where(
            clients.c.revoked_at.is_(None)
        )
    )
    narrower = [
        id_
        for id_, role, scopes in live
        if role not in whole or not whole[role] <= set(scopes or ())
    ]
    if narrower:
        op.execute(
            clients.update()
            .where(clients.c.id.in_(narrower))
            .values(revoked_at=datetime.now(UTC))
        )
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("rate_limit")
        batch.drop_column("scopes")
