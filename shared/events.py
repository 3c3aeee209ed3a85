"""The event contract: every fact one service publishes, its fields and version, and apart
from it, which services subscribe to it.

An event is a published fact, not a command to one consumer: the publisher stages it once and
never names a consumer; the relay delivers a copy to the queue of every subscribing service,
all under the same message id. Adding a subscriber touches the subscriber and ``SUBSCRIPTIONS``.

Publishers validate strictly (unknown fields are an error); consumers read the fields they
need and ignore the rest, so a publisher can add a field without a lock-step deploy. A breaking
change gets a new version of the event, and consumers handle both while the switch is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from shared.contract import Contract
from shared.fields import FullMatch, hours_field
from shared.notifications import KINDS, check_notification
from shared.people import ADDRESS
from shared.topology import SERVICES

PRIORITIES = ("low", "normal", "high", "urgent")
# The most volunteers one piece of group work may credit.
MAX_PARTICIPANTS = 50
# A service category's code, as intake's catalogue names it and every service refers to it.
CATEGORY_CODE = r"^[a-z][a-z0-9_]{0,63}$"
Identifier = fields.Str  # ids are opaque strings: uuids here, other systems' keys elsewhere


class ContractError(ValueError):
    """A message does not match its event's contract."""

    def __init__(self, event: str, messages: Any) -> None:
        super().__init__(f"{event}: {messages}")
        self.event = event
        self.messages = messages


def _category() -> fields.Str:
    return fields.Str(required=True, validate=FullMatch(CATEGORY_CODE))


def _person(**kwargs: Any) -> fields.Str:
    """Who did a step, as an address (``volunteer:42``, ``staff:duty-officer``)."""
    return fields.Str(required=True, validate=FullMatch(ADDRESS), **kwargs)


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
    accepted_by = _person(metadata={"description": "The volunteer, or staff on their behalf"})
    accepted_at = fields.AwareDateTime(required=True)


class ParticipantSchema(Schema):
    """One volunteer who did a piece of group work, and the hours they gave to it."""

    volunteer_id = Identifier(required=True, validate=FullMatch(r"^[A-Za-z0-9._:-]{1,64}$"))
    hours = hours_field(required=True)
    volunteer_name = fields.Str(allow_none=True, validate=validate.Length(min=1, max=100))


def _participants(description: str) -> fields.List:
    return fields.List(
        fields.Nested(ParticipantSchema),
        validate=validate.Length(min=1, max=MAX_PARTICIPANTS),
        metadata={"description": description},
    )


def _named_once_with_the_volunteer(data: Mapping[str, Any]) -> None:
    """Each participant named once, the volunteer the request was assigned to among them."""
    named = [person["volunteer_id"] for person in data.get("participants") or ()]
    if not named:
        return
    if len(set(named)) < len(named):
        raise ValidationError("A volunteer is named twice", field_name="participants")
    if data.get("volunteer_id") not in named:
        raise ValidationError(
            "The volunteer the request was assigned to is not among them",
            field_name="participants",
        )


class RequestCompletedSchema(Schema):
    request_id = Identifier(required=True)
    assignment_id = Identifier(required=True)
    volunteer_id = Identifier(required=True)
    # Prices the hours, which points holds until the resident confirms them; optional, so a
    # publisher that does not send it yet is not refused (the confirmation credits them then).
    category = fields.Str(validate=FullMatch(CATEGORY_CODE))
    hours = hours_field(required=True)
    completed_by = _person(metadata={"description": "The volunteer, or staff on their behalf"})
    completed_at = fields.AwareDateTime(required=True)
    # Who did it and where, as dispatch knows them: for points' certificates and honour rolls.
    volunteer_name = fields.Str(allow_none=True, validate=validate.Length(min=1, max=100))
    team_id = fields.Str(allow_none=True, validate=FullMatch(r"^[A-Za-z0-9._:-]{1,64}$"))
    community = fields.Str(allow_none=True, validate=validate.Length(min=1, max=64))
    # Everyone who did the work, each with their own hours, the assigned volunteer among them.
    # Optional (an addition to version 1): a message without it was done by the volunteer
    # alone, for the request's hours.
    participants = _participants("Who did the work and their hours; the volunteer alone if absent")

    @validates_schema
    def _check_participants(self, data: dict[str, Any], **_: Any) -> None:
        _named_once_with_the_volunteer(data)

    @post_load
    def _alone_unless_told(self, loaded: dict[str, Any], **_: Any) -> dict[str, Any]:
        if not loaded.get("participants"):
            loaded["participants"] = [
                {
                    "volunteer_id": loaded["volunteer_id"],
                    "hours": loaded["hours"],
                    "volunteer_name": loaded.get("volunteer_name"),
                }
            ]
        return loaded


class RequestConfirmedSchema(Schema):
    request_id = Identifier(required=True)
    category = _category()
    resident_id = Identifier(required=True)
    volunteer_id = Identifier(required=True)
    hours = hours_field(required=True)
    confirmed_by = _person()
    # Who did the service's steps, as intake heard of them (None if it never did).
    accepted_by = _person(allow_none=True)
    completed_by = _person(allow_none=True)
    confirmed_at = fields.AwareDateTime(required=True)
    # Group work's participants as the completion named them, so that a confirmation reaching
    # points before the completion credits each of them. Optional (an addition to version 1):
    # absent, the volunteer did the work alone, or intake heard no more.
    participants = _participants("Who did the work and their hours, when more than one did")

    @validates_schema
    def _check_participants(self, data: dict[str, Any], **_: Any) -> None:
        _named_once_with_the_volunteer(data)


# The statuses a request is withdrawn from service in: cancelled (no longer needed), rejected
# (not served here) or closed as the duplicate of another.
WITHDRAWN_STATUSES = ("cancelled", "rejected", "closed")


class RequestWithdrawnSchema(Schema):
    request_id = Identifier(required=True)
    status = fields.Str(required=True, validate=validate.OneOf(WITHDRAWN_STATUSES))
    reason = fields.Str(required=True)
    withdrawn_by = _person(metadata={"description": "The resident, staff or the system"})
    withdrawn_at = fields.AwareDateTime(required=True)


class RequestReopenedSchema(Schema):
    request_id = Identifier(required=True)
    # The assignment it goes back to; None when it was never assigned.
    assignment_id = Identifier(required=True, allow_none=True)
    reason = fields.Str(required=True)
    reopened_by = _person()
    reopened_at = fields.AwareDateTime(required=True)


class EarningRefusedSchema(Schema):
    request_id = Identifier(required=True)
    volunteer_id = Identifier(required=True)
    reason = fields.Str(required=True)
    refused_at = fields.AwareDateTime(required=True)


class WebhookDeliveryDueSchema(Schema):
    """A webhook delivery of intake's is due to be tried: its own worker sends it."""

    delivery_id = fields.Int(required=True, strict=True, validate=validate.Range(min=1))


class NotificationRequestedSchema(Schema):
    """A notification of a declared kind: its ``data`` must carry exactly the kind's fields."""

    recipient = _person()
    template = fields.Str(
        required=True,
        validate=validate.OneOf(sorted(KINDS)),
        metadata={"description": "The notification's kind, which names its template"},
    )
    data = fields.Dict(keys=fields.Str(), load_default=dict)
    channel = fields.Str(load_default="inbox", validate=FullMatch(r"^[a-z][a-z0-9_]*$"))

    @post_load
    def _check_data(self, loaded: dict[str, Any], **_: Any) -> dict[str, Any]:
        # Strict where published (unknown data fields refused), tolerant where consumed.
        strict = self.unknown == RAISE
        loaded["data"] = check_notification(loaded["template"], loaded["data"], strict=strict)
        return loaded


@dataclass(frozen=True)
class Outgoing:
    """An event's payload as its contract checked it (``Event.outgoing``), ready to stage."""

    event: Event
    payload: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Event(Contract):
    """One kind of fact: its name, version and fields."""

    name: str
    version: int
    schema: type[Schema]

    @property
    def actor_name(self) -> str:
        return f"{self.name}.v{self.version}"

    def violation(self, messages: Any) -> ContractError:
        return ContractError(self.name, messages)

    def validate_outgoing(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check a payload strictly and return its JSON-ready form."""
        return self.checked(data, strict=True)

    def outgoing(self, data: Mapping[str, Any]) -> Outgoing:
        """A payload checked now, to be staged later (``Messaging.stage_outgoing``): a hot path
        checks it before its transaction, which then only writes it."""
        return Outgoing(self, self.validate_outgoing(data))

    def read_incoming(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Read the fields this version defines, ignoring any others."""
        return self.loaded(data)


REQUEST_SUBMITTED = Event("request.submitted", 1, RequestSubmittedSchema)
REQUEST_ASSIGNED = Event("request.assigned", 1, RequestAssignedSchema)
REQUEST_UNROUTED = Event("request.unrouted", 1, RequestUnroutedSchema)
REQUEST_ACCEPTED = Event("request.accepted", 1, RequestAcceptedSchema)
REQUEST_COMPLETED = Event("request.completed", 1, RequestCompletedSchema)
REQUEST_CONFIRMED = Event("request.confirmed", 1, RequestConfirmedSchema)
REQUEST_WITHDRAWN = Event("request.withdrawn", 1, RequestWithdrawnSchema)
REQUEST_REOPENED = Event("request.reopened", 1, RequestReopenedSchema)
EARNING_REFUSED = Event("earning.refused", 1, EarningRefusedSchema)
NOTIFICATION_REQUESTED = Event("notification.requested", 1, NotificationRequestedSchema)
WEBHOOK_DELIVERY_DUE = Event("webhook.delivery_due", 1, WebhookDeliveryDueSchema)

ALL_EVENTS: tuple[Event, ...] = (
    REQUEST_SUBMITTED,
    REQUEST_ASSIGNED,
    REQUEST_UNROUTED,
    REQUEST_ACCEPTED,
    REQUEST_COMPLETED,
    REQUEST_CONFIRMED,
    REQUEST_WITHDRAWN,
    REQUEST_REOPENED,
    EARNING_REFUSED,
    NOTIFICATION_REQUESTED,
    WEBHOOK_DELIVERY_DUE,
)

# Which services subscribe to each event. The relay delivers one copy to each one's queue.
SUBSCRIPTIONS: dict[Event, tuple[str, ...]] = {
    REQUEST_SUBMITTED: ("dispatch",),
    REQUEST_ASSIGNED: ("intake",),
    REQUEST_UNROUTED: ("intake",),
    REQUEST_ACCEPTED: ("intake",),
    # intake follows the request; points holds the hours' points until they are confirmed.
    REQUEST_COMPLETED: ("intake", "points"),
    # points credits the hours; dispatch closes the volunteer's assignment.
    REQUEST_CONFIRMED: ("points", "dispatch"),
    # dispatch withdraws the assignment of a request cancelled, rejected or merged away, and
    # gives a reopened one back to the volunteer who had it.
    REQUEST_WITHDRAWN: ("dispatch",),
    REQUEST_REOPENED: ("dispatch",),
    EARNING_REFUSED: ("intake",),
    NOTIFICATION_REQUESTED: ("notify",),
    # intake's own worker sends its webhook deliveries, outside the request that changed things.
    WEBHOOK_DELIVERY_DUE: ("intake",),
}
_BY_ACTOR = {event.actor_name: event for event in ALL_EVENTS}


def subscribers(event_name: str, version: int) -> tuple[str, ...]:
    """The services subscribed to an event; ContractError for an event nobody declared."""
    event = _BY_ACTOR.get(f"{event_name}.v{version}")
    if event is None:
        raise ContractError(event_name, f"version {version} is not in the contract")
    return SUBSCRIPTIONS[event]


def subscriptions_of(service: str) -> tuple[Event, ...]:
    """The events ``service`` subscribes to."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return tuple(event for event, services in SUBSCRIPTIONS.items() if service in services)
