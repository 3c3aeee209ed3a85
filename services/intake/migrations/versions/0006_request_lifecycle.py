"""Requests: reporters and typed addresses, answers, attachments, deadlines, the wider state
machine's dates, ratings, duplicates; a timeline that says who did what, for whom to see

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.intake.migrations.rebuild import is_sqlite, rebuild_sqlite_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
# As SQLAlchemy writes FAR_FUTURE into SQLite, for the rows a rebuild copies.
FAR_FUTURE_ON_SQLITE = "9999-12-31 00:00:00.000000"
PLACE = ("community", "building", "unit", "household")
PLACE_LENGTHS = {"community": 64, "building": 32, "unit": 32, "household": 32}
INDEXES = {
    "ix_requests_location": PLACE,
    "ix_requests_created": ("created_at", "id"),
    "ix_requests_updated": ("updated_at", "id"),
    "ix_requests_due": ("due_at", "id"),
    "ix_requests_urgency": ("urgency", "due_at", "id"),
    "ix_requests_resident_id": ("resident_id",),
    "ix_requests_assignee_id": ("assignee_id",),
    "ix_requests_duplicate_of": ("duplicate_of",),
}
DEFAULTED = ("urgency", "is_on_behalf", "answers", "attachments")
TIMELINE_COLUMNS = ("action", "actor", "is_public", "recorded_at")


def new_columns(*, due_default: str | None = None) -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("urgency", sa.Integer, nullable=False, server_default="1"),
        sa.Column("is_on_behalf", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reporter_name", sa.String(100)),
        sa.Column("reporter_phone", sa.String(32)),
        sa.Column("address_text", sa.String(200)),
        sa.Column("answers", sa.JSON, nullable=False, server_default="{}"),
        sa.Column("attachments", sa.JSON, nullable=False, server_default="[]"),
        sa.Column("acknowledge_by", sa.DateTime(timezone=True)),
        sa.Column("resolve_by", sa.DateTime(timezone=True)),
        sa.Column(
            "due_at",
            sa.DateTime(timezone=True),
            nullable=due_default is None,
            server_default=due_default,
        ),
        sa.Column("escalated_at", sa.DateTime(timezone=True)),
        sa.Column("confirmed_as", sa.String(60)),
        sa.Column("rating", sa.Integer),
        sa.Column("rating_comment", sa.String(1000)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("possible_duplicate_of", sa.String(64)),
        sa.Column(
            "duplicate_of",
            sa.String(64),
            sa.ForeignKey("requests.id", name="fk_requests_duplicate_of"),
        ),
    ]


def upgrade() -> None:
    if is_sqlite():
        # Timeline entries refer to requests: rebuilt without ever orphaning one.
        rebuild_sqlite_table(
            "requests",
            nullable=("resident_id", *PLACE),
            dropped_indexes=("ix_requests_location",),
            added=new_columns(due_default=FAR_FUTURE_ON_SQLITE),
        )
    else:
        op.drop_index("ix_requests_location", "requests")
        op.alter_column("requests", "resident_id", existing_type=sa.String(64), nullable=True)
        for column, length in PLACE_LENGTHS.items():
            op.alter_column("requests", column, existing_type=sa.String(length), nullable=True)
        for column in new_columns():
            op.add_column("requests", column)
    requests = sa.table(
        "requests",
        sa.column("priority", sa.String),
        sa.column("urgency", sa.Integer),
        sa.column("status", sa.String),
        sa.column("due_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("completed_at", sa.DateTime(timezone=True)),
    )
    # Requests from before deadlines were kept have none pending.
    op.execute(
        requests.update().values(
            urgency=sa.case(
                {"urgent": 3, "high": 2, "normal": 1}, value=requests.c.priority, else_=0
            ),
            due_at=FAR_FUTURE,
        )
    )
    op.execute(
        requests.update()
        .where(requests.c.status.in_(("completed", "confirmed")))
        .values(completed_at=requests.c.updated_at)
    )
    if not is_sqlite():
        op.alter_column(
            "requests", "due_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        for column in DEFAULTED:
            op.alter_column("requests", column, server_default=None)
    for name, columns in INDEXES.items():
        op.create_index(name, "requests", list(columns))
    op.add_column(
        "request_timeline", sa.Column("action", sa.String(30), nullable=False, server_default="")
    )
    op.add_column(
        "request_timeline", sa.Column("actor", sa.String(150), nullable=False, server_default="")
    )
    op.add_column(
        "request_timeline",
        sa.Column("is_public", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.add_column("request_timeline", sa.Column("recorded_at", sa.DateTime(timezone=True)))
    timeline = sa.table(
        "request_timeline",
        sa.column("status", sa.String),
        sa.column("action", sa.String),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
    )
    op.execute(timeline.update().values(action=timeline.c.status, recorded_at=timeline.c.at))


def downgrade() -> None:
    for column in reversed(TIMELINE_COLUMNS):
        op.drop_column("request_timeline", column)
    # Requests without a resident or a place cannot be kept by the older schema.
    op.execute(
        "DELETE FROM request_timeline WHERE request_id IN (SELECT id FROM requests "
        "WHERE resident_id IS NULL OR household IS NULL)"
    )
    op.execute("UPDATE requests SET duplicate_of = NULL")
    op.execute("DELETE FROM requests WHERE resident_id IS NULL OR household IS NULL")
    for name in INDEXES:
        op.drop_index(name, "requests")
    if is_sqlite():
        rebuild_sqlite_table(
            "requests",
            not_null=("resident_id", *PLACE),
            dropped=[column.name for column in new_columns()],
            added=[sa.Index("ix_requests_location", "community", "building")],
        )
        return
    for column in reversed(new_columns()):
        op.drop_column("requests", column.name)
    for column, length in PLACE_LENGTHS.items():
        op.alter_column("requests", column, existing_type=sa.String(length), nullable=False)
    op.alter_column("requests", "resident_id", existing_type=sa.String(64), nullable=False)
    op.create_index("ix_requests_location", "requests", ["community", "building"])
