"""The Flask app every service's web process runs: its blueprints, plus what all share.

Correlation ids, authentication, request logs and metrics, problem+json errors, ``/healthz``,
``/readyz``, ``/metrics`` and the interactive docs at ``/docs``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dramatiq
import flask_smorest
import structlog
from flask import Flask, Response, current_app, g, request, send_from_directory
from flask_cors import CORS
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from swagger_ui_bundle import swagger_ui_path
from werkzeug.routing import UnicodeConverter

from shared import metrics
from shared.authentication import (
    ApiKeyLookup,
    AuthProblem,
    RateLimited,
    add_rate_limit_headers,
    authenticate,
)
from shared.context import work_context
from shared.database import Database
from shared.errors import DomainError
from shared.health import broker_pinger, readiness
from shared.json_input import install as install_strict_input
from shared.logs import configure_logging
from shared.messaging import Messaging
from shared.openapi import ProblemApi, refuse_unread_input
from shared.problems import problem
from shared.runtime import ServiceRuntime
from shared.settings import Settings

log = structlog.get_logger(__name__)

EXTENSION = "redvest"
# Probes and scrapes are not traffic: they are neither logged nor counted.
_QUIET_ENDPOINTS = frozenset({"/metrics", "/healthz", "/readyz"})
# What a browser console of a configured origin (CORS_ORIGINS) may send and read.
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_REQUEST_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "X-Correlation-ID",
)
CORS_EXPOSED_HEADERS = (
    "ETag",
    "Location",
    "Content-Location",
    "X-Pagination",
    "X-Correlation-ID",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)
# How long a browser may reuse a preflight's answer, in seconds.
CORS_MAX_AGE_S = 600


@dataclass(frozen=True)
class WebService:
    """What a service's views and the shared hooks need: its name, settings and stores."""

    name: str
    settings: Settings
    db: Database
    messaging: Messaging
    broker: dramatiq.Broker
    api_key_lookup: ApiKeyLookup | None = None

    @classmethod
    def of(
        cls, runtime: ServiceRuntime, *, api_key_lookup: ApiKeyLookup | None = None
    ) -> WebService:
        """The parts of a process's runtime its web app uses; its commits publish at once."""
        runtime.publish_at_commit()
        return cls(
            name=runtime.name,
            settings=runtime.settings,
            db=runtime.db,
            messaging=runtime.messaging,
            broker=runtime.broker,
            api_key_lookup=api_key_lookup,
        )


def current_service() -> WebService:
    """The service the current request is being answered by."""
    service: WebService = current_app.extensions[EXTENSION]
    return service


class _PathSegment(UnicodeConverter):
    """A path segment without NUL: none names a record, and PostgreSQL cannot look one up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]", 1)


def _begin() -> Response | None:
    service = current_service()
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Correlation-ID", "")
    g.work = work_context(
        correlation=incoming[:64] or None, method=request.method, path=request.path
    )
    g.correlation_id = g.work.__enter__()
    try:
        authenticate(
            secret=service.settings.auth_secret,
            service=service.name,
            api_key_lookup=service.api_key_lookup,
        )
    except AuthProblem as error:
        return problem(
            error.status,
            error.title,
            detail=error.detail,
            code=error.code,
            headers={"WWW-Authenticate": "Bearer"} if error.status == 401 else None,
        )
    except RateLimited as error:
        return problem(429, "Too many requests", detail=error.description, code="rate-limited")
    return None


def _finish(response: Response) -> Response:
    if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
        # Flask's answer to OPTIONS (and so to a CORS preflight): the methods in Allow, no body,
        # which it labels text/html.
        response.status_code = 204
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
    response.headers["X-Correlation-ID"] = getattr(g, "correlation_id", "")
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    if endpoint not in _QUIET_ENDPOINTS:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(
            current_service().name, request.method, endpoint, response.status_code, elapsed
        )
        log.info("http.request", status=response.status_code, duration_ms=round(elapsed * 1000, 2))
    return response


def _teardown(_: BaseException | None) -> None:
    work = g.pop("work", None)
    if work is not None:
        work.__exit__(None, None, None)


def _domain_error(error: DomainError) -> Response:
    return problem(error.status, error.title, detail=error.detail, code=error.code, **error.extra)


def _auth_problem(error: AuthProblem) -> Response:
    return problem(error.status, error.title, detail=error.detail, code=error.code)


def healthz() -> dict[str, str]:
    return {"status": "ok", "service": current_service().name}


def readyz() -> tuple[dict[str, Any], int]:
    service = current_service()
    return readiness(
        {"database": service.db.ping, "broker": broker_pinger(service.broker)},
        required=("database",),
    )


def metrics_view() -> Response:
    service = current_service()
    body = metrics.exposition(
        multiprocess_dir=service.settings.prometheus_multiproc_dir,
        database=current_app.extensions[f"{EXTENSION}.metrics"],
    )
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def docs_assets(filename: str) -> Response:
    return send_from_directory(swagger_ui_path, filename)


def _allow_browsers(app: Flask, origins: tuple[str, ...]) -> None:
    """Let web pages of ``origins`` call the API; pages of any other origin get no CORS
    headers, so their browsers refuse them the answers."""
    if not origins:
        return
    CORS(
        app,
        origins=list(origins),
        methods=list(CORS_METHODS),
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_EXPOSED_HEADERS),
        max_age=CORS_MAX_AGE_S,
        # Consoles send tokens in headers, never cookies.
        supports_credentials=False,
    )


def _configure(app: Flask, *, title: str, description: str, version: str, has_keys: bool) -> None:
    security_schemes: dict[str, Any] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    if has_keys:
        security_schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    app.config.update(
        API_TITLE=title,
        API_VERSION=version,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {"securitySchemes": security_schemes},
            "security": [{name: []} for name in security_schemes],
        },
        JSON_SORT_KEYS=False,
    )


def create_service_app(
    service: WebService,
    *,
    title: str,
    description: str,
    blueprints: Iterable[flask_smorest.Blueprint],
    version: str = "1.0.0",
) -> Flask:
    """A Flask app with the plumbing every service shares; the service adds its blueprints."""
    configure_logging(service.settings)
    app = Flask(service.name)
    install_strict_input(app)
    app.url_map.converters["default"] = app.url_map.converters["string"] = _PathSegment
    _configure(
        app,
        title=title,
        description=description,
        version=version,
        has_keys=service.api_key_lookup is not None,
    )
    app.extensions[EXTENSION] = service
    database_metrics = CollectorRegistry()
    database_metrics.register(
        metrics.MessagingCollector(service=service.name, db=service.db, messaging=service.messaging)
    )
    database_metrics.register(metrics.QueueCollector(service=service.name, broker=service.broker))
    app.extensions[f"{EXTENSION}.metrics"] = database_metrics
    # API keys are rate limited: every operation can answer a key over its limit with 429.
    api = ProblemApi(app, rate_limited=service.api_key_lookup is not None)
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.before_request(_begin)
    refuse_unread_input(app)
    app.after_request(_finish)
    if service.api_key_lookup is not None:
        app.after_request(add_rate_limit_headers)
    app.teardown_request(_teardown)
    _allow_browsers(app, service.settings.cors_origins)
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(AuthProblem, _auth_problem)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/readyz", view_func=readyz)
    app.add_url_rule("/metrics", view_func=metrics_view)
    app.add_url_rule("/docs/assets/<path:filename>", view_func=docs_assets)
    return app
