"""flask-smorest, documenting and answering every error as problem+json, and conditional
requests: ETags and 304 on reads, If-Match and 412 on changes (see ``shared.conditional``).

Two behaviours here have no public hook in flask-smorest, so ``pyproject.toml`` pins the
versions they were written against and ``shared/tests/test_openapi.py`` fails if they change:
the registered default responses (``Api._register_responses``) and the bound on the page
number (the schema ``Blueprint.paginate`` builds, read from ``_apidoc``).
"""

from __future__ import annotations

import http
from collections.abc import Callable
from functools import wraps
from typing import Any

import flask_smorest
import structlog
from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, current_app, request
from flask_smorest import Api, abort
from flask_smorest.utils import prepare_response
from marshmallow import fields, validate
from werkzeug.exceptions import HTTPException

from shared.fields import WholeNumber
from shared.paging import MAX_PAGE
from shared.problems import PROBLEM_MIME, ProblemSchema, field_errors, problem

log = structlog.get_logger(__name__)

IF_NONE_MATCH_DOC = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "The ETag of the copy you hold: 304 and no body if it is still current",
    "schema": {"type": "string"},
}
IF_MATCH_DOC = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The ETag of the copy the change was decided on: 412 and nothing changed if "
    "it is no longer current. Without it the change is made to whatever is current",
    "schema": {"type": "string"},
}
ETAG_HEADER = {
    "ETag": {
        "description": "A strong tag of this version: send it as If-None-Match to read again, as "
        "If-Match to change it",
        "schema": {"type": "string"},
    }
}
CHANGED_HEADERS = {
    **ETAG_HEADER,
    "Content-Location": {
        "description": "The resource the body shows, as it is after the change",
        "schema": {"type": "string"},
    },
}


class PreconditionProblemSchema(ProblemSchema):
    """A change refused because its If-Match no longer holds."""

    current_etag = fields.Str(
        metadata={"description": "The ETag now current: read it again, then decide"}
    )


def _not_modified_or(response: Response) -> Response:
    """A 200 tagged (by the view, else by a hash of its body), or 304 if the caller holds it."""
    if response.status_code != 200:
        return response
    if "ETag" not in response.headers:
        response.add_etag()
    etag, _ = response.get_etag()
    if etag is not None and request.if_none_match.contains_weak(etag):
        not_modified = Response(status=304)
        not_modified.headers["ETag"] = response.headers["ETag"]
        return not_modified
    return response


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

    def conditional(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """A read answered with a strong ETag (the one the view set, else a hash of the body)
        and with 304 and no body when If-None-Match names it; put it above ``response``, whose
        200 documents ``ETAG_HEADER``."""

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            return _not_modified_or(current_app.ensure_sync(view)(*args, **kwargs))

        documented = self.doc(parameters=[IF_NONE_MATCH_DOC])(wrapper)
        return self.alt_response(304, description="Not modified: the copy you hold is current")(
            documented
        )

    def if_match(self, view: Callable[..., Any]) -> Callable[..., Any]:
        """Document a change that honours If-Match: 412 when it no longer holds; the view
        passes ``shared.conditional.versions_named`` of the header to the domain, and its 200
        documents ``CHANGED_HEADERS``."""
        documented = self.doc(parameters=[IF_MATCH_DOC])(view)
        return self.alt_response(
            412,
            description="Changed since the copy named by If-Match was read: nothing changed",
            schema=PreconditionProblemSchema,
            content_type=PROBLEM_MIME,
        )(documented)

    def paginate(self, pager: Any = None, **kwargs: Any) -> Callable[..., Any]:
        """flask-smorest's pagination, with a last page whose offset any database can take."""
        paginated = super().paginate(pager, **kwargs)

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            wrapper = paginated(view)
            # flask-smorest builds the parameters' schema afresh for each view; bound the page
            # here, and read both numbers as ASCII digits only (int() reads " 5" and others).
            declared = wrapper._apidoc["pagination"]["parameters"]["schema"]._declared_fields
            declared["page"].validators.append(validate.Range(max=MAX_PAGE))
            for name in ("page", "page_size"):
                given = declared[name]
                declared[name] = WholeNumber(
                    text=True, load_default=given.load_default, validate=given.validators
                )
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


class AuthenticatedOperations(BasePlugin):
    """Every API operation needs credentials: document the 401 once, for all of them; and
    where API keys are rate limited, the 429 a key over its limit gets."""

    def __init__(self, *, rate_limited: bool = False) -> None:
        super().__init__()
        self.rate_limited = rate_limited

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", http.HTTPStatus.UNAUTHORIZED.name)
            if self.rate_limited:
                responses.setdefault("429", http.HTTPStatus.TOO_MANY_REQUESTS.name)


def _schema_of(parameters: dict[str, Any]) -> Any:
    schema = parameters["schema"]
    return schema() if isinstance(schema, type) else schema


def _arguments(view: Any) -> list[dict[str, Any]]:
    docs = getattr(view, "_apidoc", None) or {}
    return list(docs.get("arguments", {}).get("parameters", []))


def _query_parameters(view: Any) -> dict[str, bool] | None:
    """The query parameters ``view`` reads (its query arguments and pagination), each with
    whether it may be given more than once; None when the view declares no query."""
    schemas = [
        _schema_of(parameters)
        for parameters in _arguments(view)
        if parameters.get("in", parameters.get("location")) in ("query", "querystring")
    ]
    pagination = (getattr(view, "_apidoc", None) or {}).get("pagination")
    if pagination:
        schemas.append(_schema_of(pagination["parameters"]))
    if not schemas:
        return None
    return {
        field.data_key or name: isinstance(field, fields.List | fields.Tuple)
        for schema in schemas
        for name, field in schema.fields.items()
        if not field.dump_only
    }


def _reads_json_body(view: Any) -> bool:
    return any(
        parameters.get("in", parameters.get("location")) == "json"
        for parameters in _arguments(view)
    )


def _view_for_request(app: Flask) -> Any:
    view = app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    method = request.method.lower()
    handler = getattr(view_class, method, None)
    if handler is None and method == "head":
        handler = getattr(view_class, "get", None)
    return handler


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def refuse_unread_input(app: Flask) -> None:
    """Refuse input the operation would not read, rather than answer as if it were not sent:
    a query parameter it does not declare, or a single-valued one given twice (422, naming
    each; operations that declare no query are not checked), and a body of another media type
    sent to an operation that reads JSON (415). What each operation declares is read once."""
    declared: dict[tuple[str, str], tuple[dict[str, bool] | None, bool]] = {}

    def check() -> None:
        if request.endpoint is None:
            return
        key = (request.endpoint, request.method)
        if key not in declared:
            view = _view_for_request(app)
            declared[key] = (_query_parameters(view), _reads_json_body(view))
        accepted, reads_json = declared[key]
        if reads_json and not request.is_json and _has_body():
            abort(
                415,
                message=f"The body must be application/json, not {request.mimetype or 'untyped'}.",
            )
        if accepted is None or not request.args:
            return
        errors: dict[str, list[str]] = {}
        for name, values in request.args.lists():
            if name not in accepted:
                known = ", ".join(sorted(accepted)) or "none"
                errors[name] = [f"Unknown query parameter; this operation reads {known}."]
            elif len(values) > 1 and not accepted[name]:
                errors[name] = ["Given more than once: give it once."]
        if errors:
            abort(422, messages={"query": errors})

    app.before_request(check)


class ProblemApi(Api):
    """flask-smorest's Api, answering (and documenting) every HTTP error as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, app: Any = None, *, rate_limited: bool = False, **kwargs: Any) -> None:
        self.marshmallow = MarshmallowPlugin()
        spec_kwargs = {
            "marshmallow_plugin": self.marshmallow,
            "extra_plugins": [AuthenticatedOperations(rate_limited=rate_limited)],
            **kwargs.pop("spec_kwargs", {}),
        }
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)

    def init_app(self, app: Any, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        super().init_app(app, spec_kwargs=spec_kwargs)
        # The converter exists once the plugin has been given the spec.
        converter = self.marshmallow.converter
        if converter is None:
            raise RuntimeError("the marshmallow plugin was not initialised with the spec")
        converter.add_attribute_function(_decimal_properties)

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
            by_field = field_errors(errors)
            detail = (
                "Invalid fields: " + ", ".join(sorted(map(str, by_field))) if by_field else None
            )
            return problem(
                status,
                "Validation failed",
                detail=detail,
                code="validation-error",
                errors=by_field,
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
