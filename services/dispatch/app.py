"""dispatch's web process: ``gunicorn 'services.dispatch.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.dispatch.api import blp, roster
from services.dispatch.config import runtime
from shared.web import create_service_app


def create_app() -> Flask:
    # People only: volunteers and staff carry bearer tokens; other systems go through intake.
    return create_service_app(
        runtime(),
        title="Redvest dispatch",
        description="Routes each submitted request to a volunteer by the rules staff keep here. "
        "Volunteers accept their assignments and report them done with the hours spent.",
        blueprints=[blp, roster],
        api_key_lookup=None,
    )
