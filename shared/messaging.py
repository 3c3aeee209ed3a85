"""The tables that make a service's messaging reliable, and the two calls domain code uses.

Every service keeps, in its own database:
- ``outbox``: events written in the same transaction as the change that caused them;
  each is published to every subscriber's queue with ``message_id`` = the row id, right after
  the commit by the process that committed it, else by the relay.
- ``inbox``: ``(consumer, message_id)`` of every message already handled, written in the
  same transaction as the handler's effect, so a redelivery changes nothing.
- ``dead_letters``: messages that could not be processed, with their error, for replay.
- ``idempotency_keys``: the first answer given to a client's ``Idempotency-Key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, SessionTransaction

from shared import context
from shared.clock import utcnow
from shared.database import DirectStatement, UtcDateTime
from shared.events import NOTIFICATION_REQUESTED, Event, Outgoing
from shared.notifications import NotificationKind

# PostgreSQL's channel a transaction that stages events notifies at commit (each service has its
# own database, so one name serves all); the relay listens on it.
OUTBOX_CHANNEL = "redvest_outbox"
# Session.info keys: the rows staged in the session's open transaction, and whether a publisher
# takes them at commit (then nobody needs waking).
_STAGED = "redvest.staged"
PUBLISHED_AT_COMMIT = "redvest.published_at_commit"
# The transaction whose commit already carries a NOTIFY for the relay.
_NOTIFIED = "redvest.outbox_notified"


@dataclass(frozen=True)
class StagedEvent:
    """An outbox row as it was written: what a publisher needs to send it without reading it."""

    id: str
    event: str
    version: int
    payload: dict[str, Any]
    correlation_id: str | None
    causation_id: str | None
    created_at: datetime


def _staged(session: Session) -> list[tuple[SessionTransaction, StagedEvent]]:
    staged: list[tuple[SessionTransaction, StagedEvent]] = session.info.setdefault(_STAGED, [])
    return staged


def take_committed(session: Session) -> list[StagedEvent]:
    """The events staged by the transaction ``session`` just committed, forgotten by it."""
    staged = session.info.pop(_STAGED, [])
    return [event for _, event in staged]


def forget_rolled_back(session: Session, transaction: SessionTransaction) -> None:
    """Forget what ``transaction`` (a savepoint or the whole) and those inside it staged."""
    staged = session.info.get(_STAGED)
    if not staged:
        return

    def inside(owner: SessionTransaction | None) -> bool:
        while owner is not None:
            if owner is transaction:
                return True
            owner = owner.parent
        return False

    staged[:] = [(owner, event) for owner, event in staged if not inside(owner)]


class Messaging:
    """A service's outbox, inbox, dead-letter and idempotency tables on its own metadata."""

    def __init__(self, metadata: MetaData) -> None:
        self.outbox = Table(
            "outbox",
            metadata,
            Column("id", String(64), primary_key=True),
            Column("event", String(100), nullable=False),
            Column("version", Integer, nullable=False),
            Column("payload", JSON, nullable=False),
            Column("correlation_id", String(64)),
            Column("causation_id", String(64)),
            Column("created_at", UtcDateTime, nullable=False),
            Column("published_at", UtcDateTime),
            Column("attempts", Integer, nullable=False, default=0),
            Column("last_error", Text),
            Index("ix_outbox_pending", "published_at", "created_at"),
        )
        # Built once: staging and claiming are on every request's and message's path.
        self._insert_outbox = DirectStatement(insert(self.outbox))
        self.inbox = Table(
            "inbox",
            metadata,
            Column("consumer", String(150), primary_key=True),
            Column("message_id", String(64), primary_key=True),
            Column("processed_at", UtcDateTime, nullable=False),
        )
        # A concurrent duplicate waits here for the first to commit, then inserts nothing.
        self._claims = {
            name: DirectStatement(
                dialect.insert(self.inbox)
                .on_conflict_do_nothing()
                .returning(self.inbox.c.message_id)
            )
            for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
        }
        self.dead_letters = Table(
            "dead_letters",
            metadata,
            Column("message_id", String(64), primary_key=True),
            Column("queue", String(100), nullable=False),
            Column("actor", String(150), nullable=False),
            Column("message", JSON, nullable=False),
            Column("error", Text, nullable=False),
            Column("failed_at", UtcDateTime, nullable=False),
            Column("failures", Integer, nullable=False, default=1),
            Column("replayed_at", UtcDateTime),
            Column("replays", Integer, nullable=False, default=0),
        )
        self.idempotency_keys = Table(
            "idempotency_keys",
            metadata,
            Column("client", String(100), primary_key=True),
            Column("key", String(255), primary_key=True),
            Column("fingerprint", String(64), nullable=False),
            Column("status_code", Integer, nullable=False),
            Column("body", JSON, nullable=False),
            Column("headers", JSON, nullable=False),
            Column("created_at", UtcDateTime, nullable=False),
        )
        self.insert_idempotency_key = DirectStatement(insert(self.idempotency_keys))

    def stage(
        self,
        session: Session,
        event: Event,
        data: Mapping[str, Any],
        *,
        message_id: str | None = None,
    ) -> str:
        """Write an event to the outbox in the caller's transaction, to be published at commit."""
        return self.stage_outgoing(session, event.outgoing(data), message_id=message_id)

    def stage_outgoing(
        self, session: Session, outgoing: Outgoing, *, message_id: str | None = None
    ) -> str:
        """``stage`` for a payload its contract already checked (``Event.outgoing``)."""
        row_id = message_id or context.new_id()
        staged = StagedEvent(
            id=row_id,
            event=outgoing.event.name,
            version=outgoing.event.version,
            payload=outgoing.payload,
            correlation_id=context.correlation_id() or row_id,
            causation_id=context.causation_id(),
            created_at=utcnow(),
        )
        self._insert_outbox.execute(session, {**vars(staged), "attempts": 0})
        # Remembered with the (nested) transaction that wrote it: a savepoint rolled back
        # takes its rows with it, and only what the outermost commit keeps is published.
        transaction = session.get_nested_transaction() or session.get_transaction()
        if transaction is not None:
            _staged(session).append((transaction, staged))
        # Without a publisher at commit, the relay is woken by a NOTIFY, delivered at commit and
        # never for a rolled-back (nested) transaction; once per transaction is enough.
        if (
            not session.info.get(PUBLISHED_AT_COMMIT)
            and session.info.get(_NOTIFIED) is not transaction
            and session.get_bind().dialect.name == "postgresql"
        ):
            session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})
            session.info[_NOTIFIED] = transaction
        return row_id

    def notify(
        self,
        session: Session,
        kind: NotificationKind,
        *,
        recipient: str,
        channel: str = "inbox",
        **data: Any,
    ) -> str:
        """Ask notify, in the caller's transaction, to tell ``recipient`` a ``kind`` of news."""
        return self.stage(
            session,
            NOTIFICATION_REQUESTED,
            {"recipient": recipient, "template": kind.key, "channel": channel, "data": data},
        )

    def claim(self, session: Session, *, consumer: str, message_id: str) -> bool:
        """Record that ``consumer`` handles ``message_id``; False when it already has."""
        values = {"consumer": consumer, "message_id": message_id, "processed_at": utcnow()}
        claim = self._claims.get(session.get_bind().dialect.name)
        if claim is not None:
            return claim.first(session, values) is not None
        seen = session.execute(
            select(self.inbox.c.message_id).where(
                self.inbox.c.consumer == consumer, self.inbox.c.message_id == message_id
            )
        ).first()
        if seen is not None:
            return False
        session.execute(insert(self.inbox).values(**values))
        return True

    def purge(self, session: Session, *, older_than: timedelta) -> dict[str, int]:
        """Forget published events, handled message ids and idempotency keys past ``older_than``.

        Keep ``older_than`` longer than any redelivery can take (the broker keeps dead messages
        for a week), or a very late duplicate would be handled again.
        """
        cutoff = utcnow() - older_than
        outbox, inbox, keys = self.outbox, self.inbox, self.idempotency_keys
        statements = {
            "outbox": delete(outbox).where(
                outbox.c.published_at.is_not(None), outbox.c.published_at < cutoff
            ),
            "inbox": delete(inbox).where(inbox.c.processed_at < cutoff),
            "idempotency_keys": delete(keys).where(keys.c.created_at < cutoff),
        }
        removed: dict[str, int] = {}
        for table, statement in statements.items():
            result = cast(CursorResult[Any], session.execute(statement))
            removed[table] = int(result.rowcount or 0)
        return removed
