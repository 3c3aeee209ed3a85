"""intake's HTTP API: requests and what people do to them, the catalogue, the grid, residents,
the health register, the webhooks other systems follow their requests by, and the API keys
admins issue them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import flask
from flask import url_for
from flask.views import MethodView
from marshmallow import Schema
from sqlalchemy.orm import Session

from services.intake import catalogue, clients, directory, listing, requests, webhooks
from services.intake.destinations import Destinations, destinations_for
from services.intake.policy import POLICY, no_request, no_resident
from services.intake.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyQuerySchema,
    ApiKeySchema,
    AttachmentSchema,
    CategoryCreateSchema,
    CategoryQuerySchema,
    CategorySchema,
    CategoryUpdateSchema,
    ChangesQuerySchema,
    ConfirmationSchema,
    CountQuerySchema,
    DeliveryDetailSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    GridNodeCreateSchema,
    GridNodeQuerySchema,
    GridNodeSchema,
    GridNodeUpdateSchema,
    HealthNoteCreateSchema,
    HealthNoteSchema,
    MergeSchema,
    NoteOnlySchema,
    NoteSchema,
    ReasonSchema,
    ReplayedSchema,
    ReplaySchema,
    RequestChangesSchema,
    RequestCountsSchema,
    RequestCreateSchema,
    RequestListQuerySchema,
    RequestSchema,
    ResidentCreateSchema,
    ResidentQuerySchema,
    ResidentSchema,
    ResidentUpdateSchema,
    SecretRotationSchema,
    TimelineEntrySchema,
    TriageSchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookSchema,
    WebhookUpdateSchema,
)
from shared.admission import caller, enforce, operation
from shared.conditional import PreconditionFailed, versions_named
from shared.errors import Invalid
from shared.idempotency import IDEMPOTENCY_HEADER_DOC, Answered, created_once
from shared.openapi import CHANGED_HEADERS, ETAG_HEADER, Blueprint
from shared.paging import paged
from shared.policy import GRID_LEADER, RESIDENT
from shared.service_app import current_service

blp = Blueprint("requests", __name__, url_prefix="/v1", description="Requests through the one door")
REQUEST_SCHEMA = RequestSchema()
# An instance, not the class: given a class, webargs builds a schema (and its nested location
# schema) for every request, copying each field.
REQUEST_CREATE_SCHEMA = RequestCreateSchema()
# The same words for the same failure on every endpoint; who may do what is in policy.py.
STAFF_ONLY = "The caller is not staff"
NOT_FOR_VOLUNTEERS = "The caller is a volunteer"
HEALTH_ONLY = "The caller does not hold the health role"
NO_REQUEST = "No such request, or a resident asked for someone else's"
ILLEGAL = "Not allowed in the request's current status, which the problem names"
PAGINATION_HEADER = {
    "X-Pagination": {
        "description": "JSON: total (matching in all, counted up to 10000: past that, total is "
        "10000 and is_total_capped true), is_total_capped, page_size, next_cursor (pass as after)",
        "schema": {"type": "string"},
    }
}


def _as_seen(request: requests.ServiceRequest) -> requests.ServiceRequest:
    """The request as the caller may see it: a resident, the public timeline only."""
    if caller().role in (RESIDENT, GRID_LEADER):
        request.shown_timeline = [entry for entry in request.timeline if entry.is_public]  # type: ignore[attr-defined]
    return request


def _check_names_a_resident(principal: Any, data: dict[str, Any]) -> None:
    """A resident files their own requests and a grid leader those of their area's residents:
    a request of theirs names the resident it is for."""
    if principal.role in (RESIDENT, GRID_LEADER) and data.get("resident_id") is None:
        raise Invalid(
            "Name the resident the request is for in resident_id: a resident files their own "
            "requests, a grid leader those of the residents of their area",
            field="resident_id",
        )


def _filter(query: dict[str, Any]) -> listing.RequestFilter:
    place = directory.Place.of(query)
    for level in directory.LEVELS:
        query.pop(level, None)
    tuples: dict[str, Any] = {
        name: tuple(query.pop(name, ())) for name in ("status", "category", "priority", "channel")
    }
    return listing.RequestFilter(place=place, is_open=query.pop("open", None), **tuples, **query)


def _expected_versions() -> frozenset[int] | None:
    """The versions the caller's If-Match allows a change to; None: any."""
    return versions_named(flask.request.headers.get("If-Match"))


# Records that keep no version (categories, grid nodes, residents, webhooks) are tagged by what
# they show: the same representation, the same tag.
CATEGORY_SCHEMA = CategorySchema()
GRID_NODE_SCHEMA = GridNodeSchema()
RESIDENT_SCHEMA = ResidentSchema()
WEBHOOK_SCHEMA = WebhookSchema()


def _shown_etag(schema: Schema, record: Any) -> str:
    """The strong ETag of a record that keeps no version: a hash of its representation."""
    shown = json.dumps(schema.dump(record), sort_keys=True, default=str, separators=(",", ":"))
    return '"' + hashlib.sha256(shown.encode()).hexdigest()[:32] + '"'


def _etagged(schema: Schema, record: Any) -> tuple[Any, dict[str, str]]:
    return record, {"ETag": _shown_etag(schema, record)}


def _check_if_match(schema: Schema, locked: Callable[[], Any], *, what: str) -> None:
    """PreconditionFailed unless the caller's If-Match names the record as it now is (read by
    ``locked``, which locks it until commit): tags are compared exactly, weak ones never match.
    No header, or ``*``, allows any."""
    header = flask.request.headers.get("If-Match")
    if not header or not header.strip() or flask.request.if_match.star_tag:
        return
    current = _shown_etag(schema, locked())
    if not flask.request.if_match.contains(current.strip('"')):
        raise PreconditionFailed(
            f"{what} has changed since the copy sent in If-Match was read: read it again "
            f"(its ETag is now {current}) and decide on what it says now",
            current_etag=current,
        )


def _tagged(request: requests.ServiceRequest) -> dict[str, str]:
    """The headers naming the version of the request a response shows."""
    return {
        "ETag": requests.etag_of(request),
        "Content-Location": url_for("requests.Request", request_id=request.id),
    }


def _change(action: Any, request_id: str, **fields: Any) -> Any:
    """The change made, if the request is still at a version the caller's If-Match names;
    the request as it is now, tagged with its new version."""
    expected_versions = _expected_versions()
    with current_service().db.transaction() as session:
        changed = _as_seen(
            action(session, request_id=request_id, expected_versions=expected_versions, **fields)
        )
    return changed, _tagged(changed)


@blp.route("/requests")
class Requests(MethodView):
    @blp.arguments(REQUEST_CREATE_SCHEMA)
    @blp.response(201, RequestSchema)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(
        404,
        description="No such active category, or no such resident (to a resident, any other)",
    )
    @blp.alt_response(409, description="The category's notice blocks submission: nothing queued")
    @blp.alt_response(422, description="Invalid fields or answers, or an Idempotency-Key reused")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER_DOC])
    def post(self, data: dict[str, Any]) -> Any:
        """Submit a request"""
        principal, name = caller(), operation()
        _check_names_a_resident(principal, data)
        hidden_as = no_resident(str(data.get("resident_id")))

        def check(session: Session) -> tuple[requests.Submission, dict[str, Any]]:
            POLICY.check_owner(name, principal, data, hidden_as=hidden_as, session=session)
            submission = requests.check_submission(session, submitted_by=principal, **data)
            # The answer is made with the checks, on SQLite before the write lock is taken:
            # only its first entry's id waits for the writes.
            return submission, REQUEST_SCHEMA.dump(requests.as_recorded(submission, None))

        def create(session: Session, checked: tuple[requests.Submission, Any]) -> Answered:
            submission, answer = checked
            recorded = requests.record_submission(session, submission)
            answer["timeline"][0]["id"] = recorded.timeline[0].id
            return Answered(recorded, answer)

        return created_once(
            current_service().db,
            current_service().messaging,
            principal,
            create,
            check=check,
            schema=REQUEST_SCHEMA,
            location=lambda created: url_for("requests.Request", request_id=created.id),
        )

    @blp.arguments(RequestListQuerySchema, location="query")
    @blp.response(200, RequestSchema(many=True), headers=PAGINATION_HEADER)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(422, description="Invalid filters, or a cursor of another list")
    def get(self, query: dict[str, Any]) -> Any:
        """List requests: filtered, sorted, a page at a time"""
        query.update(POLICY.scope(operation(), caller()))
        sort, after, page_size = query.pop("sort"), query.pop("after", None), query.pop("page_size")
        with current_service().db.read() as session:
            page = listing.list_requests(
                session, where=_filter(query), sort=sort, after=after, page_size=page_size
            )
        header = {
            "total": page.total,
            "is_total_capped": page.is_total_capped,
            "page_size": page_size,
            "next_cursor": page.next_cursor,
        }
        return [_as_seen(request) for request in page.items], {"X-Pagination": json.dumps(header)}


@blp.route("/requests/changes")
class RequestChanges(MethodView):
    @blp.arguments(ChangesQuerySchema, location="query")
    @blp.response(200, RequestChangesSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(422, description="Not a cursor of the feed")
    def get(self, query: dict[str, Any]) -> Any:
        """What changed since a cursor, oldest first, for systems that poll"""
        with current_service().db.read() as session:
            found, cursor = listing.changes(session, after=query.get("after"), limit=query["limit"])
        return {"changes": found, "next_cursor": cursor}


@blp.route("/requests/counts")
class RequestCounts(MethodView):
    @blp.arguments(CountQuerySchema, location="query")
    @blp.response(200, RequestCountsSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(422, description="Invalid filters")
    def get(self, query: dict[str, Any]) -> Any:
        """How many requests, by category, group, building or status"""
        by = query.pop("by")
        with current_service().db.read() as session:
            return {
                "by": by,
                "counts": listing.count_requests(session, by=by, where=_filter(query)),
            }


@blp.route("/requests/<request_id>")
class Request(MethodView):
    @blp.conditional
    @blp.response(200, RequestSchema, headers=ETAG_HEADER)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description=NO_REQUEST)
    def get(self, request_id: str) -> Any:
        """Show a request with its timeline"""
        with current_service().db.read() as session:
            request = requests.get_request(session, request_id)
            POLICY.check_owner(
                operation(), caller(), request, hidden_as=no_request(request_id), session=session
            )
            return _as_seen(request), {"ETag": requests.etag_of(request)}


@blp.route("/requests/<request_id>/confirmation")
class Confirmation(MethodView):
    @blp.if_match
    @blp.arguments(ConfirmationSchema, required=False)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(
        403,
        description="Not the resident, nor staff; API clients never confirm; nor may anyone "
        "who accepted or completed the service",
    )
    @blp.alt_response(404, description=NO_REQUEST)
    @blp.alt_response(409, description="The request is not completed, or already confirmed")
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Confirm that the service was done, and rate it"""
        # Who may confirm this request is settled once it is read: see check_may_confirm.
        return _change(requests.confirm_request, request_id, confirmed_by=caller(), **data)


@blp.route("/requests/<request_id>/triage")
class Triage(MethodView):
    @blp.if_match
    @blp.arguments(TriageSchema)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such request, category, resident or household")
    @blp.alt_response(409, description=ILLEGAL)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Triage a request: its category, priority, place and resident"""
        return _change(requests.triage_request, request_id, triaged_by=caller(), **data)


@blp.route("/requests/<request_id>/start")
class Start(MethodView):
    @blp.if_match
    @blp.arguments(NoteOnlySchema, required=False)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description="The caller is neither staff nor a volunteer")
    @blp.alt_response(404, description="No such request, or not assigned to the volunteer")
    @blp.alt_response(409, description=ILLEGAL)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Record that the service has started"""
        return _change(requests.start_service, request_id, started_by=caller(), **data)


@blp.route("/requests/<request_id>/escalation")
class Escalation(MethodView):
    @blp.if_match
    @blp.arguments(ReasonSchema)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description=NO_REQUEST)
    @blp.alt_response(409, description=ILLEGAL)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Escalate a request to those responsible for its place"""
        return _change(requests.escalate_request, request_id, escalated_by=caller(), **data)


@blp.route("/requests/<request_id>/cancellation")
class Cancellation(MethodView):
    @blp.if_match
    @blp.arguments(ReasonSchema)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description=NO_REQUEST)
    @blp.alt_response(409, description=ILLEGAL)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Cancel a request that is no longer needed"""
        return _change(requests.cancel_request, request_id, cancelled_by=caller(), **data)


@blp.route("/requests/<request_id>/rejection")
class Rejection(MethodView):
    @blp.if_match
    @blp.arguments(ReasonSchema)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description=NO_REQUEST)
    @blp.alt_response(409, description=ILLEGAL)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Reject a request the neighbourhood does not serve"""
        return _change(requests.reject_request, request_id, rejected_by=caller(), **data)


@blp.route("/requests/<request_id>/reopening")
class Reopening(MethodView):
    @blp.if_match
    @blp.arguments(ReasonSchema)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description=NO_REQUEST)
    @blp.alt_response(409, description=ILLEGAL + ", or its time to reopen has passed")
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Reopen a finished request: it goes back to the same team"""
        within = timedelta(days=current_service().settings.reopen_within_days)
        return _change(
            requests.reopen_request,
            request_id,
            reopened_by=caller(),
            reopen_within=within,
            **data,
        )


@blp.route("/requests/<request_id>/merge")
class Merge(MethodView):
    @blp.if_match
    @blp.arguments(MergeSchema)
    @blp.response(200, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such request, or no request to merge it into")
    @blp.alt_response(409, description=ILLEGAL)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Merge a duplicate into the request it repeats"""
        return _change(requests.merge_request, request_id, merged_by=caller(), **data)


@blp.route("/requests/<request_id>/notes")
class Notes(MethodView):
    @blp.if_match
    @blp.arguments(NoteSchema)
    @blp.response(201, TimelineEntrySchema)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description=NO_REQUEST)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Add a public or internal note to a request's timeline"""
        with current_service().db.transaction() as session:
            return requests.add_note(
                session,
                request_id=request_id,
                text=data["text"],
                is_public=data.get("public"),
                written_by=caller(),
                expected_versions=_expected_versions(),
            )


@blp.route("/requests/<request_id>/attachments")
class Attachments(MethodView):
    @blp.if_match
    @blp.arguments(AttachmentSchema)
    @blp.response(201, RequestSchema, headers=CHANGED_HEADERS)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description=NO_REQUEST)
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Attach a photo or document to a request by its URL"""
        return _change(requests.add_attachment, request_id, added_by=caller(), **data)


@blp.route("/categories")
class Categories(MethodView):
    @blp.arguments(CategoryQuerySchema, location="query")
    @blp.response(200, CategorySchema(many=True))
    @blp.alt_response(422, description="Invalid filters")
    def get(self, query: dict[str, Any]) -> Any:
        """List the service catalogue, by group"""
        where = catalogue.CategoryFilter(text=query.pop("q", None), **query)
        with current_service().db.read() as session:
            return catalogue.list_categories(session, where=where)

    @blp.arguments(CategoryCreateSchema)
    @blp.response(201, CategorySchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(409, description="A category with that code already exists")
    def post(self, data: dict[str, Any]) -> Any:
        """Add a category to the catalogue"""
        with current_service().db.transaction() as session:
            return catalogue.add_category(session, **data)


@blp.route("/categories/<code>")
class Category(MethodView):
    @blp.conditional
    @blp.response(200, CategorySchema, headers=ETAG_HEADER)
    @blp.alt_response(404, description="No such category")
    def get(self, code: str) -> Any:
        """Show a category with its questions and deadlines"""
        with current_service().db.read() as session:
            return _etagged(CATEGORY_SCHEMA, catalogue.get_category(session, code))

    @blp.if_match
    @blp.arguments(CategoryUpdateSchema)
    @blp.response(200, CategorySchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such category")
    def patch(self, data: dict[str, Any], code: str) -> Any:
        """Change a category, or deactivate it (is_active false)"""
        with current_service().db.transaction() as session:
            _check_if_match(
                CATEGORY_SCHEMA,
                lambda: catalogue.get_category(session, code, for_update=True),
                what=f"Category {code}",
            )
            return catalogue.update_category(session, code=code, **data)


@blp.route("/grid/nodes")
class GridNodes(MethodView):
    @blp.arguments(GridNodeQuerySchema, location="query")
    @blp.response(200, GridNodeSchema(many=True))
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: Any) -> Any:
        """List the grid at and beneath a place"""
        kind = query.pop("kind", None)
        return paged(
            current_service().db,
            pagination_parameters,
            directory.list_nodes,
            under=directory.Place.of(query),
            kind=kind,
        )

    @blp.arguments(GridNodeCreateSchema)
    @blp.response(201, GridNodeSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such resident to be responsible for it")
    def post(self, data: dict[str, Any]) -> Any:
        """Put a place on the grid, with the levels above it that are missing"""
        with current_service().db.transaction() as session:
            node = directory.ensure_node(session, directory.Place.of(data["place"]))
            changes = {key: data[key] for key in ("name", "responsible") if key in data}
            return directory.update_node(session, node_id=node.id, **changes)


@blp.route("/grid/nodes/<node_id>")
class GridNode(MethodView):
    @blp.conditional
    @blp.response(200, GridNodeSchema, headers=ETAG_HEADER)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such node")
    def get(self, node_id: str) -> Any:
        """Show a place of the grid and who is responsible for it"""
        with current_service().db.read() as session:
            return _etagged(GRID_NODE_SCHEMA, directory.get_node(session, node_id))

    @blp.if_match
    @blp.arguments(GridNodeUpdateSchema)
    @blp.response(200, GridNodeSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such node, or no such resident to be responsible")
    def patch(self, data: dict[str, Any], node_id: str) -> Any:
        """Rename a place, or name who is responsible for it"""
        with current_service().db.transaction() as session:
            _check_if_match(
                GRID_NODE_SCHEMA,
                lambda: directory.get_node(session, node_id, for_update=True),
                what=f"Grid node {node_id}",
            )
            return directory.update_node(session, node_id=node_id, **data)


@blp.route("/residents")
class Residents(MethodView):
    @blp.arguments(ResidentCreateSchema)
    @blp.response(201, ResidentSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such household on the grid")
    def post(self, data: dict[str, Any]) -> Any:
        """Register a resident at a household of the grid"""
        location = data.pop("location")
        with current_service().db.transaction() as session:
            return directory.register_resident_at(session, **location, **data)

    @blp.arguments(ResidentQuerySchema, location="query")
    @blp.response(200, ResidentSchema(many=True))
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(422, description="Invalid filters")
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: Any) -> Any:
        """List residents at and beneath a place, by their flags"""
        place = directory.Place.of(query)
        flags = {key: value for key, value in query.items() if key not in directory.LEVELS}
        where = directory.ResidentFilter(place=place, **flags)
        return paged(
            current_service().db, pagination_parameters, directory.list_residents, where=where
        )


@blp.route("/residents/<resident_id>")
class Resident(MethodView):
    @blp.conditional
    @blp.response(200, ResidentSchema, headers=ETAG_HEADER)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description="No such resident, or a resident asked for another")
    def get(self, resident_id: str) -> Any:
        """Show a resident"""
        POLICY.check_owner(
            operation(),
            caller(),
            {"resident_id": resident_id},
            hidden_as=no_resident(resident_id),
        )
        with current_service().db.read() as session:
            return _etagged(RESIDENT_SCHEMA, directory.get_resident(session, resident_id))

    @blp.if_match
    @blp.arguments(ResidentUpdateSchema)
    @blp.response(200, ResidentSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such resident, or no such household")
    def patch(self, data: dict[str, Any], resident_id: str) -> Any:
        """Change a resident's contact, language or flags, or their household"""
        with current_service().db.transaction() as session:
            _check_if_match(
                RESIDENT_SCHEMA,
                lambda: directory.get_resident(session, resident_id, for_update=True),
                what=f"Resident {resident_id}",
            )
            return directory.update_resident(session, resident_id=resident_id, **data)


@blp.route("/residents/<resident_id>/health-notes")
class HealthNotes(MethodView):
    @blp.response(200, HealthNoteSchema(many=True))
    @blp.alt_response(403, description=HEALTH_ONLY)
    @blp.alt_response(404, description="No such resident")
    def get(self, resident_id: str) -> Any:
        """Read a resident's health notes"""
        with current_service().db.read() as session:
            return directory.health_notes(session, resident_id=resident_id, reader=caller())

    @blp.arguments(HealthNoteCreateSchema)
    @blp.response(201, HealthNoteSchema)
    @blp.alt_response(403, description="The caller is neither staff nor of the health role")
    @blp.alt_response(404, description="No such resident")
    def post(self, data: dict[str, Any], resident_id: str) -> Any:
        """Add a note to a resident's health record"""
        with current_service().db.transaction() as session:
            return directory.add_health_note(
                session, resident_id=resident_id, note=data["note"], written_by=caller()
            )


# Webhooks: receivers other systems register for the events of their own requests.

WEBHOOK_CALLERS = "The caller is neither staff nor a system"
NO_WEBHOOK = "No such subscription, or another system's"
NO_DELIVERY = "No such subscription or delivery, or another system's"
WEBHOOK_CREATED_SCHEMA = WebhookCreatedSchema()


def _destinations() -> Destinations:
    settings = current_service().settings
    return destinations_for(settings.environment, trusted_hosts=settings.webhook_trusted_hosts)


@blp.route("/webhooks")
class Webhooks(MethodView):
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookCreatedSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(
        404, description="No such API client to be the owner (to a system, any but itself)"
    )
    @blp.alt_response(409, description="The owner has as many subscriptions as it may have")
    @blp.alt_response(
        422,
        description="Invalid fields, a receiver deliveries may not go to, no owner named by "
        "staff, or an Idempotency-Key reused",
    )
    @blp.doc(parameters=[IDEMPOTENCY_HEADER_DOC])
    def post(self, data: dict[str, Any]) -> Any:
        """Register a receiver for the events of your requests; its secret is shown this once"""
        principal = caller()
        destinations = _destinations()
        return created_once(
            current_service().db,
            current_service().messaging,
            principal,
            lambda session: webhooks.create_subscription(
                session, by=principal, destinations=destinations, **data
            ),
            schema=WEBHOOK_CREATED_SCHEMA,
            location=lambda created: url_for("requests.Webhook", subscription_id=created.id),
        )

    @blp.response(200, WebhookSchema(many=True))
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    def get(self) -> Any:
        """List webhook subscriptions: a system's own, everyone's to staff"""
        owner = POLICY.scope(operation(), caller()).get("owner")
        with current_service().db.read() as session:
            return webhooks.list_subscriptions(session, owner=owner)


@blp.route("/webhooks/<subscription_id>")
class Webhook(MethodView):
    @blp.conditional
    @blp.response(200, WebhookSchema, headers=ETAG_HEADER)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    def get(self, subscription_id: str) -> Any:
        """Show a webhook subscription: its receiver, whether it is paused and why"""
        with current_service().db.read() as session:
            found = webhooks.get_subscription(session, subscription_id=subscription_id, by=caller())
            return _etagged(WEBHOOK_SCHEMA, found)

    @blp.if_match
    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    @blp.alt_response(422, description="Invalid fields, or a receiver deliveries may not go to")
    def patch(self, data: dict[str, Any], subscription_id: str) -> Any:
        """Change a subscription's receiver, events or description"""
        with current_service().db.transaction() as session:
            _check_if_match(
                WEBHOOK_SCHEMA,
                lambda: webhooks.get_subscription(
                    session, subscription_id=subscription_id, by=caller(), for_update=True
                ),
                what=f"Webhook subscription {subscription_id}",
            )
            return webhooks.update_subscription(
                session,
                subscription_id=subscription_id,
                by=caller(),
                destinations=_destinations(),
                **data,
            )

    @blp.response(200, WebhookSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    def delete(self, subscription_id: str) -> Any:
        """Remove a subscription with its deliveries: nothing more is sent; answers what it was"""
        with current_service().db.transaction() as session:
            return webhooks.remove_subscription(
                session, subscription_id=subscription_id, by=caller()
            )


@blp.route("/webhooks/<subscription_id>/secret")
class WebhookSecret(MethodView):
    @blp.arguments(SecretRotationSchema, required=False)
    @blp.response(200, WebhookCreatedSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    @blp.alt_response(422, description="Invalid overlap")
    def post(self, data: dict[str, Any], subscription_id: str) -> Any:
        """Rotate the signing secret: the new one is shown once, the old one signs too a while"""
        overlap = timedelta(minutes=data.get("overlap_minutes", 24 * 60))
        with current_service().db.transaction() as session:
            return webhooks.rotate_secret(
                session, subscription_id=subscription_id, by=caller(), overlap=overlap
            )


@blp.route("/webhooks/<subscription_id>/resumption")
class WebhookResumption(MethodView):
    @blp.response(200, WebhookSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    @blp.alt_response(409, description="The subscription is not paused")
    def post(self, subscription_id: str) -> Any:
        """Resume sending to a paused receiver: what waited goes first, in order"""
        with current_service().db.transaction() as session:
            return webhooks.resume_subscription(
                session, subscription_id=subscription_id, by=caller()
            )


@blp.route("/webhooks/<subscription_id>/deliveries")
class WebhookDeliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliverySchema(many=True))
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    @blp.alt_response(422, description="Invalid filters")
    @blp.paginate()
    def get(self, query: dict[str, Any], subscription_id: str, pagination_parameters: Any) -> Any:
        """List a subscription's deliveries, newest first"""
        return paged(
            current_service().db,
            pagination_parameters,
            webhooks.list_deliveries,
            subscription_id=subscription_id,
            by=caller(),
            **query,
        )


@blp.route("/webhooks/<subscription_id>/deliveries/<delivery_id>")
class WebhookDelivery(MethodView):
    @blp.response(200, DeliveryDetailSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_DELIVERY)
    def get(self, subscription_id: str, delivery_id: str) -> Any:
        """Show a delivery, what it sent and each attempt: status, latency, error, answer"""
        with current_service().db.read() as session:
            return webhooks.get_delivery(
                session, subscription_id=subscription_id, delivery_id=delivery_id, by=caller()
            )


@blp.route("/webhooks/<subscription_id>/deliveries/<delivery_id>/replay")
class WebhookDeliveryReplay(MethodView):
    @blp.response(201, DeliverySchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_DELIVERY)
    def post(self, subscription_id: str, delivery_id: str) -> Any:
        """Send a delivery again, after those of its request still waiting"""
        with current_service().db.transaction() as session:
            return webhooks.replay_delivery(
                session, subscription_id=subscription_id, delivery_id=delivery_id, by=caller()
            )


@blp.route("/webhooks/<subscription_id>/replays")
class WebhookReplays(MethodView):
    @blp.arguments(ReplaySchema)
    @blp.response(201, ReplayedSchema)
    @blp.alt_response(403, description=WEBHOOK_CALLERS)
    @blp.alt_response(404, description=NO_WEBHOOK)
    @blp.alt_response(422, description="Invalid times, or too many deliveries in them")
    def post(self, data: dict[str, Any], subscription_id: str) -> Any:
        """Send again the deliveries made in a span of time (or only those given up on)"""
        with current_service().db.transaction() as session:
            replayed = webhooks.replay_deliveries(
                session, subscription_id=subscription_id, by=caller(), **data
            )
            return {"replayed": len(replayed), "deliveries": replayed}


# API keys: issued, listed, shown and revoked by admins (clients.py).

ADMINS_ONLY = "The caller is not an admin: a token of the admin role or a key of the admin scope"
NO_CLIENT = "No API client of that name"
RATE_LIMITED = "The API key made more calls than its limit allows: retry after Retry-After"
RATE_LIMIT_HEADERS = {
    name: {"description": meaning, "schema": {"type": "integer"}}
    for name, meaning in (
        ("Retry-After", "Seconds until the key may call again"),
        ("RateLimit-Limit", "Calls the key may make in a window"),
        (
            "RateLimit-Remaining",
            "Calls left in this window, at most: with a limit of 400 or more, calls other web "
            "processes took in advance count as made",
        ),
        ("RateLimit-Reset", "Seconds until the window ends"),
    )
}


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @blp.arguments(ApiKeyCreateSchema)
    @blp.response(201, ApiKeyCreatedSchema)
    @blp.alt_response(403, description=ADMINS_ONLY)
    @blp.alt_response(429, description=RATE_LIMITED, headers=RATE_LIMIT_HEADERS)
    @blp.alt_response(409, description="A client of that name exists (revoked names are kept)")
    @blp.alt_response(
        422, description="Invalid fields: a scope its role may not hold, a malformed rate limit"
    )
    def post(self, data: dict[str, Any]) -> Any:
        """Issue an API key to a system, a console or an admin tool; the key is shown this once"""
        with current_service().db.transaction() as session:
            client, key = clients.create_api_client(session, **data)
            client.api_key = key  # type: ignore[attr-defined]
            return client

    @blp.arguments(ApiKeyQuerySchema, location="query")
    @blp.response(200, ApiKeySchema(many=True), headers=PAGINATION_HEADER)
    @blp.alt_response(403, description=ADMINS_ONLY)
    @blp.alt_response(429, description=RATE_LIMITED, headers=RATE_LIMIT_HEADERS)
    @blp.alt_response(422, description="Invalid filters")
    def get(self, query: dict[str, Any]) -> Any:
        """List API clients by name, with their scopes and last use (never their keys)"""
        with current_service().db.read() as session:
            page = clients.list_api_clients(
                session,
                after=query.get("after"),
                page_size=query["page_size"],
                is_revoked=query.get("revoked"),
            )
        header = {
            "total": page.total,
            "page_size": query["page_size"],
            "next_cursor": page.next_cursor,
        }
        return page.items, {"X-Pagination": json.dumps(header)}


@blp.route("/api-keys/<name>")
class ApiKey(MethodView):
    @blp.response(200, ApiKeySchema)
    @blp.alt_response(403, description=ADMINS_ONLY)
    @blp.alt_response(429, description=RATE_LIMITED, headers=RATE_LIMIT_HEADERS)
    @blp.alt_response(404, description=NO_CLIENT)
    def get(self, name: str) -> Any:
        """Show an API client: its role, scopes, limit, last use and revocation"""
        with current_service().db.read() as session:
            return clients.get_api_client(session, name)

    @blp.response(200, ApiKeySchema)
    @blp.alt_response(403, description=ADMINS_ONLY)
    @blp.alt_response(429, description=RATE_LIMITED, headers=RATE_LIMIT_HEADERS)
    @blp.alt_response(404, description=NO_CLIENT)
    def delete(self, name: str) -> Any:
        """Revoke an API client's key for good: refused at once here, everywhere within 30 s"""
        with current_service().db.transaction() as session:
            client = clients.revoke_api_client(session, name=name)
        keys = current_service().api_key_lookup
        if keys is not None:
            keys.forget(client.key_hash)
        return client


enforce(POLICY, blp)
