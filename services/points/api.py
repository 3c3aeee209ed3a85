"""points' HTTP API: balances and entries of accounts, transfers and earning rates."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from services.points import ledger
from services.points.policy import POLICY, no_account, no_transfer
from services.points.schemas import (
    AccountSchema,
    EntrySchema,
    RateSchema,
    RateUpdateSchema,
    TransferSchema,
)
from shared.admission import caller, enforce, operation
from shared.openapi import Blueprint
from shared.paging import paged
from shared.service_app import current_service

blp = Blueprint("points", __name__, url_prefix="/v1", description="The moral bank's ledger")
# The same words for the same failure on every endpoint; who may do what is in policy.py.
STAFF_ONLY = "The caller is not staff"
STAFF_OR_VOLUNTEER = "The caller is neither staff nor a volunteer"
NO_ACCOUNT = "No such account, or a volunteer asked for someone else's"


@blp.route("/accounts/<holder>")
class AccountBalance(MethodView):
    @blp.response(200, AccountSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    def get(self, holder: str) -> Any:
        """Show an account's balance"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        with current_service().db.read() as session:
            return ledger.get_account(session, holder)


@blp.route("/accounts/<holder>/entries")
class AccountEntries(MethodView):
    @blp.response(200, EntrySchema(many=True))
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.paginate()
    def get(self, holder: str, pagination_parameters: PaginationParameters) -> Any:
        """List an account's entries, newest first"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        return paged(
            current_service().db, pagination_parameters, ledger.list_entries, holder=holder
        )


@blp.route("/transfers/<transfer_id>")
class TransferDetail(MethodView):
    @blp.response(200, TransferSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(
        404, description="No such transfer, or a volunteer asked for one between others"
    )
    def get(self, transfer_id: str) -> Any:
        """Show a transfer"""
        with current_service().db.read() as session:
            transfer = ledger.get_transfer(session, transfer_id)
            POLICY.check_owner(operation(), caller(), transfer, hidden_as=no_transfer(transfer_id))
            return transfer


@blp.route("/rates")
class Rates(MethodView):
    @blp.response(200, RateSchema(many=True))
    def get(self) -> Any:
        """List the earning rates"""
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
        with current_service().db.transaction() as session:
            return ledger.set_rate(session, category=category, **data)


enforce(POLICY, blp)
