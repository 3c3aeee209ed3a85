"""intake's web process: ``gunicorn 'services.intake.app:create_app()'``."""

from __future__ import annotations

from functools import partial

import structlog
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from services.intake import clients, open311
from services.intake.api import blp
from services.intake.config import build_runtime, runtime
from services.intake.policy import SCOPES
from shared.admission import operation
from shared.auth import CachedKeyLookup, KeyHolder
from shared.authentication import ApiKeys, KeyRates
from shared.database import Database
from shared.service_app import WebService, create_service_app
from shared.settings import Settings

log = structlog.get_logger(__name__)


def _key_holder(db: Database, key: str) -> KeyHolder | None:
    with db.read() as session:
        return clients.key_holder(session, key)


def _note_use(db: Database, holder: KeyHolder) -> None:
    try:
        with db.transaction() as session:
            clients.note_key_used(session, key_hash=holder.key_hash)
    except SQLAlchemyError as error:
        # A key's last use is bookkeeping: the call it was noted for goes on.
        log.warning("api_key.last_use_not_noted", error=str(error))


def _scope_of_operation() -> str | None:
    return SCOPES.get(operation())


def api_keys(settings: Settings, db: Database) -> ApiKeys:
    """Each use of an intake API key, by header or by Open311's api_key: see ApiKeys."""
    rates = KeyRates(
        settings.broker_url,
        default=settings.api_key_rate_limit,
        prefix=f"{settings.broker_namespace}:rate-limits:{settings.service}",
    )
    return ApiKeys(
        CachedKeyLookup(partial(_key_holder, db)),
        rates=rates,
        scope_of=_scope_of_operation,
        note_use=partial(_note_use, db),
    )


def create_app(settings: Settings | None = None) -> Flask:
    """intake's app, on ``settings`` (by default the process's, from the environment)."""
    service = build_runtime(settings) if settings is not None else runtime()
    app = create_service_app(
        WebService.of(service, api_key_lookup=api_keys(service.settings, service.db)),
        title="Redvest intake",
        description="The one door: residents and other systems post requests here; staff "
        "consoles follow them. Requests are dispatched, done and confirmed through the other "
        "services, and their status is followed here.",
        blueprints=[blp],
    )
    # The Open311 facade keeps the specification's conventions, not the OpenAPI document's.
    app.register_blueprint(open311.blp)
    return app
