"""Sending outbox rows: each committed event goes to the queue of every subscriber under the
row's id, and a row is marked sent only once the broker has every copy. The commit publisher
(``shared/commit_publisher.py``) and the relay (``shared/relay.py``) both send this way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import dramatiq
import structlog
from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from shared.clock import utcnow
from shared.events import ContractError, subscribers
from shared.topology import queue_of

log = structlog.get_logger(__name__)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


Routes = Callable[[str, int], Sequence[str]]


def subscriber_queues(event: str, version: int) -> list[str]:
    """The queues of the services subscribed to an event (ContractError if it has none)."""
    return [queue_of(service) for service in subscribers(event, version)]


def to_messages(row: Any, routes: Routes = subscriber_queues) -> list[dramatiq.Message]:
    """The copies of an outbox row, one for each subscriber's queue, all under the row's id."""
    options: dict[str, Any] = {"event": row.event, "event_version": row.version}
    if row.correlation_id:
        options["correlation_id"] = row.correlation_id
    if row.causation_id:
        options["causation_id"] = row.causation_id
    return [
        dramatiq.Message(
            queue_name=queue,
            actor_name=f"{row.event}.v{row.version}",
            args=(),
            kwargs=dict(row.payload),
            options=dict(options),
            message_id=row.id,
            message_timestamp=_millis(row.created_at),
        )
        for queue in routes(row.event, row.version)
    ]


def enqueue_copies(
    broker: dramatiq.Broker, rows: Iterable[Any], routes: Routes = subscriber_queues
) -> tuple[list[str], tuple[str, str] | None]:
    """Send rows in order until one fails: the ids sent, and the failed id with its error.

    A row is sent once the broker took every copy; if one copy fails, the row is sent again
    later, copies included, and subscribers that had theirs skip it by its message id.
    """
    sent: list[str] = []
    for row in rows:
        try:
            copies = to_messages(row, routes)
        except ContractError:
            # Nobody subscribes to it (any more): marking it sent keeps the outbox moving.
            log.error("outbox.no_subscribers", message_id=row.id, event=row.event)
            sent.append(row.id)
            continue
        try:
            for message in copies:
                broker.enqueue(message)
        except Exception as error:
            log.warning("outbox.publish_failed", message_id=row.id, error=repr(error))
            return sent, (row.id, repr(error)[:2000])
        sent.append(row.id)
    return sent, None


def mark_sent(session: Session, outbox: Table, sent: Sequence[str]) -> None:
    """Record that the broker took every copy of these rows."""
    if sent:
        session.execute(
            update(outbox)
            .where(outbox.c.id.in_(sent), outbox.c.published_at.is_(None))
            .values(published_at=utcnow(), attempts=outbox.c.attempts + 1, last_error=None)
        )
