"""notify's HTTP API: the in-app inbox, the templates and the delivery log."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from services.notify import delivery
from services.notify.policy import POLICY, no_inbox, no_message
from services.notify.schemas import (
    DeliveryQuerySchema,
    DeliverySchema,
    InboxMessageSchema,
    InboxQuerySchema,
    TemplateSchema,
    TemplateUpdateSchema,
)
from shared.admission import caller, enforce, operation
from shared.openapi import Blueprint
from shared.paging import paged
from shared.service_app import current_service

blp = Blueprint(
    "notify",
    __name__,
    url_prefix="/v1",
    description="The in-app inbox, message templates and the delivery log",
)
# The same words for the same failure on every endpoint; who may do what is in policy.py.
NOT_STAFF = "The caller is not staff"


@blp.route("/inbox/<recipient>")
class Inbox(MethodView):
    @blp.arguments(InboxQuerySchema, location="query")
    @blp.response(200, InboxMessageSchema(many=True))
    @blp.alt_response(404, description="Not the caller's own inbox, and the caller is not staff")
    @blp.alt_response(422, description="Invalid query or paging parameters")
    @blp.paginate()
    def get(
        self, query: dict[str, Any], recipient: str, pagination_parameters: PaginationParameters
    ) -> Any:
        """List an inbox, newest first"""
        POLICY.check_owner(
            operation(), caller(), {"recipient": recipient}, hidden_as=no_inbox(recipient)
        )
        return paged(
            current_service().db,
            pagination_parameters,
            delivery.list_inbox,
            recipient=recipient,
            is_unread_only=query["unread"],
        )


@blp.route("/inbox/<recipient>/messages/<message_id>/read")
class MessageRead(MethodView):
    @blp.response(200, InboxMessageSchema)
    @blp.alt_response(
        404, description="No such message in this inbox, or not the caller's own inbox"
    )
    def post(self, recipient: str, message_id: str) -> Any:
        """Mark a message read"""
        POLICY.check_owner(
            operation(),
            caller(),
            {"recipient": recipient},
            hidden_as=no_message(recipient, message_id),
        )
        with current_service().db.transaction() as session:
            return delivery.mark_read(session, recipient=recipient, message_id=message_id)


@blp.route("/templates")
class Templates(MethodView):
    @blp.response(200, TemplateSchema(many=True))
    @blp.alt_response(403, description=NOT_STAFF)
    def get(self) -> Any:
        """List the message templates"""
        with current_service().db.read() as session:
            return delivery.list_templates(session)


@blp.route("/templates/<key>")
class Template(MethodView):
    @blp.response(200, TemplateSchema)
    @blp.alt_response(403, description=NOT_STAFF)
    @blp.alt_response(404, description="No template under this key")
    def get(self, key: str) -> Any:
        """Show a message template"""
        with current_service().db.read() as session:
            return delivery.get_template(session, key)

    @blp.arguments(TemplateUpdateSchema)
    @blp.response(200, TemplateSchema)
    @blp.alt_response(403, description=NOT_STAFF)
    @blp.alt_response(
        422,
        description="Invalid fields or key, or a template that does not parse, is unsafe, "
        "or is sure to render too much (the field names which part)",
    )
    def put(self, data: dict[str, Any], key: str) -> Any:
        """Create or replace a message template"""
        with current_service().db.transaction() as session:
            return delivery.save_template(session, key=key, **data)


@blp.route("/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliverySchema(many=True))
    @blp.alt_response(403, description=NOT_STAFF)
    @blp.alt_response(422, description="Invalid query or paging parameters")
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List the delivery log, newest first"""
        return paged(current_service().db, pagination_parameters, delivery.list_deliveries, **query)


enforce(POLICY, blp)
