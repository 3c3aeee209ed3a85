"""What one service process is built from: its settings, database, tables and broker.

The runtime is where a process is put together; it hands each part only what that part needs
(a database, a table set, a broker), so no part depends on the runtime itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import dramatiq
from sqlalchemy import MetaData

from shared.broker import create_broker
from shared.commit_publisher import CommitPublisher
from shared.consumers import Consumers
from shared.database import Database
from shared.dead_letters import DeadLetterRecorder
from shared.logs import configure_logging
from shared.messaging import Messaging
from shared.relay import Relay
from shared.settings import Settings


class ServiceRuntime:
    """Built once per process; the database and broker connect on first use."""

    def __init__(
        self,
        *,
        settings: Settings,
        metadata: MetaData,
        messaging: Messaging,
        migrations: Path,
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.messaging = messaging
        self.migrations = migrations
        self._publisher: CommitPublisher | None = None

    @property
    def name(self) -> str:
        return self.settings.service

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def broker(self) -> dramatiq.Broker:
        recorder = DeadLetterRecorder(db=self.db, table=self.messaging.dead_letters)
        return create_broker(self.settings, extra_middleware=(recorder,))

    def relay(self) -> Relay:
        """The outbox relay of this service, with its settings."""
        return Relay(
            service=self.name,
            db=self.db,
            outbox=self.messaging.outbox,
            broker=self.broker,
            interval_s=self.settings.relay_interval_s,
            batch_size=self.settings.relay_batch_size,
            grace_s=self.settings.relay_grace_s,
        )

    def publish_at_commit(self) -> CommitPublisher | None:
        """From now on publish this process's events as they commit, unless the settings say
        not to (``PUBLISH_AT_COMMIT=off``); the relay stays the safety net either way."""
        mode = self.settings.publish_at_commit
        if self._publisher is None and mode != "off":
            self._publisher = CommitPublisher(
                db=self.db,
                outbox=self.messaging.outbox,
                broker=self.broker,
                synchronous=mode != "background",
            ).attach()
        return self._publisher


class RuntimeFactory:
    """What each service's ``config`` module exposes: its settings and its process runtime."""

    def __init__(
        self, service: str, *, metadata: MetaData, messaging: Messaging, migrations: Path
    ) -> None:
        self.service = service
        self.metadata = metadata
        self.messaging = messaging
        self.migrations = migrations
        self._runtime: ServiceRuntime | None = None

    def load_settings(self, env: Mapping[str, str] | None = None) -> Settings:
        return Settings.from_env(self.service, env)

    def build(self, settings: Settings) -> ServiceRuntime:
        if settings.service != self.service:
            raise ValueError(f"settings of {settings.service} given to {self.service}")
        return ServiceRuntime(
            settings=settings,
            metadata=self.metadata,
            messaging=self.messaging,
            migrations=self.migrations,
        )

    def configure(self, settings: Settings) -> ServiceRuntime:
        """Make the process runtime the one ``settings`` describe (tests, embedding)."""
        self._runtime = self.build(settings)
        return self._runtime

    def runtime(self) -> ServiceRuntime:
        """The process-wide runtime: as configured, or from the environment on first use (a
        process of the deployment, whose commits publish at once: web, worker, relay, CLI)."""
        if self._runtime is None:
            self._runtime = self.build(self.load_settings())
            self._runtime.publish_at_commit()
        return self._runtime


def _dramatiq_metrics() -> dramatiq.Middleware:
    """dramatiq's Prometheus middleware: messages, errors, retries and handling time per actor,
    served for all of a worker's processes from one process of its own (its port and shared
    directory are ``dramatiq_prom_port`` and ``dramatiq_prom_db``: the image's entrypoint sets
    them from ``WORKER_METRICS_PORT`` and ``PROMETHEUS_MULTIPROC_DIR``)."""
    # Imported only here: on import the module makes its directory, which only workers need.
    prometheus = importlib.import_module("dramatiq.middleware.prometheus")
    middleware: dramatiq.Middleware = prometheus.Prometheus()
    return middleware


def start_worker(runtime: ServiceRuntime, consumers: Consumers) -> dramatiq.Broker:
    """Make this process a worker of ``consumers``: logging, the global broker, the actors."""
    configure_logging(runtime.settings)
    broker = runtime.broker
    # The dramatiq CLI reads the global broker once the entry point returns.
    dramatiq.set_broker(broker)
    if runtime.settings.prometheus_multiproc_dir:
        broker.add_middleware(_dramatiq_metrics())
    consumers.declare(broker, db=runtime.db, messaging=runtime.messaging)
    runtime.publish_at_commit()
    return broker
