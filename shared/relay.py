"""The outbox relay: publishes each committed event to the queue of every subscriber, and marks
it sent only once the broker has every copy."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import dramatiq
import structlog
from sqlalchemy import Select, Table, select, update
from sqlalchemy.orm import Session

from shared.clock import utcnow
from shared.database import Database
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


class Relay:
    """Publishes pending outbox rows in creation order, a batch at a time.

    On PostgreSQL the batch is claimed with ``FOR UPDATE SKIP LOCKED`` for the duration of the
    publish, so several relays can share an outbox. SQLite has one writer for the whole file,
    so there the batch is read, published with no transaction open, and then marked in one
    short write: a slow broker never holds up the service's other writes.
    """

    def __init__(
        self,
        *,
        service: str,
        db: Database,
        outbox: Table,
        broker: dramatiq.Broker,
        interval_s: float = 0.1,
        batch_size: int = 100,
        routes: Routes = subscriber_queues,
    ) -> None:
        self.service = service
        self.db = db
        self.outbox = outbox
        self.broker = broker
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.routes = routes
        self._stopping = threading.Event()
        # Whether the last batch stopped on a row the broker refused.
        self.last_failed = False

    def _pending(self) -> Select[Any]:
        outbox = self.outbox
        return (
            select(outbox)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(self.batch_size)
        )

    def _publish(self, rows: Sequence[Any]) -> tuple[list[str], tuple[str, str] | None]:
        """Send rows in order until one fails: the ids sent, and the failed id with its error.

        A row is sent once the broker took every copy; if one copy fails, the row is sent again
        later, copies included, and subscribers that had theirs skip it by its message id.
        """
        sent: list[str] = []
        for row in rows:
            try:
                copies = to_messages(row, self.routes)
            except ContractError:
                # Nobody subscribes to it (any more): marking it sent keeps the relay moving.
                log.error("outbox.no_subscribers", message_id=row.id, event=row.event)
                sent.append(row.id)
                continue
            try:
                for message in copies:
                    self.broker.enqueue(message)
            except Exception as error:
                log.warning("outbox.publish_failed", message_id=row.id, error=repr(error))
                return sent, (row.id, repr(error)[:2000])
            sent.append(row.id)
        return sent, None

    def _mark(self, session: Session, sent: list[str], failed: tuple[str, str] | None) -> None:
        outbox = self.outbox
        if sent:
            session.execute(
                update(outbox)
                .where(outbox.c.id.in_(sent))
                .values(published_at=utcnow(), attempts=outbox.c.attempts + 1, last_error=None)
            )
        if failed is not None:
            session.execute(
                update(outbox)
                .where(outbox.c.id == failed[0])
                .values(attempts=outbox.c.attempts + 1, last_error=failed[1])
            )

    def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        db = self.db
        if db.is_sqlite:
            with db.read() as session:
                rows = session.execute(self._pending()).all()
            sent, failed = self._publish(rows)
            if sent or failed:
                with db.transaction() as session:
                    self._mark(session, sent, failed)
        else:
            with db.transaction() as session:
                rows = session.execute(self._pending().with_for_update(skip_locked=True)).all()
                sent, failed = self._publish(rows)
                self._mark(session, sent, failed)
        if sent:
            log.debug("outbox.published", count=len(sent))
        self.last_failed = failed is not None
        return len(sent)

    def run(self) -> None:
        """Publish until stopped; back off while the broker or database is unavailable."""
        log.info("relay.started", service=self.service)
        interval = self.interval_s
        backoff = interval
        while not self._stopping.is_set():
            try:
                count = self.publish_pending()
                backoff = min(backoff * 2, 10.0) if self.last_failed else interval
            except Exception:
                log.exception("relay.cycle_failed")
                count = 0
                backoff = min(backoff * 2, 10.0)
            if count < self.batch_size:
                self._stopping.wait(backoff)
        log.info("relay.stopped", service=self.service)

    def stop(self, *_: Any) -> None:
        self._stopping.set()

    def run_until_signalled(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.run()


def drain(relay: Relay, *, timeout_s: float = 10.0) -> int:
    """Publish every pending row now (used by tests and the CLI)."""
    total = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = relay.publish_pending()
        total += count
        if count == 0:
            break
    return total
