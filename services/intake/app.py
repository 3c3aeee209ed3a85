"""intake's web process: ``gunicorn 'services.intake.app:create_app()'``."""

from __future__ import annotations

from functools import partial

from flask import Flask

from services.intake import directory, open311
from services.intake.api import blp
from services.intake.config import build_runtime, runtime
from shared.auth import CachedKeyLookup, Principal
from shared.database import Database
from shared.service_app import WebService, create_service_app
from shared.settings import Settings


def _lookup_api_key(db: Database, key: str) -> Principal | None:
    with db.read() as session:
        return directory.authenticate_api_key(session, key)


def create_app(settings: Settings | None = None) -> Flask:
    """intake's app, on ``settings`` (by default the process's, from the environment)."""
    service = build_runtime(settings) if settings is not None else runtime()
    app = create_service_app(
        WebService.of(
            service, api_key_lookup=CachedKeyLookup(partial(_lookup_api_key, service.db))
        ),
        title="Redvest intake",
        description="The one door: residents and other systems post requests here; staff "
        "consoles follow them. Requests are dispatched, done and confirmed through the other "
        "services, and their status is followed here.",
        blueprints=[blp],
    )
    # The Open311 facade keeps the specification's conventions, not the OpenAPI document's.
    app.register_blueprint(open311.blp)
    return app
