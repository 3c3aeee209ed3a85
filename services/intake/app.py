"""intake's web process: ``gunicorn 'services.intake.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.intake import directory
from services.intake.api import blp
from services.intake.config import runtime
from shared.auth import CachedKeyLookup, Principal
from shared.web import create_service_app


def _lookup_api_key(key: str) -> Principal | None:
    with runtime().db.read() as session:
        return directory.authenticate_api_key(session, key)


def create_app() -> Flask:
    return create_service_app(
        runtime(),
        title="Redvest intake",
        description="The one door: residents and other systems post requests here; staff "
        "consoles follow them. Requests are dispatched, done and confirmed through the other "
        "services, and their status is followed here.",
        blueprints=[blp],
        api_key_lookup=CachedKeyLookup(_lookup_api_key),
    )
