"""Everything one service process holds: its settings, database, tables and broker."""

from __future__ import annotations

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
