"""notify's web process: ``gunicorn 'services.notify.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.notify.api import blp
from services.notify.config import runtime
from shared.web import create_service_app


def create_app() -> Flask:
    """notify's Flask app: the inbox, templates and delivery log over HTTP."""
    return create_service_app(
        runtime(),
        title="Redvest notify",
        description="Notifications: every service asks for them with notification.requested; "
        "they are rendered from templates staff can edit and delivered to the in-app inbox, "
        "where residents and volunteers read them. Every delivery is logged.",
        blueprints=[blp],
        # People read their inboxes with bearer tokens; no other system calls notify directly.
        api_key_lookup=None,
    )
