"""flask-smorest, documenting and answering every error as problem+json.

Two behaviours here have no public hook in flask-smorest, so ``pyproject.toml`` pins the
versions they were written against and ``shared/tests/test_openapi.py`` fails if they change:
the registered default responses (``Api._register_responses``) and the bound on the page
number (the schema ``Blueprint.paginate`` builds, read from ``_apidoc``).
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any

import flask_smorest
import structlog
from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Response
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from marshmallow import fields, validate
from werkzeug.exceptions import HTTPException

from shared.paging import MAX_PAGE
from shared.problems import PROBLEM_MIME, ProblemSchema, field_errors, problem

log = structlog.get_logger(__name__)


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


class AuthenticatedOperations(BasePlugin):
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

    def __init__(self, app: Any = None, **kwargs: Any) -> None:
        self.marshmallow = MarshmallowPlugin()
        spec_kwargs = {
            "marshmallow_plugin": self.marshmallow,
            "extra_plugins": [AuthenticatedOperations()],
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
