"""Everything one service process holds: its settings, database, tables and broker."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import dramatiq
from sqlalchemy import MetaData

from shared.database import Database
from shared.logs import configure_logging
from shared.messaging import Messaging
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
        configure_logging(settings)

    @property
    def name(self) -> str:
        return self.settings.service

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def broker(self) -> dramatiq.Broker:
        from shared.broker import create_broker
        from shared.dead_letters import DeadLetterRecorder

        broker = create_broker(self.settings, extra_middleware=(DeadLetterRecorder(self),))
        dramatiq.set_broker(broker)
        return broker


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
        return ServiceRuntime(
            settings=settings,
            metadata=self.metadata,
            messaging=self.messaging,
            migrations=self.migrations,
        )

    def runtime(self) -> ServiceRuntime:
        """The process-wide runtime, from the environment, built on first use."""
        if self._runtime is None:
            self._runtime = self.build(self.load_settings())
        return self._runtime
