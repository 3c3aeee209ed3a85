"""The Flask side every service shares: app factory plumbing, problem+json errors, auth,
correlation ids, request logs, health, readiness, metrics and interactive API docs."""

from __future__ import annotations

import http
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import flask_smorest
import structlog
from apispec import BasePlugin
from flask import Flask, Response, g, request, send_from_directory
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from marshmallow import Schema, fields, validate
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException
from werkzeug.routing import UnicodeConverter

from shared.auth import AuthenticationError, Principal, verify_token
from shared.broker import broker_pinger
from shared.context import work_context
from shared.dead_letters import outstanding
from shared.errors import DomainError
from shared.runtime import ServiceRuntime
from shared.settings import Settings

log = structlog.get_logger(__name__)

PROBLEM_MIME = "application/problem+json"
PROBLEM_BASE = "https://redvest.dev/problems/"
# Deep enough for any list; page x page size must stay a 64-bit offset in SQLite and PostgreSQL.
MAX_PAGE = 100_000

HTTP_REQUESTS = Counter(
    "redvest_http_requests_total",
    "HTTP requests answered",
    ["service", "method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "redvest_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "method", "endpoint"],
)

ApiKeyLookup = Callable[[str], Principal | None]


def problem(
    status: int,
    title: str,
    *,
    detail: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (code or str(status)),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if getattr(g, "correlation_id", None):
        body["correlation_id"] = g.correlation_id
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body, default=str), status=status, mimetype=PROBLEM_MIME)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_errors(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({'json': {...}}); flatten the single-location case."""
    if isinstance(messages, dict) and len(messages) == 1:
        ((location, errors),) = messages.items()
        if location in ("json", "query", "headers", "path", "files", "form"):
            return errors if isinstance(errors, dict) else {"_schema": errors}
    return messages if isinstance(messages, dict) else {"_schema": messages}


class ProblemSchema(Schema):
    """An RFC 9457 problem: every error of every service has this shape."""

    type = fields.Str(metadata={"description": "A stable URI naming the kind of problem"})
    title = fields.Str()
    status = fields.Int()
    detail = fields.Str(metadata={"description": "What went wrong, for a person to read"})
    correlation_id = fields.Str(metadata={"description": "Quote it when asking for help"})
    field = fields.Str(metadata={"description": "The input field at fault, when there is one"})
    errors = fields.Dict(
        keys=fields.Str(), metadata={"description": "Validation messages by field"}
    )


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, documenting error responses as problem+json by default."""

    def alt_response(
        self,
        status_code: int,
        response: str | None = None,
        *,
        schema: Any = None,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> Callable[..., Any]:
        if response is None and schema is None and int(status_code) >= 400:
            schema, content_type = ProblemSchema, PROBLEM_MIME
        return super().alt_response(
            status_code, response, schema=schema, content_type=content_type, **kwargs
        )

    def paginate(self, pager: Any = None, **kwargs: Any) -> Callable[..., Any]:
        """flask-smorest's pagination, with a last page whose offset any database can take."""
        paginated = super().paginate(pager, **kwargs)

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            wrapper = paginated(view)
            # flask-smorest builds the parameters' schema afresh for each view; bound it here.
            schema = wrapper._apidoc["pagination"]["parameters"]["schema"]
            schema._declared_fields["page"].validators.append(validate.Range(max=MAX_PAGE))
            return wrapper

        return decorator


def _decimal_properties(self: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict:
    """apispec documents every Decimal as a number with its bounds as strings: fix both."""
    if not isinstance(field, fields.Decimal):
        return {}
    if field.as_string:
        return {"type": "string", "format": "decimal"}
    bounds: dict[str, Any] = {key: float(ret[key]) for key in ("minimum", "maximum") if key in ret}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            # OpenAPI 3.0 spells an exclusive bound as a flag beside it.
            if validator.min is not None and not validator.min_inclusive:
                bounds["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                bounds["exclusiveMaximum"] = True
    return bounds


class _AuthenticatedOperations(BasePlugin):
    """Every API operation needs credentials: document the 401 once, for all of them."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        for operation in (operations or {}).values():
            operation.setdefault("responses", {}).setdefault(
                "401", http.HTTPStatus.UNAUTHORIZED.name
            )


class ProblemApi(Api):
    """flask-smorest's Api, answering (and documenting) every HTTP error as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, **kwargs: Any) -> None:
        super()._init_spec(**kwargs)
        self.ma_plugin.converter.add_attribute_function(_decimal_properties)
        self.spec.plugins.append(_AuthenticatedOperations())

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = ProblemSchema
            prepare_response(response, self.spec, PROBLEM_MIME)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "An error, as problem+json", "schema": ProblemSchema}
        prepare_response(response, self.spec, PROBLEM_MIME)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        data = getattr(error, "data", None) or {}
        status = error.code or 500
        errors = data.get("errors") or data.get("messages")
        headers = dict(data.get("headers") or {})
        if errors is not None:
            fields = _field_errors(errors)
            detail = "Invalid fields: " + ", ".join(sorted(map(str, fields))) if fields else None
            return problem(
                status,
                "Validation failed",
                detail=detail,
                code="validation-error",
                errors=fields,
                headers=headers,
            )
        if status >= 500:
            log.error("http.unhandled_error", status=status)
        return problem(
            status,
            error.name,
            detail=data.get("message") or error.description,
            code=error.name.lower().replace(" ", "-"),
            headers=headers,
        )


class _PathSegment(UnicodeConverter):
    """A path segment without NUL: none names a record, and PostgreSQL cannot look one up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.regex = self.regex.replace("[^/]", "[^/\\x00]", 1)


def current_principal() -> Principal | None:
    return getattr(g, "principal", None)


def require(*roles: str) -> Principal:
    """The authenticated caller, who must hold one of ``roles``; else 401 or 403."""
    principal = current_principal()
    if principal is None:
        raise _AuthProblem(
            401, "Authentication required", "Send an API key (X-API-Key) or a bearer token."
        )
    if roles and principal.role not in roles:
        raise _AuthProblem(
            403,
            "Forbidden",
            f"Role {principal.role!r} may not do this; needs one of {list(roles)}.",
        )
    return principal


class _AuthProblem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _authenticate(runtime: ServiceRuntime, api_key_lookup: ApiKeyLookup | None) -> None:
    g.principal = None
    key = request.headers.get("X-API-Key")
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "apikey" and credentials:
        key = credentials.strip()
    if key:
        principal = api_key_lookup(key) if api_key_lookup else None
        if principal is None:
            raise _AuthProblem(401, "Authentication failed", "Unknown or revoked API key.")
        g.principal = principal
    elif scheme.lower() == "bearer" and credentials:
        try:
            g.principal = verify_token(
                runtime.settings.auth_secret, credentials.strip(), service=runtime.name
            )
        except AuthenticationError as error:
            raise _AuthProblem(401, "Authentication failed", str(error)) from error


class _DatabaseCollector:
    """Metrics read from the service's own database at scrape time, so every process agrees."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Nothing to describe up front: the app must not touch the database when it is built.
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        messaging = self.runtime.messaging
        outbox, dead = messaging.outbox, messaging.dead_letters
        labels = ["service"]
        service = [self.runtime.name]
        with self.runtime.db.read() as session:
            pending, oldest = session.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(
                    outbox.c.published_at.is_(None)
                )
            ).one()
            dead_count = session.execute(
                select(func.count()).select_from(dead).where(outstanding(dead))
            ).scalar_one()
        age = time.time() - oldest.timestamp() if oldest is not None else 0.0
        gauge = GaugeMetricFamily(
            "redvest_outbox_pending", "Events not yet published", labels=labels
        )
        gauge.add_metric(service, pending)
        yield gauge
        gauge = GaugeMetricFamily(
            "redvest_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished event",
            labels=labels,
        )
        gauge.add_metric(service, age)
        yield gauge
        gauge = GaugeMetricFamily(
            "redvest_dead_letters", "Dead letters not replayed", labels=labels
        )
        gauge.add_metric(service, dead_count)
        yield gauge


def _process_metrics(settings: Settings) -> bytes:
    if settings.prometheus_multiproc_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    blueprints: Iterable[flask_smorest.Blueprint],
    api_key_lookup: ApiKeyLookup | None = None,
    version: str = "1.0.0",
) -> Flask:
    """A Flask app with the plumbing every service shares; the service adds its blueprints."""
    from swagger_ui_bundle import swagger_ui_path

    app = Flask(runtime.name)
    app.url_map.converters["default"] = app.url_map.converters["string"] = _PathSegment
    security_schemes: dict[str, Any] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    if api_key_lookup is not None:
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
    app.extensions["redvest_runtime"] = runtime
    api = ProblemApi(app)
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    db_registry = CollectorRegistry()
    db_registry.register(_DatabaseCollector(runtime))
    ping_broker = broker_pinger(runtime.broker)

    @app.before_request
    def _begin() -> Response | None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Correlation-ID", "")
        g.work = work_context(
            correlation=incoming[:64] or None, method=request.method, path=request.path
        )
        g.correlation_id = g.work.__enter__()
        try:
            _authenticate(runtime, api_key_lookup)
        except _AuthProblem as error:
            return problem(
                error.status,
                error.title,
                detail=error.detail,
                code="unauthenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Correlation-ID"] = getattr(g, "correlation_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        if endpoint not in ("/metrics", "/healthz", "/readyz"):
            elapsed = time.perf_counter() - g.get("started", time.perf_counter())
            HTTP_REQUESTS.labels(runtime.name, request.method, endpoint, response.status_code).inc()
            HTTP_LATENCY.labels(runtime.name, request.method, endpoint).observe(elapsed)
            log.info(
                "http.request", status=response.status_code, duration_ms=round(elapsed * 1000, 2)
            )
        return response

    @app.teardown_request
    def _teardown(_: BaseException | None) -> None:
        work = g.pop("work", None)
        if work is not None:
            work.__exit__(None, None, None)

    @app.errorhandler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        return problem(
            error.status, error.title, detail=error.detail, code=error.code, **error.extra
        )

    @app.errorhandler(_AuthProblem)
    def _auth_problem(error: _AuthProblem) -> Response:
        code = "unauthenticated" if error.status == 401 else "forbidden"
        return problem(error.status, error.title, detail=error.detail, code=code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        checks: dict[str, str] = {}
        for name, check in (("database", runtime.db.ping), ("broker", ping_broker)):
            try:
                check()
                checks[name] = "ok"
            except Exception as error:
                checks[name] = f"unavailable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return {"status": "ready" if ready else "not ready", "checks": checks}, (
            200 if ready else 503
        )

    @app.get("/metrics")
    def metrics() -> Response:
        body = _process_metrics(runtime.settings) + generate_latest(db_registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)

    @app.get("/docs/assets/<path:filename>")
    def docs_assets(filename: str) -> Response:
        return send_from_directory(swagger_ui_path, filename)

    return app


def stored_response(stored: Any) -> Response:
    """Turn an idempotency ``StoredResponse`` into the HTTP answer (marking replays)."""
    response = Response(
        json.dumps(stored.body, default=str), status=stored.status_code, mimetype="application/json"
    )
    for name, value in stored.headers.items():
        response.headers[name] = value
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


IDEMPOTENCY_HEADER_DOC = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "Retries with the same key and body return the first answer; "
    "the same key with a different body is refused with 422.",
}


def paged(
    db: Any, pagination: Any, lister: Callable[..., tuple[list[Any], int]], **filters: Any
) -> list[Any]:
    """One page from ``lister(session, offset=, limit=, **filters)``, total set for the header."""
    with db.read() as session:
        page, total = lister(
            session, offset=pagination.first_item, limit=pagination.page_size, **filters
        )
    pagination.item_count = total
    return page


def created_once(
    runtime: ServiceRuntime,
    principal: Principal,
    create: Callable[[Any], Any],
    *,
    schema: Schema,
    location: Callable[[Any], str],
) -> Response:
    """Answer 201 with what ``create(session)`` made, once per ``Idempotency-Key`` and client."""
    from shared.idempotency import StoredResponse, run_once

    def action(session: Any) -> StoredResponse:
        created = create(session)
        return StoredResponse(201, schema.dump(created), {"Location": location(created)})

    return stored_response(
        run_once(
            runtime.db,
            runtime.messaging,
            client=f"{principal.role}:{principal.subject}",
            key=request.headers.get("Idempotency-Key"),
            payload=request.get_json(silent=True),
            action=action,
        )
    )
