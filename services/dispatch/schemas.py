"""What dispatch's HTTP API accepts and returns. Strict: unknown fields are rejected."""

from typing import Any

from marshmallow import Schema, fields, post_load, validate

from services.dispatch.routing import STATUSES, Participant
from shared.events import CATEGORY_CODE, MAX_PARTICIPANTS
from shared.fields import FullMatch, Line, Prose, WholeNumber, hours_field
from shared.schemas import StrictSchema

# The category codes of intake's service catalogue, as the events that carry them spell them
# (shared.events.CATEGORY_CODE, the pattern intake checks its catalogue's codes with). Read as a
# ``Line``: the pattern's ``$`` also matches before a final newline, which a line refuses.
CATEGORY = FullMatch(CATEGORY_CODE, error="Not a category code.")
# Digits, spaces, and the marks people write numbers with: +86 138-0000-0000, (010) 6543 2100.
PHONE = r"^\+?[0-9][0-9 ()-]{0,31}$"


class TeamCreateSchema(StrictSchema):
    name = Line(required=True, most=100)
    description = Prose(load_default="", most=2000)


class TeamUpdateSchema(StrictSchema):
    name = Line(most=100)
    description = Prose(most=2000)
    lead_volunteer_id = fields.Str(
        allow_none=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "The volunteer who leads the team, an active member of it; null: "
            "the team has no lead"
        },
    )


class TeamSchema(Schema):
    id = fields.Str()
    name = fields.Str()
    description = fields.Str()
    lead_volunteer_id = fields.Str(allow_none=True)


class VolunteerCreateSchema(StrictSchema):
    name = Line(required=True, most=100)
    team_id = fields.Str(validate=validate.Length(min=1, max=64))
    phone = Line(most=32, validate=FullMatch(PHONE, error="Not a phone number."))


class VolunteerQuerySchema(StrictSchema):
    team_id = fields.Str()


class VolunteerSchema(Schema):
    id = fields.Str()
    name = fields.Str()
    team_id = fields.Str(allow_none=True)
    phone = fields.Str(allow_none=True)
    is_active = fields.Bool()


class RoutingRuleCreateSchema(StrictSchema):
    category = Line(
        required=True,
        most=64,
        validate=CATEGORY,
        metadata={"description": "A code from intake's service catalogue"},
    )
    volunteer_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    precedence = WholeNumber(
        load_default=100,
        validate=validate.Range(min=0, max=10_000),
        metadata={"description": "Among matching rules the lowest wins"},
    )


class RoutingRuleQuerySchema(StrictSchema):
    category = Line(most=64, validate=CATEGORY)


class RoutingRuleSchema(Schema):
    id = fields.Str()
    category = fields.Str()
    volunteer_id = fields.Str()
    volunteer_name = fields.Str(attribute="volunteer.name")
    precedence = fields.Int()
    is_active = fields.Bool()
    created_at = fields.DateTime()


class AssignmentQuerySchema(StrictSchema):
    status = fields.Str(validate=validate.OneOf(STATUSES))
    volunteer_id = fields.Str(
        metadata={
            "description": "Staff and team leads; volunteers see their own, team leads their teams'"
        }
    )


class AssignmentSchema(Schema):
    id = fields.Str()
    request_id = fields.Str()
    category = fields.Str()
    priority = fields.Str()
    summary = fields.Str()
    resident_id = fields.Str()
    location = fields.Dict(keys=fields.Str(), values=fields.Str())
    volunteer_id = fields.Str()
    volunteer_name = fields.Str(attribute="volunteer.name")
    rule_id = fields.Str(allow_none=True)
    status = fields.Str(metadata={"enum": list(STATUSES)})
    hours = fields.Decimal(as_string=True, allow_none=True)
    note = fields.Str()
    participants = fields.List(
        fields.Dict(keys=fields.Str(), values=fields.Str()),
        allow_none=True,
        metadata={"description": "Who did the work and their hours, once it is reported done"},
    )
    assigned_at = fields.DateTime()
    accepted_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)


HOURS = "Hours of service, more than 0 and at most 24, 2 places at most"


class ParticipantSchema(StrictSchema):
    volunteer_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    # Documented as a number with its bounds; a decimal string is read the same way.
    hours = hours_field(required=True, as_string=False, metadata={"description": HOURS})

    @post_load
    def _participant(self, data: dict[str, Any], **_: Any) -> Participant:
        return Participant(**data)


class CompletionSchema(StrictSchema):
    hours = hours_field(required=True, as_string=False, metadata={"description": HOURS})
    note = Prose(load_default="", most=2000)
    participants = fields.List(
        fields.Nested(ParticipantSchema),
        validate=validate.Length(min=1, max=MAX_PARTICIPANTS),
        metadata={
            "description": "Group work: every volunteer who took part, with their own hours: "
            "the volunteer the request was assigned to, and active volunteers of their team, "
            "each once. Absent: the volunteer did it alone, for the hours above"
        },
    )
