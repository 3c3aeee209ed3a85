"""What intake's HTTP API accepts and returns. Strict: unknown fields are rejected."""

from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, fields, missing, post_dump, post_load, validate

from services.intake import clients
from services.intake.catalogue import GROUPS, MAX_NUMBER_ANSWER, QUESTION_TYPES, SENSITIVITIES
from services.intake.directory import LANGUAGES
from services.intake.listing import COUNTED_BY, MAX_PAGE_SIZE, SORTS
from services.intake.models import NODE_KINDS
from services.intake.requests import (
    CHANNELS,
    FAR_FUTURE,
    MAX_ATTACHMENTS,
    STATUSES,
    Location,
    Rating,
    Reporter,
)
from services.intake.webhooks import DELIVERY_STATES, EVENTS, HISTORY_SHOWN, MAX_OVERLAP
from shared.events import CATEGORY_CODE, PRIORITIES, LocationSchema
from shared.fields import Flag, FullMatch, Instant, Line, Prose, WholeNumber
from shared.schemas import StrictSchema

CODE = FullMatch(CATEGORY_CODE)


def _text(most: int, **kwargs: Any) -> Line:
    """One readable line of 1 to ``most`` characters, not blank."""
    return Line(most=most, **kwargs)


def _prose(most: int, **kwargs: Any) -> Prose:
    """Text of 1 to ``most`` characters, lines allowed, not blank."""
    return Prose(most=most, least=1, **kwargs)


# A level of a place on the grid: its path joins the levels with "/", so a name holding one
# would make another place's path ("3/4" as a building is unit 4 of building 3).
NO_SLASH = FullMatch(
    r"^[^/]*$", error="Must not contain '/': it separates the levels of a place's path."
)


def _level_name(most: int, **kwargs: Any) -> Line:
    return Line(most=most, validate=NO_SLASH, **kwargs)


class Computed(fields.Nested):
    """A nested object (or list) worked out from the whole object dumped, then dumped by the
    nested schema: documented as that schema, where a Method field would be documented as
    nothing. ``nullable``: the value may be None, dumped as null."""

    def __init__(
        self,
        nested: type[Schema],
        value: Callable[[Any], Any],
        *,
        nullable: bool = False,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # Nullable through the metadata rather than allow_none (which only matters to loading):
        # for OpenAPI 3.0 apispec spells a nullable allow_none reference as anyOf with an empty
        # object, which the client generators turn into a type of its own.
        if nullable:
            metadata = {"nullable": True, **(metadata or {})}
        super().__init__(nested, dump_only=True, metadata=metadata, **kwargs)
        self.value = value

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = missing) -> Any:
        return self.value(obj)


class Deadline(fields.AwareDateTime):
    """A deadline column, null when none is pending (kept as FAR_FUTURE, which sorts last)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is not None and value >= FAR_FUTURE:
            return None
        return super()._serialize(value, attr, obj, **kwargs)


class NamesSchema(StrictSchema):
    """A name in each language the neighbourhood reads."""

    zh_cn = Line(required=True, data_key="zh-CN", most=100)
    en = Line(required=True, most=100)

    @post_load
    def _as_languages(self, data: dict[str, Any], **_: Any) -> dict[str, str]:
        return {"zh-CN": data["zh_cn"], "en": data["en"]}


class LabelsSchema(NamesSchema):
    zh_cn = Line(required=True, data_key="zh-CN", most=300)
    en = Line(required=True, most=300)


class OptionSchema(StrictSchema):
    value = Line(required=True, most=64)
    labels = fields.Nested(LabelsSchema, required=True)


class QuestionSchema(StrictSchema):
    """An extra question the category asks when a request is submitted."""

    code = fields.Str(required=True, validate=CODE)
    labels = fields.Nested(LabelsSchema, required=True)
    type = fields.Str(
        required=True,
        validate=validate.OneOf(QUESTION_TYPES),
        metadata={
            "description": "How it is answered: number is a whole number from 0 to "
            f"{MAX_NUMBER_ANSWER:,} (a count, an age); datetime is ISO 8601 with its offset"
        },
    )
    required = Flag(load_default=False)
    order = WholeNumber(validate=validate.Range(min=0, max=1000))
    options = fields.List(
        fields.Nested(OptionSchema),
        validate=validate.Length(max=50),
        metadata={"description": "The choices of a single_choice or multi_choice question"},
    )


class MinutesSchema(StrictSchema):
    """0 means at once: such a request is overdue from the moment it is made."""

    acknowledge_minutes = WholeNumber(required=True, validate=validate.Range(min=0, max=525_600))
    resolve_minutes = WholeNumber(required=True, validate=validate.Range(min=0, max=525_600))


class DeadlinesSchema(StrictSchema):
    """Minutes to acknowledge and to resolve, by priority; a priority left out keeps the
    house default."""

    low = fields.Nested(MinutesSchema)
    normal = fields.Nested(MinutesSchema)
    high = fields.Nested(MinutesSchema)
    urgent = fields.Nested(MinutesSchema)


class NoticeSchema(StrictSchema):
    """Shown with the category; one that blocks submission queues nothing. Without text (an
    empty object) it removes the category's notice."""

    text = fields.Nested(LabelsSchema)
    blocks_submission = Flag(load_default=False)
    emergency_number = Line(most=20, validate=FullMatch(r"^[0-9+\- ]{1,20}$"))


class CategoryFields(StrictSchema):
    description = Prose(most=2000)
    group = fields.Str(validate=validate.OneOf(GROUPS))
    keywords = fields.List(Line(most=50), validate=validate.Length(max=50))
    default_priority = fields.Str(validate=validate.OneOf(PRIORITIES))
    deadlines = fields.Nested(DeadlinesSchema)
    sensitivity = fields.Str(
        validate=validate.OneOf(SENSITIVITIES),
        metadata={"description": "health, legal and mediation requests are private"},
    )
    questions = fields.List(fields.Nested(QuestionSchema), validate=validate.Length(max=30))
    notice = fields.Nested(NoticeSchema)


class CategoryCreateSchema(CategoryFields):
    code = fields.Str(required=True, validate=CODE)
    names = fields.Nested(NamesSchema, required=True)


class CategoryUpdateSchema(CategoryFields):
    names = fields.Nested(NamesSchema)
    is_active = Flag(metadata={"description": "false withdraws it from new requests"})


class CategoryQuerySchema(StrictSchema):
    group = fields.Str(validate=validate.OneOf(GROUPS))
    sensitivity = fields.Str(validate=validate.OneOf(SENSITIVITIES))
    q = _text(100, metadata={"description": "Part of a code, a name or a keyword"})
    include_inactive = Flag(load_default=False)


class CategoryNamesSchema(Schema):
    """A category's name in each language (the Chinese one may be empty)."""

    zh_cn = fields.Str(required=True, attribute="name_zh", data_key="zh-CN")
    en = fields.Str(required=True, attribute="name")


class CategorySchema(Schema):
    code = fields.Str(required=True)
    names = Computed(CategoryNamesSchema, lambda category: category, required=True)
    description = fields.Str(required=True)
    group = fields.Str(required=True)
    keywords = fields.List(fields.Str(), required=True)
    default_priority = fields.Str(required=True)
    deadlines = fields.Dict(required=True)
    sensitivity = fields.Str(required=True)
    is_private = fields.Function(
        lambda c: c.sensitivity != "none", required=True, metadata={"type": "boolean"}
    )
    questions = fields.List(fields.Dict(), required=True)
    notice = fields.Dict(allow_none=True, required=True)
    is_active = fields.Bool(required=True)


class ReporterSchema(StrictSchema):
    name = Line(required=True, most=100)
    phone = Line(most=32)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Reporter:
        return Reporter(**data)


class AttachmentSchema(StrictSchema):
    url = Line(
        required=True,
        most=2000,
        metadata={"description": "An http or https URL naming a host, without credentials"},
    )
    description = Line(most=300, least=0)


class RequestCreateSchema(StrictSchema):
    category = fields.Str(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "A code from the service catalogue"},
    )
    summary = Line(required=True, most=200)
    details = Prose(load_default="", most=5000)
    resident_id = Line(
        most=64, metadata={"description": "The registered resident it is for; else give address"}
    )
    location = fields.Nested(
        LocationSchema,
        metadata={"description": "Where the service is needed; if given, the resident's household"},
    )
    address = Line(
        most=200,
        metadata={
            "description": "Where, as the reporter gave it (3-2-501, Building 3, Unit 2, "
            "Household 501, 3栋2单元501): matched against the grid, else kept for staff to place"
        },
    )
    community = Line(
        most=64,
        metadata={"description": "The community the address is in, where there are several"},
    )
    reporter = fields.Nested(
        ReporterSchema, metadata={"description": "A reporter who is not a registered resident"}
    )
    priority = fields.Str(
        validate=validate.OneOf(PRIORITIES),
        metadata={"description": "Defaults to the category's priority"},
    )
    channel = fields.Str(load_default="api", validate=validate.OneOf(CHANNELS))
    external_ref = Line(most=100, metadata={"description": "The posting system's own reference"})
    answers = fields.Dict(
        keys=Line(most=64),
        # Each answer's type is its question's: checked against the category, not here.
        values=fields.Raw(metadata={"description": "A string, number, or list of options"}),
        validate=validate.Length(max=30),
        metadata={"description": "Answers to the category's questions, by question code"},
    )
    attachments = fields.List(
        fields.Nested(AttachmentSchema), validate=validate.Length(max=MAX_ATTACHMENTS)
    )

    @post_load
    def _locate(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("location") is not None:
            data["location"] = Location(**data["location"])
        return data


class ReasonSchema(StrictSchema):
    reason = _prose(1000, required=True)


class NoteOnlySchema(StrictSchema):
    note = _prose(1000)


class TriageSchema(StrictSchema):
    note = _prose(1000)
    category = fields.Str(validate=CODE)
    priority = fields.Str(validate=validate.OneOf(PRIORITIES))
    location = fields.Nested(LocationSchema, metadata={"description": "Place it at a household"})
    resident_id = Line(most=64)

    @post_load
    def _locate(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("location") is not None:
            data["location"] = Location(**data["location"])
        return data


class MergeSchema(StrictSchema):
    into = Line(required=True, most=64, metadata={"description": "The request this one repeats"})
    note = _prose(1000)


class NoteSchema(StrictSchema):
    text = _prose(5000, required=True)
    public = Flag(
        metadata={
            "description": "Shown to the resident; staff's and systems' notes are internal "
            "unless true, residents' own notes are always public"
        },
    )


class ConfirmationSchema(StrictSchema):
    note = _prose(
        500,
        metadata={
            "description": "Why staff confirm on the resident's behalf (required for staff); "
            "residents may leave it out, or send no body at all"
        },
    )
    rating = WholeNumber(
        validate=validate.Range(min=1, max=5),
        metadata={"description": "How well it was done, 1 to 5 stars"},
    )
    comment = _prose(
        1000,
        metadata={"description": "What the resident thought of it, with or without a rating"},
    )

    @post_load
    def _rate(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # A comment is kept whether or not stars come with it.
        stars = data.pop("rating", None)
        comment = data.pop("comment", None)
        if stars is not None or comment is not None:
            data["rating"] = Rating(stars, comment)
        return data


class TimelineEntrySchema(Schema):
    id = fields.Int(required=True)
    status = fields.Str(required=True)
    action = fields.Str(required=True)
    actor = fields.Str(required=True)
    public = fields.Bool(required=True, attribute="is_public")
    note = fields.Str(required=True)
    at = fields.DateTime(required=True)


# Parts of a request kept in its own columns, each dumped from the request itself.


class AssigneeSchema(Schema):
    type = fields.Str(required=True, attribute="assignee_type")
    id = fields.Str(required=True, attribute="assignee_id")
    name = fields.Str(required=True, attribute="assignee_name")


class RequestReporterSchema(Schema):
    """Who reported it, when not a registered resident."""

    name = fields.Str(required=True, attribute="reporter_name")
    phone = fields.Str(required=True, attribute="reporter_phone", allow_none=True)


def _placed(request: Any) -> Any:
    return None if request.household is None else request


def _assigned(request: Any) -> Any:
    return None if getattr(request, "assignee_id", None) is None else request


def _reported(request: Any) -> Any:
    return None if request.reporter_name is None else request


def _shown_timeline(request: Any) -> Any:
    # A resident is shown only the public entries (set by the view as ``shown_timeline``).
    entries = getattr(request, "shown_timeline", None)
    return request.timeline if entries is None else entries


class RequestSummarySchema(Schema):
    id = fields.Str(required=True)
    category = fields.Str(required=True)
    priority = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": list(STATUSES)})
    location = Computed(LocationSchema, _placed, nullable=True, required=True)
    assignee = Computed(AssigneeSchema, _assigned, nullable=True, required=True)
    due_at = Deadline(
        required=True,
        allow_none=True,
        dump_only=True,
        metadata={"description": "The deadline now pending, if any"},
    )
    updated_at = fields.DateTime(required=True)


class RequestSchema(RequestSummarySchema):
    summary = fields.Str(required=True)
    details = fields.Str(required=True)
    channel = fields.Str(required=True)
    external_ref = fields.Str(required=True, allow_none=True)
    resident_id = fields.Str(required=True, allow_none=True)
    on_behalf = fields.Bool(
        required=True,
        attribute="is_on_behalf",
        metadata={"description": "Filed by staff, a system or a grid leader for them"},
    )
    reporter = Computed(RequestReporterSchema, _reported, nullable=True, required=True)
    address = fields.Str(required=True, attribute="address_text", allow_none=True)
    answers = fields.Dict(required=True)
    attachments = fields.List(fields.Dict(), required=True)
    acknowledge_by = fields.DateTime(required=True, allow_none=True)
    resolve_by = fields.DateTime(required=True, allow_none=True)
    is_overdue = fields.Method("_is_overdue", required=True, metadata={"type": "boolean"})
    escalated_at = fields.DateTime(required=True, allow_none=True)
    hours = fields.Decimal(required=True, as_string=True, allow_none=True)
    confirmed_as = fields.Str(required=True, allow_none=True)
    rating = fields.Int(required=True, allow_none=True)
    rating_comment = fields.Str(required=True, allow_none=True)
    possible_duplicate_of = fields.Str(required=True, allow_none=True)
    duplicate_of = fields.Str(required=True, allow_none=True)
    duplicates = fields.Pluck(
        RequestSummarySchema,
        "id",
        many=True,
        required=True,
        metadata={"description": "The requests merged into this one"},
    )
    created_at = fields.DateTime(required=True)
    timeline = Computed(TimelineEntrySchema, _shown_timeline, many=True, required=True)

    def _is_overdue(self, request: Any) -> bool:
        from shared.clock import utcnow

        return bool(request.due_at < utcnow())


class RequestQuerySchema(StrictSchema):
    status = fields.List(
        fields.Str(validate=validate.OneOf(STATUSES)),
        load_default=list,
        metadata={"description": "Repeat to match any of several statuses"},
    )
    open = Flag(metadata={"description": "Only open requests (true) or only the others"})
    category = fields.List(Line(most=64), load_default=list)
    group = fields.Str(validate=validate.OneOf(GROUPS))
    community = _text(64)
    building = _text(32, metadata={"description": "With community: the building and all in it"})
    unit = _text(32)
    household = _text(32)
    priority = fields.List(fields.Str(validate=validate.OneOf(PRIORITIES)), load_default=list)
    channel = fields.List(fields.Str(validate=validate.OneOf(CHANNELS)), load_default=list)
    overdue = Flag(metadata={"description": "Past the deadline now pending (true)"})
    created_after = Instant()
    created_before = Instant()
    updated_after = Instant()
    updated_before = Instant()
    assignee_id = _text(64)
    resident_id = _text(64)


class RequestListQuerySchema(RequestQuerySchema):
    sort = fields.Str(
        load_default="newest",
        validate=validate.OneOf(sorted(SORTS)),
        metadata={"description": "urgency: the highest priority, then the nearest deadline"},
    )
    after = _text(500, metadata={"description": "The next_cursor of the previous page"})
    page_size = fields.Int(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


class CountQuerySchema(RequestQuerySchema):
    by = fields.Str(required=True, validate=validate.OneOf(COUNTED_BY))


class CountSchema(Schema):
    value = fields.Str(required=True, allow_none=True)
    count = fields.Int(required=True)


class RequestCountsSchema(Schema):
    by = fields.Str(required=True)
    counts = fields.List(fields.Nested(CountSchema), required=True)


class ChangesQuerySchema(StrictSchema):
    after = _text(30, metadata={"description": "The cursor the previous answer gave"})
    limit = fields.Int(load_default=100, validate=validate.Range(min=1, max=500))


class ChangeSchema(Schema):
    cursor = fields.Str(
        required=True,
        metadata={
            "description": "Where the feed stands after this change: an entry's number on "
            "SQLite, `<transaction>.<entry>` on PostgreSQL",
            "example": "7341.1093",
        },
    )
    entry = fields.Nested(TimelineEntrySchema, required=True)
    request = fields.Nested(RequestSummarySchema, required=True)


class RequestChangesSchema(Schema):
    changes = fields.List(fields.Nested(ChangeSchema), required=True)
    next_cursor = fields.Str(
        required=True, allow_none=True, metadata={"description": "Pass as after next time"}
    )


class HouseholdRefSchema(LocationSchema):
    class Meta:
        unknown = RAISE


class ResponsibleSchema(StrictSchema):
    """Who answers for a place; without a name (an empty object), no one is named."""

    name = Line(most=100)
    phone = Line(most=32)
    resident_id = Line(
        most=64,
        metadata={
            "description": "When they are a registered resident (they may then confirm "
            "for a neighbour)"
        },
    )


class PlaceSchema(StrictSchema):
    """A place of the grid by its levels: each one readable line, without "/"."""

    community = _level_name(64, required=True)
    building = _level_name(32)
    unit = _level_name(32)
    household = _level_name(32)


class GridNodeCreateSchema(StrictSchema):
    place = fields.Nested(PlaceSchema, required=True)
    name = Line(most=100, least=0)
    responsible = fields.Nested(ResponsibleSchema)


class GridNodeUpdateSchema(StrictSchema):
    name = Line(most=100, least=0)
    responsible = fields.Nested(ResponsibleSchema)


class GridNodeQuerySchema(StrictSchema):
    community = _text(64)
    building = _text(32)
    unit = _text(32)
    household = _text(32)
    kind = fields.Str(validate=validate.OneOf(NODE_KINDS))


def _level(name: str) -> fields.Function:
    # A level beneath the node's own is kept empty, and shown as null.
    return fields.Function(
        lambda node: getattr(node, name) or None,
        required=True,
        metadata={"type": "string", "nullable": True},
    )


class GridPlaceSchema(Schema):
    """Where a node is: the levels beneath its own are null."""

    community = fields.Str(required=True)
    building = _level("building")
    unit = _level("unit")
    household = _level("household")


class GridResponsibleSchema(Schema):
    name = fields.Str(required=True, attribute="responsible_name")
    phone = fields.Str(required=True, attribute="responsible_phone", allow_none=True)
    resident_id = fields.Str(required=True, attribute="responsible_resident_id", allow_none=True)


class GridNodeSchema(Schema):
    id = fields.Str(required=True)
    kind = fields.Str(required=True)
    path = fields.Str(required=True)
    parent_id = fields.Str(required=True, allow_none=True)
    place = Computed(GridPlaceSchema, lambda node: node, required=True)
    name = fields.Str(required=True)
    responsible = Computed(
        GridResponsibleSchema,
        lambda node: None if node.responsible_name is None else node,
        nullable=True,
        required=True,
    )


class ResidentFlagsSchema(StrictSchema):
    phone = Line(most=32, allow_none=True, metadata={"description": "null: none on record"})
    language = fields.Str(validate=validate.OneOf(LANGUAGES))
    is_elderly = Flag()
    lives_alone = Flag()
    is_disabled = Flag()
    has_reduced_mobility = Flag()


class ResidentCreateSchema(ResidentFlagsSchema):
    name = Line(required=True, most=100)
    location = fields.Nested(HouseholdRefSchema, required=True)


class ResidentUpdateSchema(ResidentFlagsSchema):
    name = Line(most=100)
    location = fields.Nested(HouseholdRefSchema, metadata={"description": "Move them here"})


class ResidentQuerySchema(StrictSchema):
    community = _text(64)
    building = _text(32)
    unit = _text(32)
    household = _text(32)
    name = _text(100)
    is_elderly = Flag()
    lives_alone = Flag()
    is_disabled = Flag()
    has_reduced_mobility = Flag()


class ResidentSchema(Schema):
    id = fields.Str(required=True)
    name = fields.Str(required=True)
    phone = fields.Str(required=True, allow_none=True)
    language = fields.Str(required=True)
    is_elderly = fields.Bool(required=True)
    lives_alone = fields.Bool(required=True)
    is_disabled = fields.Bool(required=True)
    has_reduced_mobility = fields.Bool(required=True)
    location = fields.Nested(LocationSchema, required=True, attribute="household")


class HealthNoteCreateSchema(StrictSchema):
    note = _prose(5000, required=True)


class HealthNoteSchema(Schema):
    id = fields.Int(required=True)
    resident_id = fields.Str(required=True)
    note = fields.Str(required=True)
    written_by = fields.Str(required=True)
    written_at = fields.DateTime(required=True)


class WebhookFieldsSchema(StrictSchema):
    url = Line(
        most=2000,
        metadata={
            "description": "The receiver: https (plain http only to hosts the deployment "
            "trusts, or in development); never a link-local, metadata or (in production) "
            "private address"
        },
    )
    events = fields.List(
        fields.Str(validate=validate.OneOf(EVENTS)),
        validate=validate.Length(min=1, max=len(EVENTS)),
        metadata={"description": "The kinds of event to send; all of them if left out"},
    )
    description = Line(most=200, least=0)


class WebhookCreateSchema(WebhookFieldsSchema):
    url = Line(
        required=True,
        most=2000,
        metadata={
            "description": WebhookFieldsSchema._declared_fields["url"].metadata["description"]
        },
    )
    owner = Line(
        most=110,
        metadata={
            "description": "The API client (client:<name>) whose requests it follows: staff "
            "name it; a system registers for itself and leaves it out"
        },
    )


class WebhookUpdateSchema(WebhookFieldsSchema):
    pass


class WebhookChangeSchema(Schema):
    action = fields.Str(
        required=True,
        metadata={"description": "created, changed, secret_rotated, paused or resumed"},
    )
    note = fields.Str(required=True)
    actor = fields.Str(required=True)
    at = fields.DateTime(required=True)


class WebhookSchema(Schema):
    id = fields.Str(required=True)
    owner = fields.Str(required=True)
    url = fields.Str(required=True)
    events = fields.List(fields.Str(), required=True)
    description = fields.Str(required=True)
    status = fields.Str(required=True, metadata={"enum": ["active", "paused"]})
    paused_at = fields.DateTime(required=True, allow_none=True)
    paused_reason = fields.Str(
        required=True,
        allow_none=True,
        metadata={"description": "Why intake stopped sending to the receiver"},
    )
    consecutive_failures = fields.Int(
        required=True, metadata={"description": "Failed attempts in a row, since failing_since"}
    )
    failing_since = fields.DateTime(required=True, allow_none=True)
    last_success_at = fields.DateTime(required=True, allow_none=True)
    last_failure_at = fields.DateTime(required=True, allow_none=True)
    previous_secret_until = fields.DateTime(
        required=True,
        allow_none=True,
        metadata={"description": "Until when the secret before the last rotation signs too"},
    )
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    history = fields.List(
        fields.Nested(WebhookChangeSchema),
        required=True,
        metadata={"description": f"What became of it, newest first (the last {HISTORY_SHOWN})"},
    )

    @post_dump
    def _recent(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["history"] = data["history"][:HISTORY_SHOWN]
        return data


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.Str(
        required=True,
        metadata={
            "description": "Keys the HMAC-SHA256 of each delivery's Redvest-Signature; shown "
            "this once"
        },
    )


class SecretRotationSchema(StrictSchema):
    overlap_minutes = WholeNumber(
        load_default=24 * 60,
        validate=validate.Range(min=0, max=int(MAX_OVERLAP.total_seconds() // 60)),
        metadata={"description": "How long the old secret signs too, beside the new one"},
    )


class DeliveryQuerySchema(StrictSchema):
    state = fields.Str(validate=validate.OneOf(DELIVERY_STATES))
    request_id = _text(64)


class WebhookAttemptSchema(Schema):
    number = fields.Int(required=True)
    at = fields.DateTime(required=True)
    status_code = fields.Int(required=True, allow_none=True)
    latency_ms = fields.Int(required=True, allow_none=True)
    error = fields.Str(required=True, allow_none=True)
    response_excerpt = fields.Str(
        required=True, metadata={"description": "The start of the receiver's answer"}
    )


class DeliverySchema(Schema):
    id = fields.Str(required=True)
    subscription_id = fields.Str(required=True)
    request_id = fields.Str(required=True)
    event_id = fields.Str(
        required=True,
        metadata={
            "description": "The timeline entry's number (on SQLite also its cursor in the "
            "change feed)"
        },
    )
    event_type = fields.Str(required=True)
    state = fields.Str(required=True, metadata={"enum": list(DELIVERY_STATES)})
    attempts = fields.Int(required=True)
    next_attempt_at = fields.DateTime(required=True, allow_none=True)
    last_status_code = fields.Int(required=True, allow_none=True)
    last_error = fields.Str(required=True, allow_none=True)
    replay_of = fields.Str(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    delivered_at = fields.DateTime(required=True, allow_none=True)


class DeliveryDetailSchema(DeliverySchema):
    payload = fields.Dict(required=True, metadata={"description": "The body sent, as JSON"})
    attempt_log = fields.List(
        fields.Nested(WebhookAttemptSchema), required=True, data_key="attempt_log"
    )


class ReplaySchema(StrictSchema):
    since = Instant(required=True)
    until = Instant(metadata={"description": "Now, if left out"})
    only_failed = Flag(
        load_default=False, metadata={"description": "Only the deliveries given up on"}
    )


class ReplayedSchema(Schema):
    replayed = fields.Int(
        required=True, metadata={"description": "How many deliveries were made again"}
    )
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)


# API keys (clients.py): issued, listed and revoked by admins.


class ApiKeyCreateSchema(StrictSchema):
    name = fields.Str(
        required=True,
        validate=FullMatch(clients.NAME),
        metadata={"description": "The client's name, e.g. city-hotline: letters, digits, . _ -"},
    )
    role = fields.Str(
        validate=validate.OneOf(clients.ROLES),
        metadata={
            "description": "system (another system), staff (a staff console) or admin; by "
            "default admin for a key of the admin scope, else system"
        },
    )
    scopes = fields.List(
        fields.Str(validate=validate.OneOf(list(clients.SCOPES))),
        validate=validate.Length(min=1, max=len(clients.SCOPES)),
        metadata={
            "description": "What the key may do, within its role; by default all its role "
            "allows. "
            + "; ".join(f"`{name}`: {meaning}" for name, meaning in clients.SCOPES.items())
        },
    )
    rate_limit = Line(
        most=40,
        metadata={
            "description": "Calls the key may make, e.g. 600/minute; by default the service's "
            "API_KEY_RATE_LIMIT"
        },
    )


class ApiKeyQuerySchema(StrictSchema):
    after = Line(
        most=300,
        metadata={"description": "The next_cursor of the previous page"},
    )
    page_size = fields.Int(
        load_default=50, validate=validate.Range(min=1, max=clients.MAX_PAGE_SIZE)
    )
    revoked = Flag(metadata={"description": "Only revoked keys (true) or live ones"})


class ApiKeySchema(Schema):
    name = fields.Str(required=True)
    role = fields.Str(required=True, metadata={"enum": list(clients.ROLES)})
    scopes = fields.List(fields.Str(metadata={"enum": list(clients.SCOPES)}), required=True)
    rate_limit = fields.Str(
        required=True,
        allow_none=True,
        metadata={"description": "Its own limit; null: API_KEY_RATE_LIMIT"},
    )
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When it was last used, to the minute"},
    )
    revoked_at = fields.DateTime(required=True, allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    api_key = fields.Str(required=True, metadata={"description": "The key itself, shown this once"})
