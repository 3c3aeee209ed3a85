"""Alembic, driven from code: each service keeps its own migrations and version table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from shared.database import create_database_engine, normalise_url


def alembic_config(migrations: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    return config


def upgrade(migrations: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(migrations, database_url), revision)


def downgrade(migrations: Path, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(migrations, database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None before its first migration."""
    engine = create_database_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    # alembic fills ``context`` in only while it runs an env.py: look it up then, not before.
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        # A migration that fails must not leave its connection open in the pool.
        engine.dispose()


def _now() -> sa.Column[Any]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def create_messaging_tables(op: Any) -> None:
    """Version 1 of the outbox, inbox, dead-letter and idempotency tables (frozen)."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(150), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("causation_id", sa.String(64)),
        _now(),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "created_at"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(150), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(150), nullable=False),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="1"),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        sa.Column("replays", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("client", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        _now(),
    )


def drop_messaging_tables(op: Any) -> None:
    for table in ("idempotency_keys", "dead_letters", "inbox", "outbox"):
        op.drop_table(table)


def outbox_without_routing(op: Any) -> None:
    """Version 2 of the outbox: an event names no queue or actor; its subscribers do."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("queue")
        batch.drop_column("actor")


def outbox_with_routing(op: Any) -> None:
    """Back to version 1 (rows written since carry no queue: they get an empty one)."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("queue", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("actor", sa.String(150), nullable=False, server_default=""))


def create_timer_tables(op: Any) -> None:
    """Version 1 of the timers, job-run and scheduler-lease tables (frozen)."""
    op.create_table(
        "timers",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("what", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_timers_due", "timers", ["state", "attempt_at"])
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(100), primary_key=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("ran_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("runner", sa.String(100)),
    )
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_timer_tables(op: Any) -> None:
    for table in ("scheduler_leases", "job_runs", "timers"):
        op.drop_table(table)
