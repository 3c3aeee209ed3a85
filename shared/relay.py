"""Publishing the outbox: each committed event goes to the queue of every subscriber, and is
marked sent only once the broker has every copy.

Two paths share that work. The process that commits an event publishes it right after the
commit (``CommitPublisher``); the relay (``Relay``) publishes whatever that left behind: rows of
a process that died or whose publish failed, and rows of processes that do not publish at
commit. On PostgreSQL such processes wake the relay with a notification at commit.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import psycopg
import structlog
from sqlalchemy import Select, Table, event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, SessionTransaction

from shared.clock import utcnow
from shared.database import Database
from shared.events import ContractError, subscribers
from shared.messaging import (
    OUTBOX_CHANNEL,
    PUBLISHED_AT_COMMIT,
    StagedEvent,
    forget_rolled_back,
    take_committed,
)
from shared.topology import queue_of

log = structlog.get_logger(__name__)

# Session.info key: events of committed transactions, until the publisher sends them.
_COMMITTED = "redvest.committed"


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


class Relay:
    """Publishes pending outbox rows in creation order, a batch at a time.

    On PostgreSQL the batch is claimed with ``FOR UPDATE SKIP LOCKED`` for the duration of the
    publish, so several relays can share an outbox. SQLite has one writer for the whole file,
    so there the batch is read, published with no transaction open, and then marked in one
    short write: a slow broker never holds up the service's other writes.

    Rows younger than ``grace_s`` are left to the process that committed them, which publishes
    them itself; the relay sweeps up every ``interval_s``. On PostgreSQL it also listens: a
    transaction of a process that does not publish at commit notifies the relay as it commits,
    and the relay publishes at once.
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
        grace_s: float = 0.0,
        routes: Routes = subscriber_queues,
    ) -> None:
        self.service = service
        self.db = db
        self.outbox = outbox
        self.broker = broker
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.grace = timedelta(seconds=grace_s)
        self.routes = routes
        self._stopping = threading.Event()
        # Whether the last batch stopped on a row the broker refused.
        self.last_failed = False

    def _pending(self, grace: timedelta) -> Select[Any]:
        outbox = self.outbox
        query = select(outbox).where(outbox.c.published_at.is_(None))
        if grace:
            query = query.where(outbox.c.created_at <= utcnow() - grace)
        return query.order_by(outbox.c.created_at, outbox.c.id).limit(self.batch_size)

    def _publish(self, rows: Sequence[Any]) -> tuple[list[str], tuple[str, str] | None]:
        return enqueue_copies(self.broker, rows, self.routes)

    def _mark(self, session: Session, sent: list[str], failed: tuple[str, str] | None) -> None:
        outbox = self.outbox
        mark_sent(session, outbox, sent)
        if failed is not None:
            session.execute(
                update(outbox)
                .where(outbox.c.id == failed[0])
                .values(attempts=outbox.c.attempts + 1, last_error=failed[1])
            )

    def publish_pending(self, *, at_once: bool = False) -> int:
        """Publish one batch; returns how many rows were published.

        ``at_once`` publishes rows however young (the relay was told they were committed).
        """
        db = self.db
        pending = self._pending(timedelta(0) if at_once else self.grace)
        if db.is_sqlite:
            with db.read() as session:
                rows = session.execute(pending).all()
            sent, failed = self._publish(rows)
            if sent or failed:
                with db.transaction() as session:
                    self._mark(session, sent, failed)
        else:
            with db.transaction() as session:
                rows = session.execute(pending.with_for_update(skip_locked=True)).all()
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
        listener = _Listener(self.db.url) if not self.db.is_sqlite else None
        at_once = False
        try:
            while not self._stopping.is_set():
                try:
                    count = self.publish_pending(at_once=at_once)
                    backoff = min(backoff * 2, 10.0) if self.last_failed else interval
                except Exception:
                    log.exception("relay.cycle_failed")
                    count = 0
                    backoff = min(backoff * 2, 10.0)
                at_once = count >= self.batch_size
                if count < self.batch_size and not self._stopping.is_set():
                    if listener is not None and backoff == interval:
                        at_once = listener.wait(backoff, self._stopping)
                    else:
                        self._stopping.wait(backoff)
        finally:
            if listener is not None:
                listener.close()
        log.info("relay.stopped", service=self.service)

    def stop(self, *_: Any) -> None:
        self._stopping.set()

    def run_until_signalled(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.run()


def drain(relay: Relay, *, timeout_s: float = 10.0) -> int:
    """Publish every pending row now, however young (used by tests and the CLI)."""
    total = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = relay.publish_pending(at_once=True)
        total += count
        if count == 0:
            break
    return total


class _Listener:
    """The relay's PostgreSQL connection, listening for transactions that staged events."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.connection: psycopg.Connection[Any] | None = None

    def wait(self, timeout_s: float, stopping: threading.Event) -> bool:
        """Wait up to ``timeout_s`` for a notification; True when one came."""
        try:
            if self.connection is None or self.connection.closed:
                self.connection = psycopg.connect(self.url, autocommit=True)
                self.connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
                # Rows committed before the LISTEN woke nobody: look at once.
                return True
            # In slices, so a relay told to stop does not sleep through its safety interval.
            deadline = time.monotonic() + timeout_s
            while not stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
                for _ in self.connection.notifies(timeout=min(remaining, 0.5), stop_after=1):
                    return True
            return False
        except psycopg.Error as error:
            log.warning("relay.listen_failed", error=repr(error))
            self.close()
            time.sleep(timeout_s)
            return False

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class CommitPublisher:
    """Publishes the events a transaction staged right after it commits, never before.

    Attached to a database: when a write transaction commits, the events it staged (less those
    of savepoints rolled back) are enqueued, every subscriber's copy, in the committing thread
    once the write lock is released (``synchronous``), or by a thread of the publisher. That
    thread marks the rows sent, a batch at a time. Whatever is left behind, because the broker
    refused it or the process died first, stays pending for the relay.
    """

    # Marks wait this long to gather more rows: each is a write, and on SQLite a turn at the
    # one write lock that the service's web, worker and relay processes share.
    MARK_DELAY_S = 0.05

    def __init__(
        self,
        *,
        db: Database,
        outbox: Table,
        broker: dramatiq.Broker,
        routes: Routes = subscriber_queues,
        synchronous: bool = True,
        batch_size: int = 500,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.broker = broker
        self.routes = routes
        self.synchronous = synchronous
        self.batch_size = batch_size
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.close)

    def _reset(self) -> None:
        # A forked child starts with no thread and nothing of its parent's to publish.
        self._changed = threading.Condition()
        self._to_send: list[StagedEvent] = []
        self._to_mark: list[str] = []
        self._mark_due = 0.0
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def attach(self) -> CommitPublisher:
        """Publish the commits of ``db``'s write transactions from now on."""
        sessions = self.db.sessions
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_soft_rollback", self._rolled_back)
        sessions.configure(info={PUBLISHED_AT_COMMIT: True})
        self.db.after_write.append(self._released)
        return self

    def detach(self) -> None:
        sessions = self.db.sessions
        event.remove(sessions, "after_commit", self._committed)
        event.remove(sessions, "after_soft_rollback", self._rolled_back)
        sessions.configure(info={})
        self.db.after_write.remove(self._released)

    def _rolled_back(self, session: Session, previous_transaction: SessionTransaction) -> None:
        forget_rolled_back(session, previous_transaction)

    def _committed(self, session: Session) -> None:
        # Only what a commit kept; sent once the transaction has let go of the write lock.
        session.info[_COMMITTED] = session.info.get(_COMMITTED, []) + take_committed(session)

    def _released(self, session: Session) -> None:
        committed: list[StagedEvent] = session.info.pop(_COMMITTED, [])
        if not committed:
            return
        sent: list[str] = []
        if self.synchronous:
            # Whatever the broker refuses here is left to the relay.
            sent, _ = enqueue_copies(self.broker, committed, self.routes)
        with self._changed:
            # The thread sleeps until the first mark is due: only news it would act on sooner
            # wakes it, since every wake takes the interpreter from the threads serving requests.
            wake = not self._to_mark or not self.synchronous
            if self.synchronous:
                self._add_marks(sent)
            else:
                self._to_send.extend(committed)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="commit-publisher", daemon=True
                )
                self._thread.start()
            if wake:
                self._changed.notify_all()

    def _add_marks(self, sent: list[str]) -> None:
        if sent and not self._to_mark:
            self._mark_due = time.monotonic() + self.MARK_DELAY_S
        self._to_mark.extend(sent)

    def _next_work(self) -> tuple[list[StagedEvent], list[str]] | None:
        """What to send, or else what to mark, once there is some; None once closed and done."""
        with self._changed:
            while True:
                if self._to_send:
                    to_send = self._to_send[: self.batch_size]
                    del self._to_send[: len(to_send)]
                    self._busy = True
                    return to_send, []
                wait = None
                if self._to_mark:
                    wait = self._mark_due - time.monotonic()
                    if wait <= 0 or self._closed:
                        to_mark, self._to_mark = self._to_mark, []
                        self._busy = True
                        return [], to_mark
                elif self._closed:
                    return None
                self._busy = False
                self._changed.notify_all()
                self._changed.wait(wait)

    def _run(self) -> None:
        while (work := self._next_work()) is not None:
            to_send, to_mark = work
            if to_send:
                sent, _ = enqueue_copies(self.broker, to_send, self.routes)
                with self._changed:
                    self._add_marks(sent)
            if to_mark:
                self._mark(to_mark)
        with self._changed:
            self._busy = False
            self._changed.notify_all()

    def _mark(self, sent: list[str]) -> None:
        try:
            with self.db.transaction() as session:
                mark_sent(session, self.outbox, sent)
        except Exception as error:
            # The rows stay pending: the relay publishes them again, and consumers skip them.
            log.warning("outbox.mark_failed", count=len(sent), error=repr(error))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything committed so far is published and marked; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._mark_due = 0.0
            self._changed.notify_all()
            while self._to_send or self._to_mark or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._mark_due = 0.0
                self._changed.notify_all()
                self._changed.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Publish and mark what is left, then stop the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
