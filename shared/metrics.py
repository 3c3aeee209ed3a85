"""Prometheus metrics every service exposes: HTTP traffic, its outbox and dead letters, and its
timers."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from shared.clock import utcnow
from shared.database import Database
from shared.dead_letters import outstanding
from shared.messaging import Messaging
from shared.timers import FAILED, PENDING, Timers

HTTP_REQUESTS = Counter(
    "redvest_http_requests_total",
    "HTTP requests answered",
    ["service", "method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "redvest_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "method", "endpoint"],
)

# Observed by the scheduler process, which serves it with `scheduler --metrics-port`.
TIMER_LATENESS = Histogram(
    "redvest_timer_lateness_seconds",
    "How long after its due time a timer fired",
    ["service"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
)


def observe_timer_lateness(service: str, late_s: float) -> None:
    TIMER_LATENESS.labels(service).observe(late_s)


def observe_request(
    service: str, method: str, endpoint: str, status: int, elapsed_s: float
) -> None:
    HTTP_REQUESTS.labels(service, method, endpoint, status).inc()
    HTTP_LATENCY.labels(service, method, endpoint).observe(elapsed_s)


class MessagingCollector:
    """Outbox backlog and dead letters, read from the service's database at scrape time, so
    every process of the service reports the same numbers."""

    def __init__(self, *, service: str, db: Database, messaging: Messaging) -> None:
        self.service = service
        self.db = db
        self.messaging = messaging

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Nothing to describe up front: the app must not touch the database when it is built.
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        outbox, dead = self.messaging.outbox, self.messaging.dead_letters
        with self.db.read() as session:
            pending, oldest = session.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(
                    outbox.c.published_at.is_(None)
                )
            ).one()
            dead_count = session.execute(
                select(func.count()).select_from(dead).where(outstanding(dead))
            ).scalar_one()
        age = time.time() - oldest.timestamp() if oldest is not None else 0.0
        for name, documentation, value in (
            ("redvest_outbox_pending", "Events not yet published", pending),
            (
                "redvest_outbox_oldest_pending_age_seconds",
                "Age of the oldest unpublished event",
                age,
            ),
            ("redvest_dead_letters", "Dead letters not replayed", dead_count),
            *self._timer_gauges(),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["service"])
            gauge.add_metric([self.service], value)
            yield gauge

    def _timer_gauges(self) -> list[tuple[str, str, float]]:
        """Timers past their due time and not fired, the oldest one's age, and failed ones."""
        timers = Timers.on(self.messaging.outbox.metadata)
        if timers is None:
            return []
        table = timers.timers
        now = utcnow()
        with self.db.read() as session:
            due, oldest = session.execute(
                select(func.count(), func.min(table.c.due_at)).where(
                    table.c.state == PENDING, table.c.due_at <= now
                )
            ).one()
            failed = session.execute(
                select(func.count()).select_from(table).where(table.c.state == FAILED)
            ).scalar_one()
        return [
            ("redvest_timers_due", "Timers past their due time, not yet fired", due),
            (
                "redvest_timers_oldest_due_age_seconds",
                "How long the most overdue timer has been due",
                (now - oldest).total_seconds() if oldest is not None else 0.0,
            ),
            ("redvest_timers_failed", "Timers given up on, kept for staff", failed),
        ]


def exposition(*, multiprocess_dir: str | None, database: CollectorRegistry) -> bytes:
    """The text a scrape of ``/metrics`` returns: this process's (or all gunicorn workers')
    metrics, then the database's."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiprocess_dir)
        processes = generate_latest(registry)
    else:
        processes = generate_latest(REGISTRY)
    return processes + generate_latest(database)
