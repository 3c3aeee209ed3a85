"""notify's web process: ``gunicorn 'services.notify.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.notify.api import blp
from services.notify.config import build_runtime, runtime
from shared.service_app import WebService, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """notify's app, on ``settings`` (by default the process's, from the environment)."""
    service = build_runtime(settings) if settings is not None else runtime()
    """notify's Flask app: the inbox, templates and delivery log over HTTP."""
    return create_service_app(
        WebService.of(service),
        title="Redvest notify",
        description="Notifications: every service asks for them with notification.requested; "
        "they are rendered from templates staff can edit and delivered to the in-app inbox, "
        "where residents and volunteers read them. Every delivery is logged.",
        blueprints=[blp],
        # People read their inboxes with bearer tokens; no other system calls notify directly.
    )
