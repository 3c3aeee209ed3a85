"""What intake's HTTP API accepts and returns. Strict: unknown fields are rejected."""

from typing import Any

from marshmallow import RAISE, Schema, fields, post_load, validate

from services.intake.requests import CHANNELS, STATUSES, Location
from shared.events import CATEGORY_CODE, PRIORITIES, LocationSchema
from shared.schemas import StrictSchema


class RequestCreateSchema(StrictSchema):
    category = fields.Str(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "A code from the service catalogue"},
    )
    summary = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    details = fields.Str(load_default="", validate=validate.Length(max=5000))
    resident_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    location = fields.Nested(
        LocationSchema,
        metadata={"description": "Where the service is needed; if given, the resident's household"},
    )
    priority = fields.Str(
        validate=validate.OneOf(PRIORITIES),
        metadata={"description": "Defaults to the category's priority"},
    )
    channel = fields.Str(load_default="api", validate=validate.OneOf(CHANNELS))
    external_ref = fields.Str(
        validate=validate.Length(max=100),
        metadata={"description": "The posting system's own reference"},
    )

    @post_load
    def _locate(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("location") is not None:
            data["location"] = Location(**data["location"])
        return data


class ConfirmationSchema(StrictSchema):
    note = fields.Str(
        validate=validate.Length(min=1, max=500),
        metadata={
            "description": "Why staff confirm on the resident's behalf (required for staff); "
            "residents may leave it out, or send no body at all"
        },
    )


class TimelineEntrySchema(Schema):
    status = fields.Str()
    note = fields.Str()
    at = fields.DateTime()


class AssigneeSchema(Schema):
    type = fields.Str(attribute="assignee_type")
    id = fields.Str(attribute="assignee_id")
    name = fields.Str(attribute="assignee_name")


class RequestSchema(Schema):
    id = fields.Str()
    category = fields.Str()
    priority = fields.Str()
    status = fields.Str(metadata={"enum": list(STATUSES)})
    summary = fields.Str()
    details = fields.Str()
    channel = fields.Str()
    external_ref = fields.Str(allow_none=True)
    resident_id = fields.Str()
    location = fields.Method("_location")
    assignee = fields.Method("_assignee")
    hours = fields.Decimal(as_string=True, allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    timeline = fields.List(fields.Nested(TimelineEntrySchema))

    def _location(self, request: object) -> dict[str, str]:
        return {
            key: getattr(request, key) for key in ("community", "building", "unit", "household")
        }

    def _assignee(self, request: object) -> dict[str, str] | None:
        if getattr(request, "assignee_id", None) is None:
            return None
        result: dict[str, str] = AssigneeSchema().dump(request)
        return result


class RequestQuerySchema(StrictSchema):
    status = fields.List(
        fields.Str(validate=validate.OneOf(STATUSES)),
        load_default=list,
        metadata={"description": "Repeat to match any of several statuses"},
    )
    category = fields.Str()
    community = fields.Str()
    building = fields.Str()
    resident_id = fields.Str()


class CategorySchema(StrictSchema):
    code = fields.Str(required=True, validate=validate.Regexp(CATEGORY_CODE))
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    description = fields.Str(load_default="", validate=validate.Length(max=2000))
    default_priority = fields.Str(load_default="normal", validate=validate.OneOf(PRIORITIES))
    is_active = fields.Bool(dump_only=True)


class HouseholdRefSchema(LocationSchema):
    class Meta:
        unknown = RAISE


class ResidentCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    location = fields.Nested(HouseholdRefSchema, required=True)
    phone = fields.Str(validate=validate.Length(max=32))
    is_elderly = fields.Bool(load_default=False)
    lives_alone = fields.Bool(load_default=False)


class ResidentSchema(Schema):
    id = fields.Str()
    name = fields.Str()
    phone = fields.Str(allow_none=True)
    is_elderly = fields.Bool()
    lives_alone = fields.Bool()
    location = fields.Method("_location")

    def _location(self, resident: object) -> dict[str, str]:
        home = resident.household  # type: ignore[attr-defined]
        return {
            "community": home.community,
            "building": home.building,
            "unit": home.unit,
            "household": home.number,
        }
