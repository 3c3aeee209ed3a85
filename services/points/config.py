"""points's settings and the runtime every points process builds once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.points.earning import EarningPolicy
from services.points.giving import GivingPolicy
from services.points.models import Base, messaging
from shared.runtime import RuntimeFactory

SERVICE = "points"
MIGRATIONS = Path(__file__).parent / "migrations"

_factory = RuntimeFactory(
    SERVICE, metadata=Base.metadata, messaging=messaging, migrations=MIGRATIONS
)
load_settings = _factory.load_settings
build_runtime = _factory.build
configure = _factory.configure
runtime = _factory.runtime


def earning_policy() -> EarningPolicy:
    """The community's earning policy, from the process's settings (``CONFIRM_WITHIN_DAYS``,
    ``UNCONFIRMED_EARNINGS``)."""
    settings = runtime().settings
    return EarningPolicy(
        confirm_within=timedelta(days=settings.confirm_within_days),
        when_unconfirmed=settings.unconfirmed_earnings,
    )


def giving_policy() -> GivingPolicy:
    """How much members may give their family: the defaults of ``GivingPolicy``."""
    return GivingPolicy()
