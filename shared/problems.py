"""RFC 9457 problem details: the shape of every error every service answers."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g
from marshmallow import Schema, fields

PROBLEM_MIME = "application/problem+json"
PROBLEM_BASE = "https://redvest.dev/problems/"
# Where webargs puts field errors, by the part of the request they came from.
_LOCATIONS = ("json", "query", "headers", "path", "files", "form")


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


def field_errors(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({'json': {...}}); flatten the single-location case."""
    if isinstance(messages, dict) and len(messages) == 1:
        ((location, errors),) = messages.items()
        if location in _LOCATIONS:
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
    current_status = fields.Str(
        metadata={"description": "The status that refused the change (an illegal transition)"}
    )
    notice = fields.Dict(
        metadata={"description": "The category's notice that blocks a submission: act on it"}
    )
    errors = fields.Dict(
        keys=fields.Str(), metadata={"description": "Validation messages by field"}
    )
