"""The kinds of notification services may ask notify to send, each with its typed fields.

A kind's key names its template; a template may use exactly the fields its kind declares. A
publisher that sends a field its kind does not declare, or leaves one out, fails where it
publishes, not as a dead letter in notify; notify refuses a template that uses a field its kind
does not declare when the template is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields

from shared.contract import Contract


class _Location(Schema):
    community = fields.Str(required=True)
    building = fields.Str(required=True)
    unit = fields.Str(required=True)
    household = fields.Str(required=True)


class AssignmentCreatedSchema(Schema):
    request_id = fields.Str(required=True)
    assignment_id = fields.Str(required=True)
    category = fields.Str(required=True)
    summary = fields.Str(required=True)
    location = fields.Nested(_Location, required=True)
    priority = fields.Str(required=True)


class RequestAcceptedSchema(Schema):
    request_id = fields.Str(required=True)
    volunteer_name = fields.Str(required=True)
    category = fields.Str(required=True)
    summary = fields.Str(required=True)


class RequestCompletedSchema(Schema):
    request_id = fields.Str(required=True)
    volunteer_name = fields.Str(required=True)
    category = fields.Str(required=True)
    hours = fields.Decimal(required=True, as_string=True)


class PointsCreditedSchema(Schema):
    request_id = fields.Str(required=True)
    points = fields.Decimal(required=True, as_string=True)
    balance = fields.Decimal(required=True, as_string=True)
    hours = fields.Decimal(required=True, as_string=True)
    category = fields.Str(required=True)


class PointsExpiringSchema(Schema):
    points = fields.Decimal(required=True, as_string=True)
    expires_on = fields.Date(required=True)
    balance = fields.Decimal(required=True, as_string=True)


class NotificationError(ValueError):
    """A notification's data does not fit its kind."""

    def __init__(self, kind: str, messages: Any) -> None:
        super().__init__(f"{kind}: {messages}")
        self.kind = kind
        self.messages = messages


@dataclass(frozen=True, eq=False)
class NotificationKind(Contract):
    key: str
    description: str
    schema: type[Schema]

    def violation(self, messages: Any) -> NotificationError:
        return NotificationError(self.key, messages)

    def check(self, data: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
        """The data, checked against the kind's fields, in its JSON-ready form."""
        return self.checked(data, strict=strict)

    def sample(self) -> dict[str, Any]:
        """Data of the right types for every field, as notify receives it, to try a template."""
        return self.check(_sample(self.schema()))


ASSIGNMENT_CREATED = NotificationKind(
    "assignment.created", "A volunteer is given a new request", AssignmentCreatedSchema
)
REQUEST_ACCEPTED = NotificationKind(
    "request.accepted", "The resident learns who took their request", RequestAcceptedSchema
)
REQUEST_COMPLETED = NotificationKind(
    "request.completed",
    "The resident is asked to confirm the work was done",
    RequestCompletedSchema,
)
POINTS_CREDITED = NotificationKind(
    "points.credited", "A volunteer earned points for confirmed hours", PointsCreditedSchema
)
POINTS_EXPIRING = NotificationKind(
    "points.expiring",
    "A member is told ahead of the day their unused points expire",
    PointsExpiringSchema,
)
KINDS: dict[str, NotificationKind] = {
    kind.key: kind
    for kind in (
        ASSIGNMENT_CREATED,
        REQUEST_ACCEPTED,
        REQUEST_COMPLETED,
        POINTS_CREDITED,
        POINTS_EXPIRING,
    )
}


def kind_of(key: str) -> NotificationKind:
    kind = KINDS.get(key)
    if kind is None:
        raise NotificationError(key, f"no such kind of notification; kinds: {sorted(KINDS)}")
    return kind


def check_notification(key: str, data: Mapping[str, Any], *, strict: bool) -> dict[str, Any]:
    """``data`` checked against the fields of the kind ``key`` names (marshmallow's error)."""
    try:
        return kind_of(key).check(data, strict=strict)
    except NotificationError as error:
        raise ValidationError({"data": error.messages}) from error


def _sample(schema: Schema) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in schema.fields.items():
        if isinstance(field, fields.Nested):
            nested = field.schema
            values[name] = _sample(nested if isinstance(nested, Schema) else nested())
        elif isinstance(field, fields.Decimal):
            values[name] = Decimal("12.50")
        elif isinstance(field, fields.Integer):
            values[name] = 3
        elif isinstance(field, fields.Date):
            values[name] = date(2026, 1, 31)
        elif isinstance(field, fields.DateTime):
            values[name] = datetime(2026, 1, 31, 8, 30, tzinfo=UTC)
        elif isinstance(field, fields.Boolean):
            values[name] = True
        else:
            values[name] = f"sample {name}"
    return values
