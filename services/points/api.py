"""points' HTTP API: balances and entries of accounts, transfers and earning rates."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from services.points import ledger
from services.points.schemas import (
    AccountSchema,
    EntrySchema,
    RateSchema,
    RateUpdateSchema,
    TransferSchema,
)
from shared.auth import STAFF_ROLES
from shared.authentication import require
from shared.openapi import Blueprint
from shared.paging import paged
from shared.service_app import current_service

blp = Blueprint("points", __name__, url_prefix="/v1", description="The moral bank's ledger")
READERS = (*STAFF_ROLES, "volunteer")
# The same words for the same failure on every endpoint.
STAFF_ONLY = "The caller is not staff"
STAFF_OR_OWNER = "The caller is neither staff nor the account's volunteer"
NO_ACCOUNT = "No such account"


@blp.route("/accounts/<holder>")
class AccountBalance(MethodView):
    @blp.response(200, AccountSchema)
    @blp.alt_response(403, description=STAFF_OR_OWNER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    def get(self, holder: str) -> Any:
        """Show an account's balance"""
        principal = require(*READERS)
        with current_service().db.read() as session:
            return ledger.get_account(session, holder, viewer=principal)


@blp.route("/accounts/<holder>/entries")
class AccountEntries(MethodView):
    @blp.response(200, EntrySchema(many=True))
    @blp.alt_response(403, description=STAFF_OR_OWNER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.paginate()
    def get(self, holder: str, pagination_parameters: PaginationParameters) -> Any:
        """List an account's entries, newest first"""
        principal = require(*READERS)
        return paged(
            current_service().db,
            pagination_parameters,
            ledger.list_entries,
            holder=holder,
            viewer=principal,
        )


@blp.route("/transfers/<transfer_id>")
class TransferDetail(MethodView):
    @blp.response(200, TransferSchema)
    @blp.alt_response(403, description="The caller is neither staff nor a volunteer on either side")
    @blp.alt_response(404, description="No such transfer")
    def get(self, transfer_id: str) -> Any:
        """Show a transfer"""
        principal = require(*READERS)
        with current_service().db.read() as session:
            return ledger.get_transfer(session, transfer_id, viewer=principal)


@blp.route("/rates")
class Rates(MethodView):
    @blp.response(200, RateSchema(many=True))
    def get(self) -> Any:
        """List the earning rates"""
        require()
        with current_service().db.read() as session:
            return ledger.list_rates(session)


@blp.route("/rates/<category>")
class Rate(MethodView):
    @blp.arguments(RateUpdateSchema)
    @blp.response(200, RateSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(422, description="Invalid fields, or a category that is not a catalogue code")
    def put(self, data: dict[str, Any], category: str) -> Any:
        """Set a category's earning rate"""
        require(*STAFF_ROLES)
        with current_service().db.transaction() as session:
            return ledger.set_rate(session, category=category, **data)
