"""What notify's HTTP API accepts and returns. Strict: unknown fields are rejected."""

from marshmallow import Schema, fields, validate

from services.notify.delivery import DELIVERY_STATUSES
from shared.fields import Flag, Line, Prose
from shared.schemas import StrictSchema


class InboxQuerySchema(StrictSchema):
    unread = Flag(load_default=False, metadata={"description": "Only messages not yet read"})


class InboxMessageSchema(Schema):
    id = fields.Str()
    recipient = fields.Str()
    template = fields.Str()
    subject = fields.Str()
    body = fields.Str()
    data = fields.Dict(keys=fields.Str())
    created_at = fields.DateTime()
    read_at = fields.DateTime(allow_none=True)
    is_read = fields.Bool()


class TemplateUpdateSchema(StrictSchema):
    # Text people read once rendered: the subject one line, neither blank nor holding control
    # or bidirectional characters, which rendering would pass on to every recipient.
    subject = Line(
        required=True,
        most=500,
        metadata={"description": "Jinja text of one line, rendered with the message's data"},
    )
    body = Prose(
        required=True,
        most=20_000,
        least=1,
        metadata={"description": "Jinja text, rendered with the message's data"},
    )


class TemplateSchema(Schema):
    key = fields.Str()
    channel = fields.Str()
    subject = fields.Str()
    body = fields.Str()
    updated_at = fields.DateTime()


class DeliveryQuerySchema(StrictSchema):
    recipient = Line(most=150)
    status = fields.Str(validate=validate.OneOf(DELIVERY_STATUSES))


class DeliverySchema(Schema):
    id = fields.Str()
    recipient = fields.Str()
    channel = fields.Str()
    template = fields.Str()
    status = fields.Str(metadata={"enum": list(DELIVERY_STATUSES)})
    error = fields.Str(allow_none=True)
    source_message_id = fields.Str(allow_none=True)
    at = fields.DateTime()
