"""What points' HTTP API accepts and returns. Strict: unknown fields are rejected. Points are
decimal strings, so no client ever reads them through a float."""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, fields

from services.points.ledger import MAX_RATE
from shared.fields import StrictDecimal
from shared.schemas import StrictSchema


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


class AccountSchema(Schema):
    holder = fields.Str(metadata={"example": "volunteer:42"})
    kind = fields.Str(metadata={"enum": ["holder", "issuance"]})
    balance = fields.Decimal(as_string=True)


class EntrySchema(Schema):
    transfer_id = fields.Str()
    kind = fields.Str(attribute="transfer.kind")
    amount = fields.Decimal(as_string=True, metadata={"description": "Negative when debited"})
    memo = fields.Str(attribute="transfer.memo")
    request_id = fields.Str(attribute="transfer.request_id", allow_none=True)
    created_at = fields.DateTime(attribute="transfer.created_at")


class TransferSchema(Schema):
    id = fields.Str(metadata={"example": "earn:6f1c0e"})
    kind = fields.Str()
    amount = fields.Decimal(as_string=True)
    debit = fields.Str(attribute="debit_account.holder")
    credit = fields.Str(attribute="credit_account.holder")
    memo = fields.Str()
    request_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()
