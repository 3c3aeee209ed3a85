"""The commit publisher: the process that commits an event publishes it right after the
commit, never before, and marks it sent; what it leaves behind stays pending for the relay."""

from __future__ import annotations

import atexit
import os
import threading
import time

import dramatiq
import structlog
from sqlalchemy import Table, event
from sqlalchemy.orm import Session, SessionTransaction

from shared.database import Database
from shared.messaging import PUBLISHED_AT_COMMIT, StagedEvent, forget_rolled_back, take_committed
from shared.publishing import Routes, enqueue_copies, mark_sent, subscriber_queues

log = structlog.get_logger(__name__)

# Session.info key: events of committed transactions, until the publisher sends them.
_COMMITTED = "redvest.committed"


class CommitPublisher:
    """Publishes the events a transaction staged right after it commits, never before.

    Attached to a database: when a write transaction commits, the events it staged (less those
    of savepoints rolled back) are enqueued, every subscriber's copy, in the committing thread
    once the write lock is released (``synchronous``), or by a thread of the publisher. That
    thread marks the rows sent, a batch at a time. Whatever is left behind, because the broker
    refused it or the process died first, stays pending for the relay.
    """

    # Marks wait this long to gather more rows: each is a write transaction (on SQLite a turn at
    # the one write lock the service's web, worker and relay processes share), so under load one
    # mark serves dozens of events. Far below the relay's grace (RELAY_GRACE_S, 5 s): the relay
    # never takes a row its publisher is about to mark.
    MARK_DELAY_S = 0.5

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
