"""The outbox relay: publishes committed events, marked sent only once the broker has them."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime
from typing import Any

import dramatiq
import structlog
from sqlalchemy import select, update

from shared.messaging import utcnow
from shared.runtime import ServiceRuntime

log = structlog.get_logger(__name__)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def to_message(row: Any) -> dramatiq.Message:
    options: dict[str, Any] = {"event": row.event, "event_version": row.version}
    if row.correlation_id:
        options["correlation_id"] = row.correlation_id
    if row.causation_id:
        options["causation_id"] = row.causation_id
    return dramatiq.Message(
        queue_name=row.queue,
        actor_name=row.actor,
        args=(),
        kwargs=dict(row.payload),
        options=options,
        message_id=row.id,
        message_timestamp=_millis(row.created_at),
    )


class Relay:
    """Publishes pending outbox rows in creation order, a batch per transaction."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.outbox = runtime.messaging.outbox
        self._stopping = threading.Event()

    def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        outbox = self.outbox
        query = (
            select(outbox)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(self.runtime.settings.relay_batch_size)
            .with_for_update(skip_locked=True)
        )
        published = 0
        with self.runtime.db.transaction() as session:
            for row in session.execute(query).all():
                try:
                    self.runtime.broker.enqueue(to_message(row))
                except Exception as error:
                    session.execute(
                        update(outbox)
                        .where(outbox.c.id == row.id)
                        .values(attempts=outbox.c.attempts + 1, last_error=repr(error)[:2000])
                    )
                    log.warning("outbox.publish_failed", message_id=row.id, error=repr(error))
                    break
                session.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(published_at=utcnow(), attempts=outbox.c.attempts + 1, last_error=None)
                )
                published += 1
        if published:
            log.debug("outbox.published", count=published)
        return published

    def run(self) -> None:
        """Publish until stopped; back off while the broker or database is unavailable."""
        log.info("relay.started", service=self.runtime.name)
        interval = self.runtime.settings.relay_interval_s
        backoff = interval
        while not self._stopping.is_set():
            try:
                count = self.publish_pending()
                backoff = interval
            except Exception:
                log.exception("relay.cycle_failed")
                count = 0
                backoff = min(backoff * 2, 10.0)
            if count < self.runtime.settings.relay_batch_size:
                self._stopping.wait(backoff)
        log.info("relay.stopped", service=self.runtime.name)

    def stop(self, *_: Any) -> None:
        self._stopping.set()

    def run_until_signalled(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.run()


def drain(runtime: ServiceRuntime, *, timeout_s: float = 10.0) -> int:
    """Publish every pending row now (used by tests and the CLI)."""
    relay = Relay(runtime)
    total = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = relay.publish_pending()
        total += count
        if count == 0:
            break
    return total
