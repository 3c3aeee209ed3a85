"""Prometheus metrics every service exposes: HTTP traffic, its outbox, dead letters and queue,
its timers, and the counters of what needs a person (SLA breaches, escalations, ledger findings).

Gauges of what is stored (outbox, dead letters, timers) and of the broker's queue are read at
scrape time by the web process, so every replica reports the same numbers; the alert rules in
deploy/prometheus/alerts.yaml and the dashboard in deploy/grafana/redvest.json read these names.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from shared.clock import utcnow
from shared.database import Database
from shared.dead_letters import outstanding
from shared.messaging import Messaging
from shared.timers import FAILED, PENDING, Timers
from shared.topology import queue_of

log = structlog.get_logger(__name__)

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


# What needs a person, counted where it happens (a timer handler, a consumer, a job). Declared
# here so that dashboards and alert rules can rely on the names before every feature counts.
SLA_BREACHES = Counter(
    "redvest_sla_breaches_total",
    "Deadlines missed: a request not acknowledged or not served in time",
    ["service", "deadline"],
)
ESCALATIONS = Counter(
    "redvest_escalations_total",
    "Escalations of a post, by whom they went to; `nobody` means no one on the post or above "
    "it could be reached",
    ["service", "escalated_to"],
)
LEDGER_AUDIT_FINDINGS = Counter(
    "redvest_ledger_audit_findings_total",
    "Findings of the ledger audit: a movement or balance that breaks the ledger's rules",
    ["service", "check"],
)
ESCALATION_TARGETS = ("backup", "duty_officer", "nobody")


def observe_timer_lateness(service: str, late_s: float) -> None:
    TIMER_LATENESS.labels(service).observe(late_s)


def count_sla_breach(service: str, *, deadline: str) -> None:
    """Count a missed deadline (``acknowledge``, ``serve``: a few names, never an id)."""
    SLA_BREACHES.labels(service, deadline).inc()


def count_escalation(service: str, *, escalated_to: str) -> None:
    """Count an escalation to the backup, the duty officer, or to nobody reachable."""
    if escalated_to not in ESCALATION_TARGETS:
        raise ValueError(f"escalated_to must be one of {ESCALATION_TARGETS}, got {escalated_to!r}")
    ESCALATIONS.labels(service, escalated_to).inc()


def count_ledger_findings(service: str, *, check: str, findings: int = 1) -> None:
    """Count what one check of the ledger audit found wrong."""
    LEDGER_AUDIT_FINDINGS.labels(service, check).inc(findings)


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


class QueueCollector:
    """The service's broker queue, read at scrape time: messages waiting for a worker, and
    messages waiting for their time (retries backing off, delayed ones).

    ``redvest_queue_depth`` is what the worker autoscaler follows (see deploy/k8s). On Redis it
    is the length of the queue's list, ``<BROKER_NAMESPACE>:<queue>``, and of its delay queue,
    ``<BROKER_NAMESPACE>:<queue>.DQ``: dramatiq 2's key layout, which shared/broker.py relies on
    too. RabbitMQ reports its queues itself (its Prometheus plugin), so nothing is read here.
    """

    def __init__(self, *, service: str, broker: dramatiq.Broker) -> None:
        self.service = service
        self.queue = queue_of(service)
        self.broker = broker

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if not isinstance(self.broker, RedisBroker):
            return
        key = f"{self.broker.namespace}:{self.queue}"
        try:
            with self.broker.client.pipeline(transaction=False) as pipeline:
                pipeline.llen(key)
                pipeline.llen(f"{key}.DQ")
                ready, delayed = pipeline.execute()
        except redis.RedisError as error:
            # The rest of the scrape still counts; the web's /readyz tells of the broker.
            log.warning("metrics.queue_unavailable", queue=self.queue, error=repr(error))
            return
        for name, documentation, value in (
            ("redvest_queue_depth", "Messages in the queue waiting for a worker", ready),
            ("redvest_queue_delayed", "Messages waiting for their time: retries, delays", delayed),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["service", "queue"])
            gauge.add_metric([self.service, self.queue], value)
            yield gauge


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
