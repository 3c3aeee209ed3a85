"""The event contract: every message between services, its queue, its fields, its version.

Publishers validate strictly (unknown fields are an error); consumers read the fields they
need and ignore the rest, so a publisher can add a field without a lock-step deploy. A breaking
change gets a new version of the event, and consumers handle both while the switch is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

INTAKE_QUEUE = "intake"
DISPATCH_QUEUE = "dispatch"
POINTS_QUEUE = "points"
NOTIFY_QUEUE = "notify"

PRIORITIES = ("low", "normal", "high", "urgent")
# A service category's code, as intake's catalogue names it and every service refers to it.
CATEGORY_CODE = r"^[a-z][a-z0-9_]{0,63}$"
Identifier = fields.Str  # ids are opaque strings: uuids here, other systems' keys elsewhere


class ContractError(ValueError):
    """A message does not match its event's contract."""

    def __init__(self, event: str, messages: Any) -> None:
        super().__init__(f"{event}: {messages}")
        self.event = event
        self.messages = messages


def _hours() -> fields.Decimal:
    """Hours of service, as a decimal string with two places, more than 0 and at most 24."""
    return fields.Decimal(
        required=True,
        as_string=True,
        places=2,
        validate=validate.Range(min=0, min_inclusive=False, max=24),
    )


def _category() -> fields.Str:
    return fields.Str(required=True, validate=validate.Regexp(CATEGORY_CODE))


class LocationSchema(Schema):
    community = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    building = fields.Str(required=True, validate=validate.Length(min=1, max=32))
    unit = fields.Str(required=True, validate=validate.Length(min=1, max=32))
    household = fields.Str(required=True, validate=validate.Length(min=1, max=32))


class RequestSubmittedSchema(Schema):
    request_id = Identifier(required=True)
    category = _category()
    priority = fields.Str(required=True, validate=validate.OneOf(PRIORITIES))
    summary = fields.Str(required=True)
    resident_id = Identifier(required=True)
    location = fields.Nested(LocationSchema, required=True)
    submitted_at = fields.AwareDateTime(required=True)


class RequestAssignedSchema(Schema):
    request_id = Identifier(required=True)
    assignment_id = Identifier(required=True)
    assignee_type = fields.Str(required=True, validate=validate.OneOf(("volunteer", "partner")))
    assignee_id = Identifier(required=True)
    assignee_name = fields.Str(required=True)
    assigned_at = fields.AwareDateTime(required=True)


class RequestUnroutedSchema(Schema):
    request_id = Identifier(required=True)
    reason = fields.Str(required=True)
    unrouted_at = fields.AwareDateTime(required=True)


class RequestAcceptedSchema(Schema):
    request_id = Identifier(required=True)
    assignment_id = Identifier(required=True)
    volunteer_id = Identifier(required=True)
    accepted_at = fields.AwareDateTime(required=True)


class RequestCompletedSchema(Schema):
    request_id = Identifier(required=True)
    assignment_id = Identifier(required=True)
    volunteer_id = Identifier(required=True)
    hours = _hours()
    completed_at = fields.AwareDateTime(required=True)


class RequestConfirmedSchema(Schema):
    request_id = Identifier(required=True)
    category = _category()
    resident_id = Identifier(required=True)
    volunteer_id = Identifier(required=True)
    hours = _hours()
    confirmed_at = fields.AwareDateTime(required=True)


class NotificationRequestedSchema(Schema):
    recipient = fields.Str(required=True, validate=validate.Regexp(r"^[a-z_]+:[A-Za-z0-9._:-]+$"))
    template = fields.Str(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_.]*$"))
    data = fields.Dict(keys=fields.Str(), load_default=dict)
    channel = fields.Str(load_default="inbox", validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))


@dataclass(frozen=True, eq=False)
class Event:
    """One message type: where it goes and what it carries."""

    name: str
    version: int
    queue: str
    schema: type[Schema]

    @property
    def actor_name(self) -> str:
        return f"{self.name}.v{self.version}"

    @cached_property
    def _strict(self) -> Schema:
        return self.schema(unknown=RAISE)

    @cached_property
    def _tolerant(self) -> Schema:
        return self.schema(unknown=EXCLUDE)

    def validate_outgoing(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check a payload strictly and return its JSON-ready form."""
        schema = self._strict
        try:
            loaded = schema.load(dict(data))
        except ValidationError as error:
            raise ContractError(self.name, error.messages) from error
        dumped: dict[str, Any] = schema.dump(loaded)
        return dumped

    def read_incoming(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Read the fields this version defines, ignoring any others."""
        try:
            loaded: dict[str, Any] = self._tolerant.load(dict(data))
        except ValidationError as error:
            raise ContractError(self.name, error.messages) from error
        return loaded


REQUEST_SUBMITTED = Event("request.submitted", 1, DISPATCH_QUEUE, RequestSubmittedSchema)
REQUEST_ASSIGNED = Event("request.assigned", 1, INTAKE_QUEUE, RequestAssignedSchema)
REQUEST_UNROUTED = Event("request.unrouted", 1, INTAKE_QUEUE, RequestUnroutedSchema)
REQUEST_ACCEPTED = Event("request.accepted", 1, INTAKE_QUEUE, RequestAcceptedSchema)
REQUEST_COMPLETED = Event("request.completed", 1, INTAKE_QUEUE, RequestCompletedSchema)
REQUEST_CONFIRMED = Event("request.confirmed", 1, POINTS_QUEUE, RequestConfirmedSchema)
NOTIFICATION_REQUESTED = Event(
    "notification.requested", 1, NOTIFY_QUEUE, NotificationRequestedSchema
)

ALL_EVENTS: tuple[Event, ...] = (
    REQUEST_SUBMITTED,
    REQUEST_ASSIGNED,
    REQUEST_UNROUTED,
    REQUEST_ACCEPTED,
    REQUEST_COMPLETED,
    REQUEST_CONFIRMED,
    NOTIFICATION_REQUESTED,
)
