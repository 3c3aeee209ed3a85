"""points' web process: ``gunicorn 'services.points.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.points.api import blp
from services.points.config import build_runtime, runtime
from shared.service_app import WebService, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """points's app, on ``settings`` (by default the process's, from the environment)."""
    service = build_runtime(settings) if settings is not None else runtime()
    # People, not systems, read the ledger: bearer tokens only, no API keys.
    return create_service_app(
        WebService.of(service),
        title="Redvest points",
        description="The moral bank: volunteers earn points for confirmed service hours. "
        "Every movement is a double-entry transfer that is never edited.",
        blueprints=[blp],
    )
