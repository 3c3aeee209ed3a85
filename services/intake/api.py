"""intake's HTTP API: requests, confirmations, the catalogue and residents."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from services.intake import directory, requests
from services.intake.policy import POLICY, no_request, no_resident
from services.intake.schemas import (
    CategorySchema,
    ConfirmationSchema,
    RequestCreateSchema,
    RequestQuerySchema,
    RequestSchema,
    ResidentCreateSchema,
    ResidentSchema,
)
from shared.admission import caller, enforce, operation
from shared.idempotency import IDEMPOTENCY_HEADER_DOC, created_once
from shared.openapi import Blueprint
from shared.paging import paged
from shared.service_app import current_service

blp = Blueprint("requests", __name__, url_prefix="/v1", description="Requests through the one door")
REQUEST_SCHEMA = RequestSchema()
# An instance, not the class: given a class, webargs builds a schema (and its nested location
# schema) for every request, copying each field.
REQUEST_CREATE_SCHEMA = RequestCreateSchema()
# The same words for the same failure on every endpoint; who may do what is in policy.py.
STAFF_ONLY = "The caller is not staff"
NOT_FOR_VOLUNTEERS = "The caller is a volunteer"
NO_REQUEST = "No such request, or a resident asked for someone else's"


@blp.route("/requests")
class Requests(MethodView):
    @blp.arguments(REQUEST_CREATE_SCHEMA)
    @blp.response(201, RequestSchema)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(
        404,
        description="No such active category, or no such resident (to a resident, any other)",
    )
    @blp.alt_response(422, description="Invalid fields, or an Idempotency-Key reused")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER_DOC])
    def post(self, data: dict[str, Any]) -> Any:
        """Submit a request"""
        principal = caller()
        POLICY.check_owner(operation(), principal, data, hidden_as=no_resident(data["resident_id"]))
        return created_once(
            current_service().db,
            current_service().messaging,
            principal,
            lambda session: requests.submit_request(session, submitted_by=principal, **data),
            schema=REQUEST_SCHEMA,
            location=lambda created: url_for("requests.Request", request_id=created.id),
        )

    @blp.arguments(RequestQuerySchema, location="query")
    @blp.response(200, RequestSchema(many=True))
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List requests, newest first"""
        query.update(POLICY.scope(operation(), caller()))
        where = requests.RequestFilter(status=tuple(query.pop("status")), **query)
        return paged(
            current_service().db, pagination_parameters, requests.list_requests, where=where
        )


@blp.route("/requests/<request_id>")
class Request(MethodView):
    @blp.response(200, RequestSchema)
    @blp.alt_response(403, description=NOT_FOR_VOLUNTEERS)
    @blp.alt_response(404, description=NO_REQUEST)
    def get(self, request_id: str) -> Any:
        """Show a request with its timeline"""
        with current_service().db.read() as session:
            request = requests.get_request(session, request_id)
            POLICY.check_owner(operation(), caller(), request, hidden_as=no_request(request_id))
            return request


@blp.route("/requests/<request_id>/confirmation")
class Confirmation(MethodView):
    @blp.arguments(ConfirmationSchema, required=False)
    @blp.response(200, RequestSchema)
    @blp.alt_response(
        403,
        description="Not the resident, nor staff; API clients never confirm; nor may anyone "
        "who accepted or completed the service",
    )
    @blp.alt_response(404, description=NO_REQUEST)
    @blp.alt_response(409, description="The request is not completed, or already confirmed")
    def post(self, data: dict[str, Any], request_id: str) -> Any:
        """Confirm that the service was done"""
        # Who may confirm this request is settled once it is read: see check_may_confirm.
        with current_service().db.transaction() as session:
            return requests.confirm_request(
                session, request_id=request_id, confirmed_by=caller(), note=data.get("note")
            )


@blp.route("/categories")
class Categories(MethodView):
    @blp.response(200, CategorySchema(many=True))
    def get(self) -> Any:
        """List the service catalogue"""
        with current_service().db.read() as session:
            return directory.list_categories(session)

    @blp.arguments(CategorySchema)
    @blp.response(201, CategorySchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(409, description="A category with that code already exists")
    def post(self, data: dict[str, Any]) -> Any:
        """Add a category to the catalogue"""
        with current_service().db.transaction() as session:
            return directory.add_category(session, **data)


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


@blp.route("/residents/<resident_id>")
class Resident(MethodView):
    @blp.response(200, ResidentSchema)
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
            return directory.get_resident(session, resident_id)


enforce(POLICY, blp)
