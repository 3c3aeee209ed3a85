"""What points' HTTP API accepts and returns. Strict: unknown fields are rejected. Points are
decimal strings, so no client ever reads them through a float."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from services.points.catalogue import MAX_PERIOD_DAYS, MAX_QUANTITY, MAX_STOCK
from services.points.giving import MAX_RELATION
from services.points.ledger import (
    MAX_AMOUNT,
    MAX_RATE,
    MAX_TEXT,
    MAX_TIMEOUT,
    RESERVED_PREFIXES,
    reserved_prefix,
    why_reserved,
)
from services.points.models import (
    ACCOUNT_KINDS,
    ADJUST,
    CODES,
    DONATE,
    EXPIRY,
    GIFT,
    ITEM_KINDS,
    POST,
    REDEMPTION_STATUSES,
    VOID,
)
from services.points.periods import ZONE_NAME
from services.points.recognition import MAX_ROLL
from shared.events import CATEGORY_CODE
from shared.fields import (
    Flag,
    FullMatch,
    Instant,
    Line,
    Prose,
    StrictDecimal,
    WholeNumber,
    hours_field,
)
from shared.schemas import StrictSchema

# What staff may write by hand: earnings come from confirmed service, reversals and
# redemptions from their own operations.
WRITTEN_BY_HAND = (ADJUST, DONATE, GIFT, EXPIRY)
TRANSFER_ID = r"^[A-Za-z0-9._:-]{1,80}$"


def _not_reserved(transfer_id: str) -> None:
    """An id written by hand does not start as the ids the service gives its own transfers:
    one that did would later stand in the way of the real one (an earning, a redemption)."""
    prefix = reserved_prefix(transfer_id)
    if prefix is not None:
        raise ValidationError(why_reserved(prefix))


IDENTIFIER = r"^[A-Za-z0-9._:-]{1,64}$"
HOLDER = r"^[A-Za-z0-9._:-]{1,100}$"


def _points(**kwargs: Any) -> StrictDecimal:
    return StrictDecimal(
        places=2, minimum=Decimal(0), min_inclusive=False, maximum=MAX_AMOUNT, **kwargs
    )


def _text(**kwargs: Any) -> Prose:
    return Prose(least=1, most=MAX_TEXT, **kwargs)


class RateUpdateSchema(StrictSchema):
    points_per_hour = StrictDecimal(
        required=True,
        places=2,
        minimum=Decimal(0),
        min_inclusive=False,
        maximum=MAX_RATE,
        metadata={
            "description": "Points an hour of service earns; more than 0, 2 decimals at most",
            "example": "10.00",
        },
    )


class RateSchema(Schema):
    category = fields.Str()
    points_per_hour = fields.Decimal(as_string=True)
    updated_at = fields.DateTime()


class RateChangeSchema(Schema):
    category = fields.Str()
    points_per_hour = fields.Decimal(as_string=True)
    set_at = fields.DateTime()
    set_by = fields.Str(allow_none=True, metadata={"description": "Who set it, as an address"})


class AccountSchema(Schema):
    holder = fields.Str(metadata={"example": "volunteer:42"})
    kind = fields.Str(metadata={"enum": list(ACCOUNT_KINDS)})
    name = fields.Str(
        allow_none=True, metadata={"description": "The holder's name, once a service gave it"}
    )
    balance = fields.Decimal(as_string=True, metadata={"description": "Credits less debits posted"})
    available = fields.Decimal(
        as_string=True, metadata={"description": "The balance less what pending debits hold"}
    )
    debits_pending = fields.Decimal(as_string=True)
    credits_pending = fields.Decimal(as_string=True)


class EntrySchema(Schema):
    transfer_id = fields.Str()
    kind = fields.Str(attribute="transfer.kind")
    amount = fields.Decimal(as_string=True, metadata={"description": "Negative when debited"})
    memo = fields.Str(attribute="transfer.memo")
    request_id = fields.Str(attribute="transfer.request_id", allow_none=True)
    created_at = fields.DateTime(attribute="transfer.created_at")
    posted_at = fields.DateTime(
        metadata={"description": "When the points moved: as written, or as posted if pending"}
    )


class ResolutionSchema(Schema):
    outcome = fields.Str(metadata={"enum": ["posted", "voided", "expired"]})
    amount = fields.Decimal(as_string=True, metadata={"description": "What posting it moved"})
    hours = fields.Decimal(
        as_string=True, allow_none=True, metadata={"description": "The hours posting confirmed"}
    )
    operator = fields.Str(allow_none=True)
    reason = fields.Str(allow_none=True)
    resolved_at = fields.DateTime()


class TransferSchema(Schema):
    id = fields.Str(metadata={"example": "earn:6f1c0e"})
    kind = fields.Str(metadata={"enum": list(CODES)})
    amount = fields.Decimal(as_string=True)
    debit = fields.Str(attribute="debit_account.holder")
    credit = fields.Str(attribute="credit_account.holder")
    memo = fields.Str()
    request_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    status = fields.Str(metadata={"enum": ["pending", "posted", "voided", "expired"]})
    posted_amount = fields.Decimal(as_string=True, metadata={"description": "What it moved"})
    is_pending = fields.Bool(metadata={"description": "Written in two phases"})
    timeout_seconds = fields.Int(attribute="timeout_s", allow_none=True)
    on_timeout = fields.Str(allow_none=True, metadata={"enum": [POST, VOID]})
    category = fields.Str(allow_none=True)
    hours = fields.Decimal(as_string=True, allow_none=True)
    rate = fields.Decimal(as_string=True, allow_none=True)
    operator = fields.Str(allow_none=True)
    reason = fields.Str(allow_none=True)
    reverses = fields.Str(attribute="reverses_id", allow_none=True)
    resolution = fields.Nested(ResolutionSchema, allow_none=True)
    team_id = fields.Str(allow_none=True, metadata={"description": "The team an earning was for"})
    community = fields.Str(allow_none=True, metadata={"description": "Where it was served"})


class TransferQuerySchema(StrictSchema):
    holder = fields.Str(
        validate=FullMatch(HOLDER),
        metadata={"description": "Transfers on this account; volunteers see their own"},
    )
    kind = fields.Str(validate=validate.OneOf(CODES))
    request_id = fields.Str(validate=FullMatch(IDENTIFIER))


class TransferCreateSchema(StrictSchema):
    id = fields.Str(
        required=True,
        validate=[FullMatch(TRANSFER_ID), _not_reserved],
        metadata={
            "description": "Names the fact behind the transfer; asking again with the same id "
            "and fields finds it, with other fields is refused (409). Ids starting "
            f"{', '.join(RESERVED_PREFIXES)} (in any case) are the service's own (422)",
            "example": "adjust:2026-11-30:volunteer-42",
        },
    )
    kind = fields.Str(required=True, validate=validate.OneOf(WRITTEN_BY_HAND))
    debit = fields.Str(required=True, validate=FullMatch(HOLDER))
    credit = fields.Str(required=True, validate=FullMatch(HOLDER))
    amount = _points(required=True, metadata={"example": "10.00"})
    pending = Flag(
        load_default=False, metadata={"description": "Hold the points until posted or voided"}
    )
    timeout_seconds = WholeNumber(
        validate=validate.Range(min=1, max=int(MAX_TIMEOUT.total_seconds())),
        metadata={"description": "A pending transfer still unresolved this long after is ended"},
    )
    on_timeout = fields.Str(
        validate=validate.OneOf((POST, VOID)),
        metadata={"description": "What its timeout does to a pending transfer (void by default)"},
    )
    request_id = fields.Str(validate=FullMatch(IDENTIFIER))
    category = fields.Str(validate=FullMatch(CATEGORY_CODE))
    # Documented as a number with its bounds; a decimal string is read the same way.
    hours = hours_field(as_string=False)
    reason = _text(metadata={"description": "Why; required for adjustments and expiries"})
    memo = _text()

    @post_load
    def _order(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["is_pending"] = data.pop("pending")
        seconds = data.pop("timeout_seconds", None)
        if seconds is not None:
            data["timeout"] = timedelta(seconds=seconds)
        return data


class PostingSchema(StrictSchema):
    amount = _points(
        metadata={"description": "Post this part of it (the rest is released); all by default"}
    )
    reason = _text()


class VoidingSchema(StrictSchema):
    reason = _text(required=True)


class ReversalSchema(StrictSchema):
    reason = _text(required=True, metadata={"example": "Credited to the wrong volunteer"})


class CatalogueItemUpdateSchema(StrictSchema):
    name = Line(required=True, most=100)
    kind = fields.Str(required=True, validate=validate.OneOf(ITEM_KINDS))
    price = _points(required=True, metadata={"example": "8.00"})
    stock = WholeNumber(
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_STOCK),
        metadata={"description": "How many are left; none when it is not counted"},
    )
    limit_per_person = WholeNumber(
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": "At most this many per person (in each period, if one)"},
    )
    limit_period_days = WholeNumber(
        allow_none=True, validate=validate.Range(min=1, max=MAX_PERIOD_DAYS)
    )
    available_from = Instant(allow_none=True)
    available_until = Instant(allow_none=True)
    is_active = Flag(load_default=True)


class CatalogueItemSchema(Schema):
    id = fields.Str(metadata={"example": "rice-5kg"})
    name = fields.Str()
    kind = fields.Str(metadata={"enum": list(ITEM_KINDS)})
    price = fields.Decimal(as_string=True)
    stock = fields.Int(allow_none=True)
    limit_per_person = fields.Int(allow_none=True)
    limit_period_days = fields.Int(allow_none=True)
    available_from = fields.DateTime(allow_none=True)
    available_until = fields.DateTime(allow_none=True)
    is_active = fields.Bool()
    updated_at = fields.DateTime()


class CatalogueQuerySchema(StrictSchema):
    kind = fields.Str(validate=validate.OneOf(ITEM_KINDS))


class RedemptionCreateSchema(StrictSchema):
    id = fields.Str(
        required=True,
        validate=FullMatch(IDENTIFIER),
        metadata={
            "description": "Names this redemption; asking again with it finds it",
            "example": "r-2026-12-01-0007",
        },
    )
    item_id = fields.Str(required=True, validate=FullMatch(IDENTIFIER))
    holder = fields.Str(
        required=True,
        validate=FullMatch(HOLDER),
        metadata={"description": "Whose points pay: a volunteer's own, or any member's for staff"},
    )
    quantity = WholeNumber(load_default=1, validate=validate.Range(min=1, max=MAX_QUANTITY))


class RedemptionSchema(Schema):
    id = fields.Str()
    item_id = fields.Str()
    item_name = fields.Str(attribute="item.name")
    holder = fields.Str()
    quantity = fields.Int()
    points = fields.Decimal(as_string=True)
    status = fields.Str(metadata={"enum": list(REDEMPTION_STATUSES)})
    transfer_id = fields.Str()
    operator = fields.Str(allow_none=True)
    reason = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)


class RedemptionQuerySchema(StrictSchema):
    holder = fields.Str(
        validate=FullMatch(HOLDER), metadata={"description": "Volunteers see their own"}
    )
    item_id = fields.Str(validate=FullMatch(IDENTIFIER))
    status = fields.Str(validate=validate.OneOf(REDEMPTION_STATUSES))


class CancellationSchema(StrictSchema):
    reason = _text(required=True, metadata={"example": "Out of rice this week"})


# Statements, certificates and honour rolls


class PeriodQuerySchema(StrictSchema):
    first = fields.Date(
        required=True,
        data_key="from",
        metadata={"description": "The period's first day", "example": "2026-01-01"},
    )
    last = fields.Date(
        required=True,
        data_key="to",
        metadata={"description": "The period's last day, included", "example": "2026-12-31"},
    )
    zone = fields.Str(
        data_key="tz",
        load_default="UTC",
        validate=FullMatch(ZONE_NAME),
        metadata={"description": "The time zone its days are days of", "example": "Asia/Shanghai"},
    )


JSON, CSV, PDF = "json", "csv", "pdf"


class StatementQuerySchema(PeriodQuerySchema):
    format = fields.Str(
        validate=validate.OneOf((JSON, CSV)),
        metadata={"description": "json or csv; by default what the Accept header prefers"},
    )


class CertificateQuerySchema(PeriodQuerySchema):
    format = fields.Str(
        validate=validate.OneOf((JSON, PDF)),
        metadata={"description": "json or pdf; by default what the Accept header prefers"},
    )


class HonourRollQuerySchema(PeriodQuerySchema):
    team = fields.Str(
        validate=FullMatch(IDENTIFIER),
        metadata={"description": "Only the hours served for this team"},
    )
    limit = WholeNumber(text=True, load_default=10, validate=validate.Range(min=1, max=MAX_ROLL))


class _PeriodSchema(Schema):
    first = fields.Date(attribute="period.first", data_key="from")
    last = fields.Date(attribute="period.last", data_key="to")
    time_zone = fields.Str(attribute="period.zone")


class StatementLineSchema(Schema):
    posted_at = fields.DateTime()
    transfer_id = fields.Str()
    kind = fields.Str(metadata={"enum": list(CODES)})
    counterparty = fields.Str(metadata={"description": "The account on the other side"})
    amount = fields.Decimal(as_string=True, metadata={"description": "Negative when debited"})
    balance = fields.Decimal(as_string=True, metadata={"description": "The balance after it"})
    memo = fields.Str()
    request_id = fields.Str(allow_none=True)


class StatementSchema(_PeriodSchema):
    holder = fields.Str()
    kind = fields.Str(metadata={"enum": list(ACCOUNT_KINDS)})
    opening_balance = fields.Decimal(
        as_string=True, metadata={"description": "The balance as the first day began"}
    )
    closing_balance = fields.Decimal(
        as_string=True, metadata={"description": "The balance as the last day ended"}
    )
    credits = fields.Decimal(as_string=True)
    debits = fields.Decimal(as_string=True)
    entries = fields.List(fields.Nested(StatementLineSchema), attribute="lines")


class CategoryHoursSchema(Schema):
    category = fields.Str()
    services = fields.Int()
    hours = fields.Decimal(as_string=True)
    points = fields.Decimal(as_string=True)


class CertificateSchema(_PeriodSchema):
    holder = fields.Str()
    name = fields.Str(allow_none=True)
    communities = fields.List(fields.Str(), metadata={"description": "Where it was served"})
    categories = fields.List(fields.Nested(CategoryHoursSchema))
    total_services = fields.Int()
    total_hours = fields.Decimal(as_string=True)
    total_points = fields.Decimal(as_string=True)
    issued_at = fields.DateTime()


class HonourSchema(Schema):
    rank = fields.Int()
    holder = fields.Str()
    name = fields.Str(allow_none=True)
    services = fields.Int()
    hours = fields.Decimal(as_string=True)
    points = fields.Decimal(as_string=True)


class HonourRollSchema(_PeriodSchema):
    team = fields.Str(attribute="team_id", allow_none=True)
    honours = fields.List(fields.Nested(HonourSchema))


# Giving


class DonationCreateSchema(StrictSchema):
    id = fields.Str(
        required=True,
        validate=FullMatch(IDENTIFIER),
        metadata={
            "description": "Names this donation; asking again with it finds it",
            "example": "d-2026-12-01-1",
        },
    )
    amount = _points(required=True, metadata={"example": "5.00"})
    memo = _text()


class GiftCreateSchema(DonationCreateSchema):
    to = fields.Str(
        required=True,
        validate=FullMatch(HOLDER),
        metadata={"description": "Family recorded for the giver", "example": "household:h-501"},
    )


class FamilyLinkUpdateSchema(StrictSchema):
    relation = Line(required=True, most=MAX_RELATION, metadata={"example": "mother"})


class FamilyLinkSchema(Schema):
    holder = fields.Str()
    relative = fields.Str()
    relation = fields.Str()
    recorded_by = fields.Str(allow_none=True)
    recorded_at = fields.DateTime()
