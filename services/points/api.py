"""points' HTTP API: balances, entries and statements of accounts, service-hours certificates
and honour rolls, donations and gifts with the family register, transfers (written, posted,
voided, reversed), earning rates with their history, the catalogue and redemptions."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters
from sqlalchemy.orm import Session

from services.points import (
    catalogue,
    earning,
    giving,
    ledger,
    printing,
    recognition,
    statements,
)
from services.points.config import giving_policy
from services.points.policy import POLICY, no_account, no_transfer
from services.points.schemas import (
    CSV,
    JSON,
    PDF,
    AccountSchema,
    CancellationSchema,
    CatalogueItemSchema,
    CatalogueItemUpdateSchema,
    CatalogueQuerySchema,
    CertificateQuerySchema,
    CertificateSchema,
    DonationCreateSchema,
    EntrySchema,
    FamilyLinkSchema,
    FamilyLinkUpdateSchema,
    GiftCreateSchema,
    HonourRollQuerySchema,
    HonourRollSchema,
    PostingSchema,
    RateChangeSchema,
    RateSchema,
    RateUpdateSchema,
    RedemptionCreateSchema,
    RedemptionQuerySchema,
    RedemptionSchema,
    ReversalSchema,
    StatementQuerySchema,
    StatementSchema,
    TransferCreateSchema,
    TransferQuerySchema,
    TransferSchema,
    VoidingSchema,
)
from shared.admission import caller, enforce, operation
from shared.openapi import Blueprint
from shared.paging import paged
from shared.service_app import current_service

blp = Blueprint("points", __name__, url_prefix="/v1", description="The moral bank's ledger")
# The same words for the same failure on every endpoint; who may do what is in policy.py.
STAFF_ONLY = "The caller is not staff"
STAFF_OR_VOLUNTEER = "The caller is neither staff nor a volunteer (a team lead is one)"
NO_ACCOUNT = "No such account, or a volunteer asked for someone else's"
NO_TRANSFER = "No such transfer"
REFUSED = (
    "The ledger refuses it as things stand: too few points available, an id that names a "
    "different transfer (the problem's field says which), or a pending transfer ended already"
)
RESOLUTION_REFUSED = (
    "A transfer that holds a redemption's points (owned-by-redemption), which only the "
    "redemption's fulfilment or cancellation resolves; a volunteer's earning (owned-by-earning), "
    "which only the resident's confirmation or its deadline resolves; or a pending transfer "
    "that ended already otherwise than asked (the same posting or voiding asked again is "
    "answered with it)"
)


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


MIMETYPES = {JSON: "application/json", CSV: "text/csv", PDF: "application/pdf"}
PERIOD_INVALID = (
    "Invalid query: days out of order or range, an unknown time zone, or too many entries"
)


def _wanted(query: dict[str, Any], *offered: str) -> str:
    """The format a read is answered in: the ``format`` asked for, or the one of ``offered``
    (JSON first) the Accept header prefers."""
    if "format" in query:
        return str(query.pop("format"))
    best = request.accept_mimetypes.best_match([MIMETYPES[name] for name in offered])
    return next((name for name in offered if MIMETYPES[name] == best), offered[0])


def _file(body: str | bytes, kind: str, name: str) -> Response:
    """A file to keep, named ``name`` (an account's holder is written with ``-`` for ``:``)."""
    filename = name.replace(":", "-")
    return Response(
        body,
        mimetype=MIMETYPES[kind],
        headers={"Content-Disposition": f'attachment; filename="{filename}.{kind}"'},
    )


@blp.route("/accounts/<holder>/statement")
class AccountStatement(MethodView):
    @blp.arguments(StatementQuerySchema, location="query")
    @blp.response(200, StatementSchema)
    @blp.alt_response(
        200,
        schema={"type": "string"},
        content_type="text/csv",
        description="The statement as CSV: a header row, the opening balance, the entries, "
        "the closing balance",
        success=True,
    )
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.alt_response(422, description=PERIOD_INVALID)
    def get(self, query: dict[str, Any], holder: str) -> Any:
        """Show an account's statement for a period, as JSON or CSV"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        kind = _wanted(query, JSON, CSV)
        with current_service().db.read() as session:
            statement = statements.statement_of(session, holder=holder, **query)
        if kind == CSV:
            name = f"statement-{holder}-{statement.period.first}-{statement.period.last}"
            return _file(printing.statement_csv(statement), CSV, name)
        return statement


@blp.route("/accounts/<holder>/certificate")
class ServiceCertificate(MethodView):
    @blp.arguments(CertificateQuerySchema, location="query")
    @blp.response(200, CertificateSchema)
    @blp.alt_response(
        200,
        schema={"type": "string", "format": "binary"},
        content_type="application/pdf",
        description="The certificate as a PDF to print",
        success=True,
    )
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.alt_response(422, description=PERIOD_INVALID)
    def get(self, query: dict[str, Any], holder: str) -> Any:
        """Show a volunteer's confirmed service hours by category, as JSON or a PDF"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        kind = _wanted(query, JSON, PDF)
        with current_service().db.read() as session:
            certificate = recognition.certificate_of(session, holder=holder, **query)
        if kind == PDF:
            name = f"service-hours-{holder}-{certificate.period.first}-{certificate.period.last}"
            return _file(printing.certificate_pdf(certificate), PDF, name)
        return certificate


@blp.route("/honour-roll")
class HonourRoll(MethodView):
    @blp.arguments(HonourRollQuerySchema, location="query")
    @blp.response(200, HonourRollSchema)
    @blp.alt_response(422, description=PERIOD_INVALID)
    def get(self, query: dict[str, Any]) -> Any:
        """List the volunteers who gave the most confirmed hours in a period"""
        with current_service().db.read() as session:
            return recognition.honour_roll(
                session,
                first=query["first"],
                last=query["last"],
                zone=query["zone"],
                team_id=query.get("team"),
                limit=query["limit"],
            )


GIVING_REFUSED = (
    "Too few points available, over the gifts' limit, not recorded family, or an id that "
    "names a different gift or donation"
)


@blp.route("/accounts/<holder>/donations")
class Donations(MethodView):
    @blp.arguments(DonationCreateSchema)
    @blp.response(201, TransferSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.alt_response(409, description=GIVING_REFUSED)
    @blp.alt_response(422, description="Invalid fields, or an account that is not a member's")
    def post(self, data: dict[str, Any], holder: str) -> Any:
        """Donate points to the community pool"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        with current_service().db.transaction() as session:
            return giving.donate(
                session,
                donation_id=data["id"],
                holder=holder,
                amount=data["amount"],
                memo=data.get("memo"),
                operator=caller().address,
            )


@blp.route("/accounts/<holder>/gifts")
class Gifts(MethodView):
    @blp.arguments(GiftCreateSchema)
    @blp.response(201, TransferSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.alt_response(409, description=GIVING_REFUSED)
    @blp.alt_response(
        422, description="Invalid fields, a gift over the limit of one, or not between two members"
    )
    def post(self, data: dict[str, Any], holder: str) -> Any:
        """Give points to family the community office recorded"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        with current_service().db.transaction() as session:
            return giving.give(
                session,
                gift_id=data["id"],
                holder=holder,
                relative=data["to"],
                amount=data["amount"],
                memo=data.get("memo"),
                operator=caller().address,
                policy=giving_policy(),
            )


@blp.route("/accounts/<holder>/family")
class Family(MethodView):
    @blp.response(200, FamilyLinkSchema(many=True))
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ACCOUNT)
    @blp.alt_response(422, description="An account that is not a member's")
    def get(self, holder: str) -> Any:
        """List the family a member may give points to"""
        POLICY.check_owner(operation(), caller(), {"holder": holder}, hidden_as=no_account(holder))
        with current_service().db.read() as session:
            return giving.list_family(session, holder=holder)


@blp.route("/accounts/<holder>/family/<relative>")
class FamilyMember(MethodView):
    @blp.arguments(FamilyLinkUpdateSchema)
    @blp.response(200, FamilyLinkSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(422, description="Invalid fields, or not two different members")
    def put(self, data: dict[str, Any], holder: str, relative: str) -> Any:
        """Record family a member may give points to"""
        with current_service().db.transaction() as session:
            return giving.record_relative(
                session,
                holder=holder,
                relative=relative,
                relation=data["relation"],
                recorded_by=caller().address,
            )

    @blp.response(200, FamilyLinkSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="Not recorded as the member's family")
    def delete(self, holder: str, relative: str) -> Any:
        """Stop a member giving points to someone recorded as their family"""
        with current_service().db.transaction() as session:
            return giving.forget_relative(session, holder=holder, relative=relative)


@blp.route("/transfers")
class Transfers(MethodView):
    @blp.arguments(TransferQuerySchema, location="query")
    @blp.response(200, TransferSchema(many=True))
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List transfers, newest first"""
        query.update(POLICY.scope(operation(), caller()))
        return paged(current_service().db, pagination_parameters, ledger.list_transfers, **query)

    @blp.arguments(TransferCreateSchema)
    @blp.response(201, TransferSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(409, description=REFUSED)
    @blp.alt_response(422, description="Invalid fields, or accounts the kind does not move between")
    def post(self, data: dict[str, Any]) -> Any:
        """Write a transfer: an adjustment, a gift, a donation or an expiry"""
        order = ledger.TransferOrder(**data, operator=caller().address)
        with current_service().db.transaction() as session:
            return ledger.create_transfer(session, order=order, by_hand=True)


def _refuse_if_owned(session: Session, transfer_id: str) -> None:
    """Refuse to post or void by hand what a redemption or an earning resolves itself."""
    catalogue.refuse_if_owned(session, transfer_id)
    earning.refuse_by_hand(session, transfer_id)


@blp.route("/transfers/<transfer_id>/posting")
class TransferPosting(MethodView):
    @blp.arguments(PostingSchema)
    @blp.response(200, TransferSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description=NO_TRANSFER)
    @blp.alt_response(409, description=RESOLUTION_REFUSED)
    def post(self, data: dict[str, Any], transfer_id: str) -> Any:
        """Post a pending transfer, in whole or in part"""
        with current_service().db.transaction() as session:
            _refuse_if_owned(session, transfer_id)
            return ledger.post_pending(
                session, transfer_id=transfer_id, operator=caller().address, **data
            )


@blp.route("/transfers/<transfer_id>/voiding")
class TransferVoiding(MethodView):
    @blp.arguments(VoidingSchema)
    @blp.response(200, TransferSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description=NO_TRANSFER)
    @blp.alt_response(409, description=RESOLUTION_REFUSED)
    def post(self, data: dict[str, Any], transfer_id: str) -> Any:
        """Void a pending transfer: what it holds is released"""
        with current_service().db.transaction() as session:
            _refuse_if_owned(session, transfer_id)
            return ledger.void_pending(
                session, transfer_id=transfer_id, operator=caller().address, **data
            )


@blp.route("/transfers/<transfer_id>/reversal")
class TransferReversal(MethodView):
    @blp.arguments(ReversalSchema)
    @blp.response(201, TransferSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description=NO_TRANSFER)
    @blp.alt_response(409, description=REFUSED)
    def post(self, data: dict[str, Any], transfer_id: str) -> Any:
        """Reverse a transfer, once, with a reason: the reversal moves its points back"""
        with current_service().db.transaction() as session:
            return ledger.reverse_transfer(
                session, transfer_id=transfer_id, operator=caller().address, **data
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
            return ledger.set_rate(session, category=category, set_by=caller().address, **data)


@blp.route("/rates/<category>/history")
class RateHistory(MethodView):
    @blp.response(200, RateChangeSchema(many=True))
    @blp.alt_response(422, description="A category that is not a catalogue code")
    @blp.paginate()
    def get(self, category: str, pagination_parameters: PaginationParameters) -> Any:
        """List the rates a category was given, newest first"""
        return paged(
            current_service().db, pagination_parameters, ledger.list_rate_changes, category=category
        )


@blp.route("/catalogue")
class Catalogue(MethodView):
    @blp.arguments(CatalogueQuerySchema, location="query")
    @blp.response(200, CatalogueItemSchema(many=True))
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List what points buy, by name"""
        return paged(current_service().db, pagination_parameters, catalogue.list_items, **query)


@blp.route("/catalogue/<item_id>")
class CatalogueItem(MethodView):
    @blp.response(200, CatalogueItemSchema)
    @blp.alt_response(404, description="No such item")
    def get(self, item_id: str) -> Any:
        """Show a catalogue item"""
        with current_service().db.read() as session:
            return catalogue.get_item(session, item_id)

    @blp.arguments(CatalogueItemUpdateSchema)
    @blp.response(200, CatalogueItemSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(422, description="Invalid fields")
    def put(self, data: dict[str, Any], item_id: str) -> Any:
        """Add an item to the catalogue or change it: price, stock, limit, when it can be had"""
        with current_service().db.transaction() as session:
            return catalogue.put_item(session, item_id=item_id, **data)


NO_REDEMPTION = "No such redemption, or a volunteer asked for someone else's"


@blp.route("/redemptions")
class Redemptions(MethodView):
    @blp.arguments(RedemptionQuerySchema, location="query")
    @blp.response(200, RedemptionSchema(many=True))
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List redemptions, newest first"""
        query.update(POLICY.scope(operation(), caller()))
        return paged(
            current_service().db, pagination_parameters, catalogue.list_redemptions, **query
        )

    @blp.arguments(RedemptionCreateSchema)
    @blp.response(201, RedemptionSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description="No such item, or a volunteer named another's account")
    @blp.alt_response(
        409,
        description="Too few points available, too little stock, over the limit per person, "
        "not to be had now, or an id that names a different redemption",
    )
    def post(self, data: dict[str, Any]) -> Any:
        """Redeem points for an item: its stock and the points are reserved together"""
        holder = data["holder"]
        POLICY.check_owner(operation(), caller(), data, hidden_as=no_account(holder))
        with current_service().db.transaction() as session:
            return catalogue.redeem(
                session,
                redemption_id=data["id"],
                item_id=data["item_id"],
                holder=holder,
                quantity=data["quantity"],
                operator=caller().address,
            )


@blp.route("/redemptions/<redemption_id>")
class RedemptionDetail(MethodView):
    @blp.response(200, RedemptionSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_REDEMPTION)
    def get(self, redemption_id: str) -> Any:
        """Show a redemption"""
        with current_service().db.read() as session:
            redemption = catalogue.get_redemption(session, redemption_id)
            POLICY.check_owner(
                operation(),
                caller(),
                redemption,
                hidden_as=catalogue.no_redemption(redemption_id),
            )
            return redemption


@blp.route("/redemptions/<redemption_id>/fulfilment")
class RedemptionFulfilment(MethodView):
    @blp.response(200, RedemptionSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such redemption")
    @blp.alt_response(409, description="The redemption was cancelled")
    def post(self, redemption_id: str) -> Any:
        """Hand a redeemed item over: the points held for it are paid"""
        with current_service().db.transaction() as session:
            return catalogue.fulfil(session, redemption_id=redemption_id, operator=caller().address)


@blp.route("/redemptions/<redemption_id>/cancellation")
class RedemptionCancellation(MethodView):
    @blp.arguments(CancellationSchema)
    @blp.response(200, RedemptionSchema)
    @blp.alt_response(403, description=STAFF_ONLY)
    @blp.alt_response(404, description="No such redemption")
    @blp.alt_response(409, description="The item was handed over already")
    def post(self, data: dict[str, Any], redemption_id: str) -> Any:
        """Cancel a redemption: the points are released and the stock put back"""
        with current_service().db.transaction() as session:
            return catalogue.cancel(
                session, redemption_id=redemption_id, operator=caller().address, **data
            )


enforce(POLICY, blp)
