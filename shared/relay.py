"""The relay: the outbox's safety net. It publishes what the committing processes left behind:
rows of a process that died or whose publish failed, and rows of processes that do not publish at
commit. On PostgreSQL such processes wake it with a notification at commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import dramatiq
import psycopg
import structlog
from sqlalchemy import Select, Table, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.clock import utcnow
from shared.database import Database
from shared.lifecycle import StoppableLoop
from shared.messaging import OUTBOX_CHANNEL
from shared.publishing import Routes, enqueue_copies, mark_sent, subscriber_queues

log = structlog.get_logger(__name__)


class Relay(StoppableLoop):
    """Publishes pending outbox rows in creation order, a batch at a time.

    On PostgreSQL the batch is claimed with ``FOR UPDATE SKIP LOCKED`` for the duration of the
    publish, so several relays can share an outbox. SQLite has one writer for the whole file,
    so there the batch is read, published with no transaction open, and then marked in one
    short write: a slow broker never holds up the service's other writes.

    Rows younger than ``grace_s`` are left to the process that committed them, which publishes
    them itself; the relay sweeps up every ``interval_s``. On PostgreSQL it also listens: a
    transaction of a process that does not publish at commit notifies the relay as it commits,
    and the relay publishes at once.

    On SQLite the relay also checkpoints the service's write-ahead log every
    ``checkpoint_interval_s`` (``Database.checkpoint``), so that no commit, holding the one
    write lock, has to.
    """

    # Under load a service's log grows by a few thousand pages a second.
    CHECKPOINT_INTERVAL_S = 0.25

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
        self.checkpoint_interval_s = self.CHECKPOINT_INTERVAL_S
        self._checkpoint_due = 0.0
        super().__init__()
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

    def checkpoint_when_due(self) -> None:
        """Checkpoint the SQLite log once ``checkpoint_interval_s`` has passed since the last."""
        now = time.monotonic()
        if not self.db.is_sqlite or now < self._checkpoint_due:
            return
        self._checkpoint_due = now + self.checkpoint_interval_s
        try:
            checkpointed = self.db.checkpoint()
        except Exception as error:
            # The outbox matters more: it is published all the same (and SQLite's own
            # checkpoint in the commits is the backstop).
            log.warning("database.checkpoint_failed", error=repr(error))
            return
        if checkpointed is not None and checkpointed[1]:
            log.debug("database.checkpointed", pages=checkpointed[1], in_log=checkpointed[0])

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or until stopped; on SQLite checkpoint the log meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            if self.db.is_sqlite:
                self.checkpoint_when_due()
                left = min(left, max(self._checkpoint_due - time.monotonic(), 0.01))
            self._stopping.wait(left)

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
                    self.checkpoint_when_due()
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
                        self._pause(backoff)
        finally:
            if listener is not None:
                listener.close()
        log.info("relay.stopped", service=self.service)


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
