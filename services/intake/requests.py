"""Requests through the one door: submitted, followed through dispatch, confirmed by residents,
along an explicit state machine whose every step lands on the request's timeline."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from services.intake import catalogue, directory
from services.intake.models import (
    Category,
    GridNode,
    Resident,
    ServiceRequest,
    TimelineEntry,
    messaging,
)
from services.intake.policy import (
    ATTACH,
    CANCEL,
    ESCALATE,
    MERGE,
    NOTE,
    POLICY,
    REJECT,
    REOPEN,
    START,
    TRIAGE,
    actor_address,
    check_may_confirm,
    no_request,
    no_resident,
)
from services.intake.policy import PartyToTheService as PartyToTheService
from shared import events
from shared.auth import Principal
from shared.clock import utcnow
from shared.conditional import check_version, version_etag
from shared.database import DirectStatement, as_loaded
from shared.errors import Conflict, Invalid
from shared.events import PRIORITIES
from shared.people import address
from shared.policy import GRID_LEADER, RESIDENT

SUBMITTED = "submitted"
NEEDS_TRIAGE = "needs_triage"
TRIAGED = "triaged"
ASSIGNED = "assigned"
ACCEPTED = "accepted"
IN_SERVICE = "in_service"
COMPLETED = "completed"
CONFIRMED = "confirmed"
CLOSED = "closed"
CANCELLED = "cancelled"
REJECTED = "rejected"
REOPENED = "reopened"
ESCALATED = "escalated"
STATUSES = (
    SUBMITTED,
    NEEDS_TRIAGE,
    TRIAGED,
    ASSIGNED,
    ACCEPTED,
    IN_SERVICE,
    COMPLETED,
    CONFIRMED,
    CLOSED,
    CANCELLED,
    REJECTED,
    REOPENED,
    ESCALATED,
)
# Someone still has to act: the deadlines run, and the lists call these open.
OPEN = (SUBMITTED, NEEDS_TRIAGE, TRIAGED, ASSIGNED, ACCEPTED, IN_SERVICE, REOPENED, ESCALATED)
WAITING_FOR_SOMEONE = frozenset((SUBMITTED, NEEDS_TRIAGE, TRIAGED, REOPENED, ESCALATED))
# Withdrawn, refused or closed: nothing more is added to it.
ENDED = frozenset((CANCELLED, REJECTED, CLOSED))
# The most photos and documents a request keeps.
MAX_ATTACHMENTS = 10

# What people do to a request, and the statuses each may be done from.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "triage": (frozenset((SUBMITTED, NEEDS_TRIAGE, ESCALATED, REOPENED)), TRIAGED),
    "start": (frozenset((ASSIGNED, ACCEPTED, ESCALATED)), IN_SERVICE),
    "escalate": (frozenset(OPEN) - {ESCALATED}, ESCALATED),
    "cancel": (frozenset(OPEN), CANCELLED),
    "reject": (frozenset(OPEN) - {IN_SERVICE}, REJECTED),
    "merge": (frozenset(OPEN), CLOSED),
    "confirm": (frozenset((COMPLETED,)), CONFIRMED),
    "close": (frozenset((COMPLETED,)), CLOSED),
    "reopen": (frozenset((COMPLETED, CONFIRMED, CLOSED)), REOPENED),
}
# What dispatch tells of a request, and the statuses that news moves it from. Its events may
# be handled out of order by concurrent workers: news never moves a request back, and news of
# a request no longer in service is kept on the timeline but changes nothing.
NEWS: dict[str, frozenset[str]] = {
    ASSIGNED: WAITING_FOR_SOMEONE,
    NEEDS_TRIAGE: frozenset((SUBMITTED, TRIAGED, REOPENED)),
    ACCEPTED: WAITING_FOR_SOMEONE | {ASSIGNED},
    COMPLETED: frozenset(OPEN),
}
CHANNELS = (
    "api",
    "app",
    "phone",
    "walk_in",
    "talk_point",
    "watch_post",
    "patrol",
    "hotline",
    "partner_system",
)
URGENCY = {priority: rank for rank, priority in enumerate(PRIORITIES)}
# A deadline column that sorts and compares without NULLs: none pending.
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
DUPLICATE_WINDOW = timedelta(days=7)
# How long a completed request waits for its resident's confirmation before it is closed, and
# how long after completion it may be reopened.
CONFIRM_WITHIN = timedelta(days=7)
REOPEN_WITHIN = timedelta(days=14)
INTAKE = "system:intake"
DISPATCH = "system:dispatch"


class IllegalTransition(Conflict):
    """The request's status does not allow what was asked; the problem names the status."""

    code = "illegal-transition"
    title = "Not allowed in the request's current status"


_requests = cast(Table, ServiceRequest.__table__)
_insert_request = DirectStatement(insert(_requests))
_WITHOUT_TIMELINE = (lazyload(ServiceRequest.timeline), lazyload(ServiceRequest.duplicates))
_timeline = cast(Table, TimelineEntry.__table__)
_insert_entry = DirectStatement(insert(_timeline).returning(_timeline.c.id))
_categories = cast(Table, Category.__table__)
_residents = cast(Table, Resident.__table__)
_nodes = cast(Table, GridNode.__table__)


def _entry_id(session: Session, entry: Mapping[str, Any]) -> int:
    """Write a timeline entry (every column given); its id."""
    written = _insert_entry.first(session, entry)
    assert written is not None  # RETURNING answers the row an INSERT wrote
    entry_id: int = written[0]
    return entry_id


@dataclass(frozen=True)
class Location:
    community: str
    building: str
    unit: str
    household: str


def _check_lives_at(resident_id: str, home: Location, location: Location) -> None:
    """Invalid unless ``location`` is the resident's home: a request for a resident is placed
    where they live, which is where those who may confirm for them are found."""
    if location != home:
        raise Invalid(
            f"Resident {resident_id} lives at {home.community}/{home.building}-{home.unit}-"
            f"{home.household}, not at the location given",
            field="location",
        )


@dataclass(frozen=True)
class Reporter:
    """Who reported a request when they are not a registered resident."""

    name: str
    phone: str | None = None


# The category, the resident's home and a request of the same household and category in the
# last week, read in one statement: every request through the door pays for this read.
_latest_of_household = (
    select(_requests.c.id)
    .where(
        _requests.c.community == _nodes.c.community,
        _requests.c.building == _nodes.c.building,
        _requests.c.unit == _nodes.c.unit,
        _requests.c.household == _nodes.c.household,
        _requests.c.category == bindparam("category"),
        _requests.c.created_at >= bindparam("since"),
        # Not NOT IN: a list is expanded at each execution, which a DirectStatement leaves to
        # SQLAlchemy's execution layer.
        _requests.c.status != CANCELLED,
        _requests.c.status != REJECTED,
        _requests.c.duplicate_of.is_(None),
    )
    .order_by(_requests.c.created_at.desc())
    .limit(1)
    .correlate(_nodes)
    .scalar_subquery()
)
_category_and_home = (
    select(
        _categories.c.code.label("category_code"),
        *directory.CATEGORY_COLUMNS,
        _nodes.c.community,
        _nodes.c.building,
        _nodes.c.unit,
        _nodes.c.household,
        _latest_of_household.label("latest"),
    )
    .select_from(
        _residents.join(_nodes, _nodes.c.id == _residents.c.household_id).outerjoin(
            _categories,
            and_(
                _categories.c.code == bindparam("category"),
                _categories.c.is_active.is_(True),
            ),
        )
    )
    .where(_residents.c.id == bindparam("resident_id"))
)
_read_category_and_home = DirectStatement(_category_and_home)
_CATEGORY_AND_HOME = tuple(_category_and_home.selected_columns.keys())


def _deadlines(
    category: Category | Mapping[str, Any], priority: str, start: datetime
) -> dict[str, Any]:
    acknowledge, resolve = catalogue.deadlines_of(category, priority)
    acknowledge_by = start + timedelta(minutes=acknowledge)
    return {
        "acknowledge_by": acknowledge_by,
        "resolve_by": start + timedelta(minutes=resolve),
        "due_at": acknowledge_by,
    }


def _place(
    session: Session,
    *,
    category: str,
    resident_id: str | None,
    address_text: str | None,
    community: str | None,
) -> tuple[Mapping[str, Any], dict[str, Any], str | None]:
    """The category, where the request is (empty when not placed) and a possible duplicate."""
    if resident_id is not None:
        row = _read_category_and_home.first(
            session,
            {
                "category": category,
                "resident_id": resident_id,
                "since": utcnow() - DUPLICATE_WINDOW,
            },
        )
        if row is None:
            directory.active_category(session, category)
            raise no_resident(resident_id)
        found = dict(zip(_CATEGORY_AND_HOME, row, strict=True))
        if found["category_code"] is None:
            directory.active_category(session, category)
        place = {level: found[level] for level in directory.LEVELS}
        return found, place, found["latest"]
    if not address_text:
        raise Invalid(
            "Give the resident_id of a registered resident, or the address where the service "
            "is needed",
            field="resident_id",
        )
    found_category = directory.active_category(session, category)
    node = directory.match_address(session, address_text, community=community)
    if node is None:
        return found_category, {}, None
    place = {level: getattr(node, level) for level in directory.LEVELS}
    return found_category, place, None


@dataclass(frozen=True)
class Submission:
    """A request checked against the catalogue and the grid, its rows ready to be recorded:
    what can be made before the write transaction is (the request's and its first entry's
    columns, the announcement to dispatch checked), so that the transaction only writes."""

    row: dict[str, Any]
    first: dict[str, Any]
    announcement: events.Outgoing | None


def submit_request(session: Session, **fields: Any) -> ServiceRequest:
    """Check a request (``check_submission``) and record it: the request, in the session as
    loaded, for callers that go on with it."""
    submission = check_submission(session, **fields)
    recorded = record_submission(session, submission)
    entry = as_loaded(session, TimelineEntry(**vars(recorded.timeline[0])))
    request = ServiceRequest(**submission.row)
    return as_loaded(session, request, timeline=[entry], duplicates=[])


def check_submission(
    session: Session,
    *,
    submitted_by: Principal,
    category: str,
    summary: str,
    resident_id: str | None = None,
    details: str = "",
    priority: str | None = None,
    channel: str = "api",
    external_ref: str | None = None,
    location: Location | None = None,
    address: str | None = None,
    community: str | None = None,
    reporter: Reporter | None = None,
    answers: Mapping[str, Any] | None = None,
    attachments: Sequence[Mapping[str, str]] = (),
) -> Submission:
    """Check a request against the catalogue and the grid and make its rows; reads only."""
    if channel not in CHANNELS:
        raise Invalid(f"Unknown channel {channel!r}", field="channel")
    found, place, latest = _place(
        session,
        category=category,
        resident_id=resident_id,
        address_text=address,
        community=community,
    )
    catalogue.check_submission(found)
    checked_answers = catalogue.check_answers(found["questions"] or (), answers or {})
    if location is not None and resident_id is not None:
        _check_lives_at(resident_id, Location(**place), location)
    elif location is not None:
        node = directory.find_node(session, directory.Place(**vars(location)))
        place = {level: getattr(node, level) for level in directory.LEVELS}
    priority = priority or found["default_priority"]
    now = utcnow()
    is_on_behalf = submitted_by.role != "resident"
    # Every column is given, those a new request does not have yet as NULL, so that the
    # request put in the session below is fully loaded.
    row: dict[str, Any] = dict.fromkeys(_requests.c.keys()) | {
        "id": uuid.uuid4().hex,
        "category": category,
        "priority": priority,
        "urgency": URGENCY[priority],
        "status": SUBMITTED,
        "summary": summary,
        "details": details,
        "channel": channel,
        "external_ref": external_ref,
        "submitted_by": submitted_by.subject,
        "is_on_behalf": is_on_behalf and resident_id is not None,
        "resident_id": resident_id,
        "reporter_name": reporter.name if reporter else None,
        "reporter_phone": reporter.phone if reporter else None,
        "address_text": address,
        "answers": checked_answers,
        "attachments": [_attachment(item, submitted_by, now) for item in attachments],
        "possible_duplicate_of": latest,
        "escalated_at": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        **place,
        **_deadlines(found, priority, now),
    }
    first = _timeline_row(
        row["id"],
        SUBMITTED,
        _submission_note(submitted_by, channel, row),
        at=now,
        action="submitted",
        actor=_actor(submitted_by),
        details={"possible_duplicate_of": latest} if latest else {},
        recorded_at=now,
    )
    return Submission(row=row, first=first, announcement=_announcement(row, at=now))


def record_submission(session: Session, submission: Submission) -> SimpleNamespace:
    """Store a checked request and, once it names a resident at a household, announce it to
    dispatch. The category, the resident's home and the duplicate it may repeat were read by
    the check, perhaps a moment earlier: the request is as if submitted then.

    The request as written comes back as a plain record (its columns, ``timeline`` and
    ``duplicates``), enough for ``RequestSchema``: two plain INSERTs rather than the ORM's unit
    of work, and no ORM objects, which cost more than the rest of the request together.
    """
    _insert_request.execute(session, submission.row)
    entry_id = _entry_id(session, submission.first)
    if submission.announcement is not None:
        messaging.stage_outgoing(session, submission.announcement)
    return as_recorded(submission, entry_id)


def as_recorded(submission: Submission, entry_id: int | None) -> SimpleNamespace:
    """A checked request as ``record_submission`` writes it, its first entry under
    ``entry_id`` (None: not written yet)."""
    entry = SimpleNamespace(id=entry_id, **submission.first)
    return SimpleNamespace(**submission.row, timeline=[entry], duplicates=[])


def _submission_note(by: Principal, channel: str, row: Mapping[str, Any]) -> str:
    note = f"Submitted through {channel}"
    if row["is_on_behalf"]:
        note += f", filed by {_actor(by)} on the resident's behalf"
    if row["resident_id"] is None:
        note += ", by " + (row["reporter_name"] or "an unregistered reporter")
    if row["household"] is None:
        note += f"; address kept as typed for staff to place: {row['address_text']!r}"
    if row["possible_duplicate_of"]:
        note += f"; may repeat request {row['possible_duplicate_of']}"
    return note


_ANNOUNCED_COLUMNS = ("id", "category", "priority", "summary", "resident_id", *directory.LEVELS)


def _announcement(request: Mapping[str, Any], *, at: datetime) -> events.Outgoing | None:
    """What tells dispatch of a request (its columns), once it names a resident at a
    household; None until then."""
    if request["resident_id"] is None or request["household"] is None:
        return None
    return events.REQUEST_SUBMITTED.outgoing(
        {
            "request_id": request["id"],
            "category": request["category"],
            "priority": request["priority"],
            "summary": request["summary"],
            "resident_id": request["resident_id"],
            "location": {level: request[level] for level in directory.LEVELS},
            "submitted_at": at,
        }
    )


def _announce(session: Session, request: ServiceRequest, at: datetime) -> bool:
    """Tell dispatch of a request once it names a resident at a household; False until then."""
    announcement = _announcement(
        {name: getattr(request, name) for name in _ANNOUNCED_COLUMNS}, at=at
    )
    if announcement is None:
        return False
    messaging.stage_outgoing(session, announcement)
    return True


def _actor(principal: Principal) -> str:
    return actor_address(principal)


def _attachment_url_refusal(url: str) -> str | None:
    """Why ``url`` is not an attachment's: it must be http or https (in any case), name a
    host, and hold no spaces, control characters or credentials, as it is shown to whoever
    reads the request; None when it is one."""
    if any(character.isspace() or not character.isprintable() for character in url):
        return "a URL has no spaces or control characters"
    try:
        parts = urlsplit(url)
        # Raises ValueError for a port that is not a number or is out of range.
        if parts.port == 0:
            return "port 0 is no port"
    except ValueError:
        return "not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "only http and https URLs are kept"
    if "@" in parts.netloc:
        return "credentials do not belong in a URL others will read"
    if not parts.hostname:
        return "it names no host"
    return None


def _check_attachment_url(url: str, *, field: str) -> None:
    why = _attachment_url_refusal(url)
    if why is not None:
        raise Invalid(f"Not an http or https URL to attach ({why}): {url[:100]!r}", field=field)


def _attachment(
    item: Mapping[str, str], by: Principal, at: datetime, *, field: str = "attachments"
) -> dict[str, str]:
    _check_attachment_url(item["url"], field=field)
    return {
        "url": item["url"],
        "description": item.get("description", ""),
        "added_by": _actor(by),
        "added_at": at.isoformat(),
    }


def get_request(
    session: Session,
    request_id: str,
    *,
    for_update: bool = False,
    with_timeline: bool = True,
) -> ServiceRequest:
    """The request; ``for_update`` locks its row until commit; without ``with_timeline`` its
    timeline is read only if asked for (news that only adds an entry need not read it)."""
    # Whoever reads a status in order to change it must lock the row: under READ COMMITTED
    # two writers could otherwise both read the old status and the later commit would win.
    # The lock makes the second wait, then read what the first committed. SQLite renders no
    # FOR UPDATE; its writers are serialised already.
    request = session.get(
        ServiceRequest,
        request_id,
        with_for_update=for_update or None,
        populate_existing=for_update,
        options=() if with_timeline else _WITHOUT_TIMELINE,
    )
    if request is None:
        raise no_request(request_id)
    return request


def _timeline_row(
    request_id: str,
    status: str,
    note: str,
    *,
    at: datetime,
    action: str | None = None,
    actor: str = "",
    is_public: bool = True,
    details: Mapping[str, Any] | None = None,
    recorded_at: datetime | None = None,
) -> dict[str, Any]:
    """The columns of one timeline entry: what happened to the request, when, by whom."""
    return {
        "request_id": request_id,
        "status": status,
        "action": action or status,
        "actor": actor,
        "is_public": is_public,
        "note": note,
        "details": dict(details or {}),
        "at": at,
        "recorded_at": recorded_at or utcnow(),
    }


def _record(
    session: Session, request: ServiceRequest, status: str, note: str, **entry: Any
) -> None:
    """Put an entry on ``request``'s timeline (``entry``: ``_timeline_row``'s keywords)."""
    session.add(TimelineEntry(request=request, **_timeline_row(request.id, status, note, **entry)))


def _move(request: ServiceRequest, action: str) -> str:
    """The status ``action`` takes the request to; IllegalTransition from any other."""
    allowed, target = TRANSITIONS[action]
    if request.status not in allowed:
        raise IllegalTransition(
            f"Request {request.id} is {request.status}: it cannot {action} from there "
            f"(only from {', '.join(sorted(allowed))})",
            current_status=request.status,
        )
    return target


def etag_of(request: ServiceRequest) -> str:
    """The request's ETag: its version, marked once time alone made it overdue."""
    return version_etag(request.version, *(("overdue",) if request.due_at < utcnow() else ()))


def _check_version(request: ServiceRequest, expected_versions: Collection[int] | None) -> None:
    """PreconditionFailed unless the locked request is at a version its editor read."""
    check_version(
        request.version,
        expected_versions,
        what=f"Request {request.id}",
        current_etag=etag_of(request),
    )


def _held(
    session: Session,
    request_id: str,
    by: Principal,
    operation: str,
    expected_versions: Collection[int] | None,
) -> ServiceRequest:
    """The request locked for a change, if ``by`` may make it (else as if it did not exist)
    and it is at one of ``expected_versions`` (None: at any)."""
    request = get_request(session, request_id, for_update=True)
    POLICY.check_owner(operation, by, request, hidden_as=no_request(request_id), session=session)
    _check_version(request, expected_versions)
    return request


def _change(
    session: Session,
    request: ServiceRequest,
    action: str,
    by: Principal,
    note: str,
    *,
    is_public: bool = True,
    details: Mapping[str, Any] | None = None,
) -> datetime:
    """Move ``request`` by ``action`` and put it on the timeline; when it happened."""
    request.status = _move(request, action)
    now = utcnow()
    request.updated_at = now
    if request.status not in OPEN:
        request.due_at = FAR_FUTURE
    _record(
        session,
        request,
        request.status,
        note,
        at=now,
        action=action,
        actor=_actor(by),
        is_public=is_public,
        details=details,
    )
    return now


def _reason(note: str | None, *, field: str = "reason") -> str:
    reason = (note or "").strip()
    if not reason:
        raise Invalid("Say why", field=field)
    return reason


def triage_request(
    session: Session,
    *,
    request_id: str,
    triaged_by: Principal,
    note: str | None = None,
    category: str | None = None,
    priority: str | None = None,
    location: Location | None = None,
    resident_id: str | None = None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """Staff look a request over: its category, priority, place and resident, as they judge;
    once it names a resident at a household, dispatch routes it (again)."""
    request = _held(session, request_id, triaged_by, TRIAGE, expected_versions)
    _move(request, "triage")
    changed: dict[str, Any] = {}
    if category is not None and category != request.category:
        directory.active_category(session, category)
        changed["category"] = (request.category, category)
        request.category = category
    if priority is not None and priority != request.priority:
        changed["priority"] = (request.priority, priority)
        request.priority = priority
        request.urgency = URGENCY[priority]
    if resident_id is not None:
        if session.get(Resident, resident_id) is None:
            raise no_resident(resident_id)
        request.resident_id = resident_id
        changed["resident_id"] = resident_id
    if request.resident_id is not None and (resident_id is not None or location is not None):
        # As at submission: the request of a resident is placed at their home.
        resident = session.get_one(Resident, request.resident_id)
        household = resident.household
        home = Location(
            household.community, household.building, household.unit, household.household
        )
        if location is not None:
            _check_lives_at(request.resident_id, home, location)
        location = home
    if location is not None:
        node = directory.find_node(session, directory.Place(**vars(location)))
        if node.kind != "household":
            raise Invalid(
                f"{node.path} is a {node.kind}: place it at a household", field="location"
            )
        for level in directory.LEVELS:
            setattr(request, level, getattr(node, level))
        changed["location"] = node.path
    if "category" in changed or "priority" in changed:
        deadlines = _deadlines(
            catalogue.get_category(session, request.category), request.priority, request.created_at
        )
        request.acknowledge_by, request.resolve_by = (
            deadlines["acknowledge_by"],
            deadlines["resolve_by"],
        )
        request.due_at = request.acknowledge_by
    text = "Triaged" + "".join(f"; {key} {value}" for key, value in changed.items())
    if note:
        text += f": {note.strip()}"
    now = _change(
        session, request, "triage", triaged_by, text, is_public=False, details={"changed": changed}
    )
    if request.assignment_id is None:
        _announce(session, request, now)
    return request


def start_service(
    session: Session,
    *,
    request_id: str,
    started_by: Principal,
    note: str | None = None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """The volunteer (or staff for them) is at work on the request."""
    request = _held(session, request_id, started_by, START, expected_versions)
    _change(
        session,
        request,
        "start",
        started_by,
        "In service" + (f": {note.strip()}" if note else ""),
    )
    request.due_at = request.resolve_by or FAR_FUTURE
    return request


def escalate_request(
    session: Session,
    *,
    request_id: str,
    escalated_by: Principal,
    reason: str | None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """Staff raise a request to the people responsible for its place."""
    why = _reason(reason)
    request = _held(session, request_id, escalated_by, ESCALATE, expected_versions)
    at = _change(session, request, "escalate", escalated_by, f"Escalated: {why}", is_public=False)
    request.escalated_at = at
    return request


def _withdraw(
    session: Session, request: ServiceRequest, action: str, by: Principal, note: str
) -> ServiceRequest:
    at = _change(session, request, action, by, note, details={"reason": note})
    messaging.stage(
        session,
        events.REQUEST_WITHDRAWN,
        {
            "request_id": request.id,
            "status": request.status,
            "reason": note,
            "withdrawn_by": _actor(by),
            "withdrawn_at": at,
        },
    )
    return request


def cancel_request(
    session: Session,
    *,
    request_id: str,
    cancelled_by: Principal,
    reason: str | None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """The resident (or staff, or the system that filed it) no longer needs the service."""
    why = _reason(reason)
    request = _held(session, request_id, cancelled_by, CANCEL, expected_versions)
    return _withdraw(session, request, "cancel", cancelled_by, f"Cancelled: {why}")


def reject_request(
    session: Session,
    *,
    request_id: str,
    rejected_by: Principal,
    reason: str | None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """Staff refuse a request the neighbourhood does not serve, saying why."""
    why = _reason(reason)
    request = _held(session, request_id, rejected_by, REJECT, expected_versions)
    return _withdraw(session, request, "reject", rejected_by, f"Rejected: {why}")


def merge_request(
    session: Session,
    *,
    request_id: str,
    into: str,
    merged_by: Principal,
    note: str | None = None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """Staff close a duplicate into the request it repeats, so that one need earns one credit;
    each names the other."""
    if into == request_id:
        raise Invalid("A request cannot be merged into itself", field="into")
    # Both rows are locked at once, in the order of their ids whichever is the duplicate: locked
    # in the caller's order, two merges of a pair in opposite directions (A into B, B into A)
    # would each hold the row the other waits for, a deadlock on PostgreSQL. Every check comes
    # after the locks, so the later of two merges reads what the earlier committed.
    session.execute(
        select(_requests.c.id)
        .where(_requests.c.id.in_((request_id, into)))
        .order_by(_requests.c.id)
        .with_for_update()
    ).all()
    duplicate = _held(session, request_id, merged_by, MERGE, expected_versions)
    original = get_request(session, into, for_update=True)
    if original.status in (CANCELLED, REJECTED) or original.duplicate_of is not None:
        raise IllegalTransition(
            f"Request {into} is {original.status}"
            + (
                f", merged into {original.duplicate_of}: merge into request "
                f"{original.duplicate_of}, which carries the need"
                if original.duplicate_of
                else ": merge into the request that carries the need"
            ),
            current_status=original.status,
            field="into",
        )
    # One level only: the request that carries a need is never itself merged, so reopening or
    # counting a duplicate finds that request at once. A merge into a merged request is refused
    # above; so is the merge of a request others were merged into (their original would close).
    merged_here = session.scalars(
        select(_requests.c.id)
        .where(_requests.c.duplicate_of == request_id)
        .order_by(_requests.c.id)
    ).all()
    if merged_here:
        raise IllegalTransition(
            f"Request {request_id} carries the need of {', '.join(merged_here)}, merged into it: "
            f"it cannot itself be merged; merge request {into} into {request_id} instead",
            current_status=duplicate.status,
            duplicates=list(merged_here),
        )
    text = f"Merged into request {into}" + (f": {note.strip()}" if note else "")
    _withdraw(session, duplicate, "merge", merged_by, text)
    duplicate.duplicate_of = into
    original.updated_at = utcnow()
    _record(
        session,
        original,
        original.status,
        f"Request {request_id} merged into this one",
        at=original.updated_at,
        action="merged",
        actor=_actor(merged_by),
        details={"duplicate": request_id},
    )
    return duplicate


def reopen_request(
    session: Session,
    *,
    request_id: str,
    reopened_by: Principal,
    reason: str | None,
    reopen_within: timedelta = REOPEN_WITHIN,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """The need came back or the work did not hold: the request goes back to the same team."""
    why = _reason(reason)
    request = _held(session, request_id, reopened_by, REOPEN, expected_versions)
    if request.duplicate_of is not None:
        # Its need is carried by the request it repeats: reopening it would count it twice.
        raise IllegalTransition(
            f"Request {request_id} was merged into {request.duplicate_of}: reopen that one, "
            "which carries the need",
            current_status=request.status,
            duplicate_of=request.duplicate_of,
        )
    _move(request, "reopen")
    if request.completed_at is not None and utcnow() > request.completed_at + reopen_within:
        raise IllegalTransition(
            f"Request {request_id} was completed more than {reopen_within.days} days ago: "
            "submit a new request",
            current_status=request.status,
        )
    at = _change(session, request, "reopen", reopened_by, f"Reopened: {why}")
    deadlines = _deadlines(catalogue.get_category(session, request.category), request.priority, at)
    request.acknowledge_by = deadlines["acknowledge_by"]
    request.resolve_by = deadlines["resolve_by"]
    request.due_at = deadlines["due_at"]
    request.accepted_by = request.completed_by = request.confirmed_by = None
    request.confirmed_as = None
    request.participants = None
    messaging.stage(
        session,
        events.REQUEST_REOPENED,
        {
            "request_id": request.id,
            "assignment_id": request.assignment_id,
            "reason": why,
            "reopened_by": _actor(reopened_by),
            "reopened_at": at,
        },
    )
    return request


@dataclass(frozen=True)
class Rating:
    """What the resident thought of the service: stars from 1 to 5, a comment, or both."""

    stars: int | None
    comment: str | None = None


def confirm_request(
    session: Session,
    *,
    request_id: str,
    confirmed_by: Principal,
    note: str | None = None,
    rating: Rating | None = None,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """The resident confirms the service was done (and may rate it); a member of their
    household or the leader of their place may do so for them, recorded as a proxy; staff do
    so giving a reason."""
    reason = (note or "").strip()
    request = get_request(session, request_id, for_update=True)
    relation = None
    # A grid leader's token names them as the resident they are.
    is_resident = confirmed_by.role in (RESIDENT, GRID_LEADER)
    if is_resident and confirmed_by.subject != request.resident_id:
        relation = directory.proxy_relation(
            session, request=request, resident_id=confirmed_by.subject
        )
    check_may_confirm(session, request, confirmed_by, reason, as_proxy=relation is not None)
    _check_version(request, expected_versions)
    if request.status == CONFIRMED:
        raise IllegalTransition(
            f"Request {request_id} is already confirmed", current_status=request.status
        )
    _move(request, "confirm")
    if request.assignee_id is None or request.hours is None:
        raise Conflict(f"Request {request_id} has no recorded volunteer hours to confirm")
    if confirmed_by.role == "staff":
        entry = f"Confirmed by staff {confirmed_by.subject} on the resident's behalf: {reason}"
        request.confirmed_as = "staff"
    elif relation is not None:
        entry = f"Confirmed by {confirmed_by.subject} ({relation}) as a proxy for the resident"
        entry += f": {reason}" if reason else ""
        request.confirmed_as = f"proxy: {relation}"
    else:
        entry = "Confirmed by the resident" + (f": {reason}" if reason else "")
        request.confirmed_as = "resident"
    request.confirmed_by = actor_address(confirmed_by)
    if rating is not None:
        request.rating, request.rating_comment = rating.stars, rating.comment
    details: dict[str, Any] = {"confirmed_by": request.confirmed_by, "as": request.confirmed_as}
    if rating is not None and rating.stars is not None:
        details["rating"] = rating.stars
    now = _change(session, request, "confirm", confirmed_by, entry, details=details)
    confirmed: dict[str, Any] = {
        "request_id": request.id,
        "category": request.category,
        "resident_id": request.resident_id,
        "volunteer_id": request.assignee_id,
        "hours": request.hours,
        "confirmed_by": request.confirmed_by,
        "accepted_by": request.accepted_by,
        "completed_by": request.completed_by,
        "confirmed_at": now,
    }
    if request.participants:
        confirmed["participants"] = request.participants
    messaging.stage(session, events.REQUEST_CONFIRMED, confirmed)
    return request


def close_unconfirmed(
    session: Session, *, confirm_within: timedelta = CONFIRM_WITHIN, batch: int = 500
) -> dict[str, int]:
    """Close the completed requests no one confirmed within ``confirm_within``, each saying
    so; no points are minted for them."""
    cutoff = utcnow() - confirm_within
    due = session.scalars(
        select(ServiceRequest.id)
        .where(ServiceRequest.status == COMPLETED, ServiceRequest.completed_at <= cutoff)
        .order_by(ServiceRequest.completed_at)
        .limit(batch)
    ).all()
    closed = 0
    for request_id in due:
        request = get_request(session, request_id, for_update=True, with_timeline=False)
        if request.status != COMPLETED:
            continue
        request.status = CLOSED
        request.updated_at = utcnow()
        request.due_at = FAR_FUTURE
        _record(
            session,
            request,
            CLOSED,
            f"Closed: not confirmed within {confirm_within.days} days of its completion, "
            "so no points were credited",
            at=request.updated_at,
            action="close",
            actor=INTAKE,
        )
        closed += 1
    return {"closed": closed}


def add_note(
    session: Session,
    *,
    request_id: str,
    text: str,
    written_by: Principal,
    is_public: bool | None = None,
    expected_versions: Collection[int] | None = None,
) -> TimelineEntry:
    """A note on the request's timeline: public (the resident sees it) or internal. Residents'
    own notes are public (None says so); others' are internal unless said to be public."""
    request = get_request(session, request_id, for_update=True, with_timeline=False)
    POLICY.check_owner(NOTE, written_by, request, hidden_as=no_request(request_id), session=session)
    _check_version(request, expected_versions)
    is_resident = written_by.role in (RESIDENT, GRID_LEADER)
    if is_public is None:
        is_public = is_resident
    if is_resident and not is_public:
        raise Invalid(
            "A resident's notes are public: leave public out, or send true", field="public"
        )
    request.updated_at = utcnow()
    entry = TimelineEntry(
        request=request,
        status=request.status,
        action="note",
        actor=_actor(written_by),
        is_public=is_public,
        note=text,
        details={},
        at=request.updated_at,
        recorded_at=request.updated_at,
    )
    session.add(entry)
    session.flush()
    return entry


def add_attachment(
    session: Session,
    *,
    request_id: str,
    url: str,
    description: str = "",
    added_by: Principal,
    expected_versions: Collection[int] | None = None,
) -> ServiceRequest:
    """A photo or document, by its URL, kept with the request while it is not withdrawn or
    closed, up to MAX_ATTACHMENTS of them, as at submission."""
    request = _held(session, request_id, added_by, ATTACH, expected_versions)
    if request.status in ENDED:
        raise IllegalTransition(
            f"Request {request_id} is {request.status}: nothing more is attached to it",
            current_status=request.status,
        )
    if len(request.attachments) >= MAX_ATTACHMENTS:
        raise Conflict(
            f"Request {request_id} has {len(request.attachments)} attachments, the most a "
            f"request may have ({MAX_ATTACHMENTS})",
            field="url",
        )
    now = utcnow()
    item = _attachment({"url": url, "description": description}, added_by, now, field="url")
    request.attachments = [*request.attachments, item]
    request.updated_at = now
    _record(
        session,
        request,
        request.status,
        f"Attachment added: {description or url}",
        at=now,
        action="attachment",
        actor=item["added_by"],
        details={"url": url},
    )
    return request


# What dispatch tells: assignment, no route, acceptance, completion.


def _news_outcome(current: str, status: str, note: str) -> tuple[bool, str]:
    """Whether news of ``status`` moves a request that is ``current``, and the note it is put
    on the timeline with (saying it was ignored when the request has ended)."""
    if current in NEWS[status]:
        return True, note
    if current in (CANCELLED, REJECTED, CLOSED) and status != NEEDS_TRIAGE:
        return False, f"Ignored news ({note}): the request is {current}"
    return False, note


def _news(
    session: Session,
    request: ServiceRequest,
    status: str,
    note: str,
    at: datetime,
    details: Mapping[str, Any],
) -> bool:
    """Put dispatch's news on the timeline and move the request if the news moves it."""
    moves, note = _news_outcome(request.status, status, note)
    if moves:
        request.status = status
        if status == ACCEPTED:
            request.due_at = request.resolve_by or FAR_FUTURE
        elif status == COMPLETED:
            request.due_at = FAR_FUTURE
            request.completed_at = utcnow()
    request.updated_at = utcnow()
    _record(session, request, status, note, at=at, actor=DISPATCH, details=details)
    return moves


@dataclass(frozen=True)
class Assignee:
    """Who dispatch handed a request to."""

    type: str
    id: str
    name: str


# The assignment is the busiest news (one a request): its row is read and written with plain
# statements, since the ORM's load and unit of work cost more than the rest of its handling.
_assignment_news_of = DirectStatement(
    select(
        _requests.c.status,
        _requests.c.assignment_id,
        _requests.c.assignee_name,
        _requests.c.version,
    )
    .where(_requests.c.id == bindparam("request_id"))
    .with_for_update()
)
# The columns to change are the parameters, the request's id ``where_id``.
_update_request = DirectStatement(update(_requests).where(_requests.c.id == bindparam("where_id")))


def record_assignment(
    session: Session, *, request_id: str, assignment_id: str, assignee: Assignee, at: datetime
) -> None:
    """Dispatch assigned the request to someone."""
    read = _assignment_news_of.first(session, {"request_id": request_id})
    if read is None:
        raise no_request(request_id)
    status, followed_id, followed_name, version = read
    # The first assignment intake hears of is the one it follows; news of another is kept in
    # the timeline, saying so, but changes nothing.
    is_followed = followed_id in (None, assignment_id)
    if is_followed:
        note = f"Assigned to {assignee.name}"
    else:
        note = (
            f"Ignored assignment {assignment_id} to {assignee.name}: "
            f"the request stays with assignment {followed_id}"
            + (f" ({followed_name})" if followed_name else "")
        )
    details = {
        "assignment_id": assignment_id,
        "assignee_type": assignee.type,
        "assignee_id": assignee.id,
        "assignee_name": assignee.name,
    }
    moves, note = _news_outcome(status, ASSIGNED, note)
    now = utcnow()
    changed: dict[str, Any] = {"updated_at": now, "version": version + 1}
    if moves:
        changed["status"] = ASSIGNED
    if is_followed and status not in (CONFIRMED, CLOSED, CANCELLED, REJECTED):
        changed.update(
            assignment_id=assignment_id,
            assignee_type=assignee.type,
            assignee_id=assignee.id,
            assignee_name=assignee.name,
        )
    _update_request.execute(session, {**changed, "where_id": request_id})
    entry = _timeline_row(
        request_id, ASSIGNED, note, at=at, actor=DISPATCH, details=details, recorded_at=now
    )
    entry_id = _entry_id(session, entry)
    loaded = session.identity_map.get(session.identity_key(ServiceRequest, request_id))
    if isinstance(loaded, ServiceRequest):
        _as_written(session, loaded, changed, TimelineEntry(id=entry_id, **entry))


def _as_written(
    session: Session, request: ServiceRequest, changed: Mapping[str, Any], entry: TimelineEntry
) -> None:
    """A request this session had loaded, as the plain statements just wrote it."""
    for name, value in changed.items():
        set_committed_value(request, name, value)
    if "timeline" in request.__dict__:
        set_committed_value(request, "timeline", [*request.timeline, as_loaded(session, entry)])


def record_unrouted(session: Session, *, request_id: str, reason: str, at: datetime) -> None:
    """Dispatch found no one for the request: staff must triage it."""
    _news(
        session,
        get_request(session, request_id, for_update=True, with_timeline=False),
        NEEDS_TRIAGE,
        f"No route: {reason}",
        at,
        {"reason": reason},
    )


def _on_behalf(by: str, volunteer_id: str) -> str:
    """Staff acting for a volunteer are recorded as such."""
    if by == address("volunteer", volunteer_id):
        return ""
    return f" ({by} on behalf of volunteer {volunteer_id})"


def record_acceptance(
    session: Session,
    *,
    request_id: str,
    assignment_id: str,
    volunteer_id: str,
    accepted_by: str,
    at: datetime,
) -> None:
    """The volunteer (or staff for them) accepted the assignment."""
    details = {
        "assignment_id": assignment_id,
        "volunteer_id": volunteer_id,
        "accepted_by": accepted_by,
    }
    request = get_request(session, request_id, for_update=True, with_timeline=False)
    _news(
        session,
        request,
        ACCEPTED,
        "Accepted by the volunteer" + _on_behalf(accepted_by, volunteer_id),
        at,
        details,
    )
    if request.status in (CANCELLED, REJECTED, CLOSED):
        return
    if request.assignment_id in (None, assignment_id):
        request.accepted_by = accepted_by
    request.assignment_id = request.assignment_id or assignment_id
    request.assignee_id = request.assignee_id or volunteer_id
    request.assignee_type = request.assignee_type or "volunteer"


def record_completion(
    session: Session,
    *,
    request_id: str,
    assignment_id: str,
    volunteer_id: str,
    hours: Decimal,
    completed_by: str,
    at: datetime,
    participants: Sequence[Mapping[str, Any]] = (),
) -> None:
    """The volunteer (or staff for them) finished the work, taking ``hours``; group work's
    ``participants`` (each with their own hours) are kept for the confirmation to carry."""
    request = get_request(session, request_id, for_update=True, with_timeline=False)
    # As with assignments: news of an assignment other than the one followed, or of any work
    # once the resident has confirmed (the points are then settled), is kept in the timeline,
    # saying so, but changes nothing.
    if request.status == CONFIRMED:
        note = (
            f"Ignored completion of assignment {assignment_id} in {hours} hour(s): "
            "the request is already confirmed"
        )
    elif request.assignment_id not in (None, assignment_id):
        note = (
            f"Ignored completion of assignment {assignment_id} in {hours} hour(s): "
            f"the request stays with assignment {request.assignment_id}"
            + (f" ({request.assignee_name})" if request.assignee_name else "")
        )
    else:
        note = None
    group = _group(participants)
    details: dict[str, Any] = {
        "assignment_id": assignment_id,
        "volunteer_id": volunteer_id,
        "hours": str(hours),
        "completed_by": completed_by,
    }
    if group is not None:
        details["participants"] = group
    if note is not None:
        request.updated_at = utcnow()
        _record(session, request, COMPLETED, note, at=at, actor=DISPATCH, details=details)
        return
    together = f", {len(group)} volunteers taking part" if group is not None else ""
    moved = _news(
        session,
        request,
        COMPLETED,
        f"Completed in {hours} hour(s)" + _on_behalf(completed_by, volunteer_id) + together,
        at,
        details,
    )
    if not moved and request.status != COMPLETED:
        return
    request.assignment_id = request.assignment_id or assignment_id
    request.assignee_id = volunteer_id
    request.assignee_type = request.assignee_type or "volunteer"
    request.hours = hours
    request.completed_by = completed_by
    request.participants = group


def _group(participants: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Group work's participants as the confirmation carries them; None for one alone."""
    if len(participants) < 2:
        return None
    return [
        {
            "volunteer_id": person["volunteer_id"],
            "hours": str(person["hours"]),
            "volunteer_name": person.get("volunteer_name"),
        }
        for person in participants
    ]


def record_earning_refused(session: Session, *, request_id: str, reason: str, at: datetime) -> None:
    """The moral bank refused to credit the confirmed hours: the request says why."""
    request = get_request(session, request_id, for_update=True, with_timeline=False)
    request.updated_at = utcnow()
    _record(
        session,
        request,
        request.status,
        f"No points credited: {reason}",
        at=at,
        action="earning_refused",
        actor="system:points",
        is_public=False,
        details={"earning_refused": reason},
    )
