"""dispatch's web process: ``gunicorn 'services.dispatch.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from services.dispatch.api import blp, roster
from services.dispatch.config import build_runtime, runtime
from shared.service_app import WebService, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """dispatch's app, on ``settings`` (by default the process's, from the environment)."""
    service = build_runtime(settings) if settings is not None else runtime()
    # People only: volunteers and staff carry bearer tokens; other systems go through intake.
    return create_service_app(
        WebService.of(service),
        title="Redvest dispatch",
        description="Routes each submitted request to a volunteer by the rules staff keep here. "
        "Volunteers accept their assignments and report them done with the hours spent.",
        blueprints=[blp, roster],
    )
