"""Messages that could not be processed are copied into the service's database for replay."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware
from sqlalchemy import ColumnElement, Table, func, insert, or_, select, update

from shared.clock import utcnow
from shared.database import Database

log = structlog.get_logger(__name__)

# Broker bookkeeping that must not travel with a replayed message.
_TRANSIENT_OPTIONS = ("redis_message_id", "retries", "traceback", "eta", "dead_letter")


class DeadLetterRecorder(Middleware):
    """Before the broker dead-letters a message, keep a copy in the database."""

    def __init__(self, *, db: Database, table: Table) -> None:
        self.db = db
        self.table = table

    def before_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        error = getattr(message, "_exception", None)
        text = f"{type(error).__name__}: {error}" if error is not None else "rejected"
        try:
            record_dead_letter(self.db, self.table, message=message.asdict(), error=text)
        except Exception:  # the broker keeps its own copy; never crash the worker here
            log.exception("dead_letter.record_failed", message_id=message.message_id)
            return
        log.error(
            "message.dead_lettered",
            message_id=message.message_id,
            actor=message.actor_name,
            queue=message.queue_name,
            error=text,
        )


def _json_safe(message: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = json.loads(json.dumps(message, default=str))
    return safe


def record_dead_letter(db: Database, table: Table, *, message: dict[str, Any], error: str) -> None:
    message = _json_safe(message)
    with db.transaction() as session:
        existing = session.execute(
            select(table.c.failures).where(table.c.message_id == message["message_id"])
        ).first()
        if existing is None:
            session.execute(
                insert(table).values(
                    message_id=message["message_id"],
                    queue=message["queue_name"],
                    actor=message["actor_name"],
                    message=message,
                    error=error,
                    failed_at=utcnow(),
                    failures=1,
                    replays=0,
                )
            )
        else:
            session.execute(
                update(table)
                .where(table.c.message_id == message["message_id"])
                .values(
                    error=error, failed_at=utcnow(), failures=existing.failures + 1, message=message
                )
            )


def outstanding(table: Table) -> ColumnElement[bool]:
    """Dead letters not replayed, or failed again since their last replay."""
    return or_(table.c.replayed_at.is_(None), table.c.replayed_at < table.c.failed_at)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    queue: str
    actor: str
    error: str
    failed_at: datetime
    failures: int
    replays: int
    replayed_at: datetime | None


def list_dead_letters(
    db: Database, table: Table, *, include_replayed: bool = False
) -> list[DeadLetter]:
    query = select(table).order_by(table.c.failed_at)
    if not include_replayed:
        query = query.where(outstanding(table))
    with db.read() as session:
        return [
            DeadLetter(
                message_id=row.message_id,
                queue=row.queue,
                actor=row.actor,
                error=row.error,
                failed_at=row.failed_at,
                failures=row.failures,
                replays=row.replays,
                replayed_at=row.replayed_at,
            )
            for row in session.execute(query)
        ]


def replay_dead_letter(
    db: Database, table: Table, broker: dramatiq.Broker, message_id: str
) -> bool:
    """Send a dead letter back to its queue under the same message id; False if unknown."""
    with db.read() as session:
        row = session.execute(select(table).where(table.c.message_id == message_id)).first()
    if row is None:
        return False
    stored = dict(row.message)
    options = {k: v for k, v in stored.get("options", {}).items() if k not in _TRANSIENT_OPTIONS}
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=stored["queue_name"],
        actor_name=stored["actor_name"],
        args=tuple(stored.get("args", ())),
        kwargs=stored.get("kwargs", {}),
        options=options,
        message_id=stored["message_id"],
        message_timestamp=stored.get("message_timestamp", 0),
    )
    # The broker call happens outside any transaction: on SQLite a write transaction would
    # hold the whole service's write lock for as long as the broker takes to answer.
    broker.enqueue(message)
    with db.transaction() as session:
        session.execute(
            update(table)
            .where(table.c.message_id == message_id)
            .values(replayed_at=utcnow(), replays=func.coalesce(table.c.replays, 0) + 1)
        )
    log.info("dead_letter.replayed", message_id=message_id, actor=row.actor)
    return True
