"""intake's Open311 GeoReport v2 face, at ``/open311/v2``: discovery, the services and their
definitions, requests posted and read, and tokens, each as ``.json`` or ``.xml``.

It follows the specification (wiki.open311.org/GeoReport_v2 and its Service Discovery page)
rather than the house conventions of ``/v1``, so it stays out of the OpenAPI document on purpose:
its POST is form-encoded, its format is the path's suffix, errors are the specification's array
of ``{code, description}`` (403 for a missing or wrong api_key, 404 for what does not exist,
any path under it included, 405 for a method a path does not take, 400 for the rest), and reads
need no key. The specification is its contract.

- Callers: the ``api_key`` of another system or a staff console (the keys of ``/v1``), sent as a
  form field or a query parameter (or as ``/v1``'s ``X-API-Key`` header). Posting needs one;
  discovery, the services and the reads of requests do not, as the specification says. Who may
  do what is ``OPEN311`` in ``policy.py``.
- Private categories are never listed, taken or shown (``georeport.py``).
- Every service is ``realtime``: a POST answers with the request's id at once, so no token is
  ever issued.
- A POST may carry an ``Idempotency-Key`` header, as on ``/v1``: the same key and form return
  the first answer (``Idempotent-Replayed: true``), a different form a 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

from flask import Blueprint, Response, g, request, url_for
from flask.views import MethodView
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from services.intake import georeport
from services.intake.policy import OPEN311, PUBLIC
from shared.admission import caller, enforce, operation
from shared.auth import Principal
from shared.authentication import AuthProblem, current_principal
from shared.errors import DomainError, Forbidden, NotFound
from shared.events import CATEGORY_CODE
from shared.fields import FullMatch, Instant
from shared.idempotency import StoredResponse, run_once
from shared.schemas import StrictSchema
from shared.service_app import current_service

blp = Blueprint("open311", __name__, url_prefix="/open311/v2")

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MIME = {"xml": "text/xml", "json": "application/json"}
CONTACT = "The community office that runs this service answers questions about it."
KEY_SERVICE = (
    "Ask the community office for an API key: posting a request needs one, reading does not."
)
# Whoever calls without an api_key.
WITHOUT_KEY = Principal(subject="open311", role=PUBLIC)
# The XML element of each item of a list, by the list's own element (the Spark convention
# maps one onto the other).
_ITEM = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}
# Characters XML 1.0 cannot carry.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]*)\](\[\])?$")


def _route(rule: str) -> Callable[[type[MethodView]], type[MethodView]]:
    def register(view: type[MethodView]) -> type[MethodView]:
        blp.add_url_rule(rule, view_func=view.as_view(view.__name__))
        return view

    return register


# --- input -----------------------------------------------------------------------------------


class CommaList(fields.Field):
    """Values given comma delimited, or the parameter given several times."""

    def __init__(self, *, most: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.most = most

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[str, ...]:
        parts = value if isinstance(value, list) else [value]
        if not all(isinstance(part, str) for part in parts):
            raise ValidationError("Must be text, comma delimited.")
        items = tuple(item.strip() for part in parts for item in part.split(",") if item.strip())
        if any(len(item) > self.most for item in items):
            raise ValidationError(f"Each value is at most {self.most} characters.")
        return items


class Open311Schema(StrictSchema):
    """Open311's parameters: an empty one counts as not given, and the jurisdiction is taken
    and ignored, as this endpoint serves one."""

    jurisdiction_id = fields.Str(validate=validate.Length(max=200))

    @pre_load
    def _blank_is_absent(self, data: Any, **_: Any) -> Any:
        # "Optional" in the specification: an empty parameter is one not given.
        if isinstance(data, Mapping):
            return {name: value for name, value in data.items() if value != ""}
        return data


class RequestsQuerySchema(Open311Schema):
    service_request_id = CommaList(validate=validate.Length(max=georeport.MAX_REQUESTS))
    service_code = CommaList(validate=validate.Length(max=100))
    start_date = Instant()
    end_date = Instant()
    status = CommaList(validate=validate.ContainsOnly(("open", "closed")))

    @post_load
    def _as_search(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        statuses = set(data.get("status", ()))
        return {
            "ids": data.get("service_request_id", ()),
            "codes": data.get("service_code", ()),
            "start": data.get("start_date"),
            "end": data.get("end_date"),
            "is_open": "open" in statuses if len(statuses) == 1 else None,
        }


def _text(most: int) -> fields.Str:
    return fields.Str(validate=validate.Length(min=1, max=most))


def _few_digits(value: Decimal) -> None:
    # Kept as given, in an address of at most 200 characters.
    if len(value.as_tuple().digits) > 15:
        raise ValidationError("Give at most 15 digits.")


def _coordinate(bound: int) -> fields.Decimal:
    return fields.Decimal(validate=[validate.Range(-bound, bound), _few_digits])


class ReportFormSchema(Open311Schema):
    """A POSTed request: its service, where it is, and optionally who sent it and what more."""

    service_code = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    lat = _coordinate(90)
    long = _coordinate(180)
    address_string = _text(200)
    address_id = _text(20)
    email = _text(254)
    device_id = _text(100)
    account_id = _text(100)
    # Kept together as the reporter's name, of at most 100 characters.
    first_name = _text(49)
    last_name = _text(50)
    phone = _text(32)
    description = fields.Str(validate=validate.Length(max=4000))
    media_url = _text(2000)
    attribute = fields.Dict(
        keys=fields.Str(validate=FullMatch(CATEGORY_CODE)),
        values=fields.List(_text(5000), validate=validate.Length(min=1, max=50)),
        validate=validate.Length(max=30),
    )

    @validates_schema
    def _located(self, data: dict[str, Any], **_: Any) -> None:
        if ("lat" in data) != ("long" in data):
            raise ValidationError("Give lat and long together.", "lat" if "lat" in data else "long")
        if not any(name in data for name in ("lat", "address_string", "address_id")):
            raise ValidationError(
                "Give where the service is needed: lat and long, address_string or address_id."
            )

    @post_load
    def _as_report(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data.pop("jurisdiction_id", None)
        where = {
            name: data.pop(name, None) for name in ("lat", "long", "address_string", "address_id")
        }
        person = {
            name: data.pop(name, None)
            for name in ("first_name", "last_name", "phone", "email", "device_id", "account_id")
        }
        attributes = data.pop("attribute", {})
        return {
            **data,
            "where": georeport.Whereabouts(**where),
            "person": georeport.Person(**person),
            "attributes": attributes,
        }


PARAMETERS = Open311Schema()
REQUESTS_QUERY = RequestsQuerySchema()
REPORT_FORM = ReportFormSchema()


def _values(given: Any) -> dict[str, Any]:
    """A query or form as a schema reads it: a parameter given several times as a list."""
    return {
        name: values[0] if len(values) == 1 else values
        for name, values in given.lists()
        if name != "api_key"
    }


def _form() -> dict[str, Any]:
    """The POSTed form, its ``attribute[code]`` and ``attribute[code][]`` fields gathered as
    the answers by code."""
    form = _values(request.form)
    answers: dict[str, list[str]] = {}
    for name in list(form):
        found = _ATTRIBUTE.fullmatch(name)
        if found is None:
            continue
        form.pop(name)
        chosen = [value for value in request.form.getlist(name) if value != ""]
        if chosen:
            answers.setdefault(found[1], []).extend(chosen)
    if answers:
        form["attribute"] = answers
    return form


# --- output ----------------------------------------------------------------------------------


def _w3(moment: datetime | None) -> str | None:
    """A date and time in the W3C profile of ISO 8601, with its offset."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


class ServiceSchema(Schema):
    service_code = fields.Str(attribute="code")
    service_name = fields.Str(attribute="name")
    description = fields.Str()
    has_metadata = fields.Function(lambda service: bool(service.questions), data_key="metadata")
    type = fields.Constant("realtime")
    keywords = fields.Function(lambda service: ", ".join(service.keywords))
    group = fields.Str()


_DATATYPE_DESCRIPTIONS = {
    "datetime": "A date and time with its offset, as ISO 8601: 2026-11-26T09:00:00+08:00",
    "multivaluelist": "Send each key chosen as attribute[code][]",
}


class AttributeSchema(Schema):
    variable = fields.Constant(True)
    code = fields.Str()
    datatype = fields.Function(lambda question: georeport.DATATYPES[question["type"]])
    required = fields.Bool()
    datatype_description = fields.Function(
        lambda question: _DATATYPE_DESCRIPTIONS.get(georeport.DATATYPES[question["type"]])
    )
    order = fields.Int()
    description = fields.Function(lambda question: question["labels"]["en"])
    values = fields.Function(
        lambda question: [
            {"key": option["value"], "name": option["labels"]["en"]}
            for option in question["options"]
        ]
    )


class ServiceDefinitionSchema(Schema):
    service_code = fields.Str(attribute="code")
    attributes = fields.Method("_attributes")

    def _attributes(self, service: Any) -> list[dict[str, Any]]:
        # The specification's order counts from 1, each distinct; the catalogue keeps its
        # questions in the order they are asked.
        asked = [{**question, "order": n} for n, question in enumerate(service.questions, 1)]
        dumped: list[dict[str, Any]] = AttributeSchema(many=True).dump(asked)
        return dumped


class RecordSchema(Schema):
    service_request_id = fields.Str(attribute="id")
    status = fields.Str()
    status_notes = fields.Str()
    service_name = fields.Function(lambda record: record.service.name)
    service_code = fields.Function(lambda record: record.service.code)
    description = fields.Str()
    agency_responsible = fields.Str(allow_none=True)
    service_notice = fields.Str(allow_none=True)
    requested_datetime = fields.Function(lambda record: _w3(record.request.created_at))
    updated_datetime = fields.Function(lambda record: _w3(record.request.updated_at))
    expected_datetime = fields.Function(lambda record: _w3(record.request.resolve_by))
    address = fields.Str(allow_none=True)
    address_id = fields.Int(allow_none=True)
    zipcode = fields.Constant(None)
    lat = fields.Float(allow_none=True)
    long = fields.Float(allow_none=True)
    media_url = fields.Str(allow_none=True)


class PostedSchema(Schema):
    service_request_id = fields.Str(attribute="id")
    service_notice = fields.Str(allow_none=True)


SERVICES = ServiceSchema(many=True)
DEFINITION = ServiceDefinitionSchema()
RECORDS = RecordSchema(many=True)
POSTED = PostedSchema()


def _element(name: str, value: Any) -> ElementTree.Element:
    element = ElementTree.Element(name)
    if isinstance(value, Mapping):
        element.extend(_element(key, child) for key, child in value.items())
    elif isinstance(value, list):
        element.extend(_element(_ITEM[name], child) for child in value)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = _NOT_XML.sub("\ufffd", str(value))
    return element


def _format() -> str:
    given = g.get("open311_format")
    return given if given in MIME else "json"


def _answer(
    body: Any, *, root: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` in the format the path asks for: JSON as it is, XML under ``root``."""
    if _format() == "xml":
        text = ElementTree.tostring(_element(root, body), encoding="unicode")
        data = '<?xml version="1.0" encoding="utf-8"?>\n' + text
    else:
        data = json.dumps(body, ensure_ascii=False)
    response = Response(data, status=status, content_type=f"{MIME[_format()]}; charset=utf-8")
    response.headers.update(headers or {})
    return response


def _errors(status: int, descriptions: list[str]) -> Response:
    # The specification's statuses: 404 for what does not exist, 403 for a missing or wrong
    # api_key, 400 for anything else; and HTTP's 405, which names the methods allowed.
    status = status if status in (403, 404, 405, 429) else 400
    body = [{"code": status, "description": description} for description in descriptions]
    return _answer(body, root="errors", status=status)


def _messages(errors: Any, path: str = "") -> list[str]:
    """marshmallow's messages, one line each, prefixed by the parameter at fault."""
    if isinstance(errors, Mapping):
        return [
            line
            for name, nested in errors.items()
            for line in _messages(nested, path if name == "_schema" else f"{path}{name}.")
        ]
    if isinstance(errors, list) and all(isinstance(item, str) for item in errors):
        return [f"{path.rstrip('.')}: {item}" if path else item for item in errors]
    if isinstance(errors, list):
        return [line for item in errors for line in _messages(item, path)]
    return [f"{path.rstrip('.')}: {errors}" if path else str(errors)]


# --- the door --------------------------------------------------------------------------------


@blp.url_value_preprocessor
def _take_format(_: str | None, values: dict[str, Any] | None) -> None:
    g.open311_format = (values or {}).pop("format", None)


@blp.before_request
def _identify() -> None:
    """Who calls: the api_key given as Open311 gives it, a key in /v1's header, or anyone."""
    if g.open311_format not in MIME:
        raise NotFound(f"No format {g.open311_format!r} here: ask for .json or .xml")
    if request.method == "OPTIONS":
        # Flask answers it by itself, listing the methods; no view runs.
        return
    key = request.values.get("api_key")
    if key:
        lookup = current_service().api_key_lookup
        principal = lookup(key) if lookup is not None else None
        if principal is None:
            raise Forbidden("Invalid api_key: it is unknown or revoked")
        g.principal = principal
        return
    known = current_principal()
    if known is not None and known.is_system:
        return
    # A person's bearer token is no Open311 credential: they call as anyone does.
    if PUBLIC not in OPEN311.rule(operation()).roles:
        raise Forbidden(
            "Missing api_key: posting a request needs the API key of another system or a "
            "staff console"
        )
    g.principal = WITHOUT_KEY


@blp.errorhandler(DomainError)
def _refused(error: DomainError) -> Response:
    return _errors(error.status, [error.detail])


@blp.errorhandler(AuthProblem)
def _unknown_caller(error: AuthProblem) -> Response:
    return _errors(403, [error.detail])


@blp.errorhandler(ValidationError)
def _invalid(error: ValidationError) -> Response:
    return _errors(400, _messages(error.messages))


# RequestEntityTooLarge by name too: the app answers it by name, which comes first.
@blp.errorhandler(HTTPException)
@blp.errorhandler(RequestEntityTooLarge)
def _http_error(error: HTTPException) -> Response | HTTPException:
    if error.code is None or error.code < 400:
        return error
    return _errors(error.code, [error.description or error.name])


@blp.before_app_request
def _unrouted() -> Response | None:
    """A path under ``/open311/v2`` that no view serves, or a method none takes there: the
    specification's error array, in the format the path's suffix asks for. No blueprint is
    known before routing succeeds, so the blueprint's own handlers never see these."""
    error = request.routing_exception
    prefix = str(blp.url_prefix)
    if not isinstance(error, HTTPException) or request.url_rule is not None:
        return None
    if request.path != prefix and not request.path.startswith(prefix + "/"):
        return None
    g.open311_format = request.path.rpartition(".")[2] if "." in request.path else None
    if isinstance(error, MethodNotAllowed):
        allowed = sorted(error.valid_methods or ())
        answer = _errors(405, [f"{request.method} is not allowed here: use {', '.join(allowed)}"])
        answer.headers["Allow"] = ", ".join(allowed)
        return answer
    return _errors(error.code or 404, [f"Nothing at {request.path}: see discovery.json"])


# --- the views -------------------------------------------------------------------------------


@_route("/discovery.<format>")
class Discovery(MethodView):
    def get(self) -> Response:
        """Where this API is, what it speaks and how to get a key"""
        PARAMETERS.load(_values(request.args))
        service = current_service()
        with service.db.read() as session:
            changed = georeport.catalogue_changed_at(session)
        changeset = _w3(changed or datetime.fromtimestamp(0, UTC))
        is_production = service.settings.environment == "production"
        endpoint = {
            "specification": SPECIFICATION,
            "url": request.url_root.rstrip("/") + str(blp.url_prefix),
            "changeset": changeset,
            "type": "production" if is_production else "test",
            "formats": [MIME["xml"], MIME["json"]],
        }
        body = {
            "changeset": changeset,
            "contact": CONTACT,
            "key_service": KEY_SERVICE,
            "endpoints": [endpoint],
        }
        return _answer(body, root="discovery")


@_route("/services.<format>")
class Services(MethodView):
    def get(self) -> Response:
        """The services one may ask for"""
        PARAMETERS.load(_values(request.args))
        with current_service().db.read() as session:
            return _answer(SERVICES.dump(georeport.public_services(session)), root="services")


@_route("/services/<service_code>.<format>")
class ServiceDefinition(MethodView):
    def get(self, service_code: str) -> Response:
        """What a service asks of whoever asks for it"""
        PARAMETERS.load(_values(request.args))
        with current_service().db.read() as session:
            service = georeport.public_service(session, service_code)
            return _answer(DEFINITION.dump(service), root="service_definition")


@_route("/requests.<format>")
class Requests(MethodView):
    def post(self) -> Response:
        """Submit a request: its service, where it is, and as much more as the sender knows"""
        report = REPORT_FORM.load(_form())
        account_id = report["person"].account_id
        principal = caller()
        service = current_service()

        def submit(session: Session) -> StoredResponse:
            record = georeport.submit_report(session, submitted_by=principal, **report)
            return StoredResponse(201, [{**POSTED.dump(record), "account_id": account_id}])

        stored = run_once(
            service.db,
            service.messaging,
            client=f"{principal.role}:{principal.subject}",
            key=request.headers.get("Idempotency-Key"),
            payload={name: values for name, values in request.form.lists() if name != "api_key"},
            action=submit,
        )
        created = stored.body[0]["service_request_id"]
        headers = {
            "Location": url_for("open311.Request", request_id=created, format=_format()),
            **({"Idempotent-Replayed": "true"} if stored.replayed else {}),
        }
        return _answer(
            stored.body, root="service_requests", status=stored.status_code, headers=headers
        )

    def get(self) -> Response:
        """Requests: those named, else of the last 90 days or the span given, newest first"""
        search = REQUESTS_QUERY.load(_values(request.args))
        with current_service().db.read() as session:
            found = georeport.find_records(session, **search, in_full=caller().is_system)
            return _answer(RECORDS.dump(found), root="service_requests")


@_route("/requests/<request_id>.<format>")
class Request(MethodView):
    def get(self, request_id: str) -> Response:
        """One request"""
        PARAMETERS.load(_values(request.args))
        with current_service().db.read() as session:
            record = georeport.find_record(session, request_id, in_full=caller().is_system)
            return _answer(RECORDS.dump([record]), root="service_requests")


@_route("/tokens/<token>.<format>")
class Token(MethodView):
    def get(self, token: str) -> Response:
        """The request a token stands for: none here, as every service is realtime"""
        PARAMETERS.load(_values(request.args))
        georeport.resolve_token(token)


enforce(OPEN311, blp)
