"""points' web process: ``gunicorn 'services.points.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.points.api import blp
from services.points.config import runtime
from shared.web import create_service_app


def create_app() -> Flask:
    # People, not systems, read the ledger: bearer tokens only, no API keys.
    return create_service_app(
        runtime(),
        title="Redvest points",
        description="The moral bank: volunteers earn points for confirmed service hours. "
        "Every movement is a double-entry transfer that is never edited.",
        blueprints=[blp],
        api_key_lookup=None,
    )
