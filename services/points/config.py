"""points' settings and the runtime every points process builds once."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

from services.points.models import Base, messaging
from shared.runtime import ServiceRuntime
from shared.settings import Settings

SERVICE = "points"
MIGRATIONS = Path(__file__).parent / "migrations"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    return Settings.from_env(SERVICE, env)


def build_runtime(settings: Settings) -> ServiceRuntime:
    return ServiceRuntime(
        settings=settings, metadata=Base.metadata, messaging=messaging, migrations=MIGRATIONS
    )


@cache
def runtime() -> ServiceRuntime:
    """The process-wide runtime, from the environment."""
    return build_runtime(load_settings())
