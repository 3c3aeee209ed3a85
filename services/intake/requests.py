"""Requests through the one door: submitted, followed through dispatch, confirmed by residents."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Select, Table, insert, select
from sqlalchemy.orm import Session, lazyload, make_transient_to_detached

from services.intake.directory import find_category_and_home
from services.intake.models import ServiceRequest, TimelineEntry, messaging
from services.intake.policy import PartyToTheService as PartyToTheService
from services.intake.policy import check_may_confirm, no_request
from shared import events
from shared.auth import Principal
from shared.clock import utcnow
from shared.errors import Conflict, Invalid
from shared.paging import fetch_page
from shared.people import address

SUBMITTED = "submitted"
NEEDS_TRIAGE = "needs_triage"
ASSIGNED = "assigned"
ACCEPTED = "accepted"
COMPLETED = "completed"
CONFIRMED = "confirmed"
STATUSES = (SUBMITTED, NEEDS_TRIAGE, ASSIGNED, ACCEPTED, COMPLETED, CONFIRMED)
# Events from dispatch may be handled out of order by concurrent workers: a request's
# status only moves forward along this order, whatever order its events arrive in.
_RANK = {status: rank for rank, status in enumerate(STATUSES)}
CHANNELS = ("api", "app", "walk_in", "talk_point", "watch_post", "patrol", "hotline", "phone")


_requests = cast(Table, ServiceRequest.__table__)
_insert_request = insert(_requests)
_WITHOUT_TIMELINE = (lazyload(ServiceRequest.timeline),)
_timeline = cast(Table, TimelineEntry.__table__)
_insert_entry = insert(_timeline).returning(_timeline.c.id)


@dataclass(frozen=True)
class Location:
    community: str
    building: str
    unit: str
    household: str


def submit_request(
    session: Session,
    *,
    submitted_by: Principal,
    category: str,
    summary: str,
    resident_id: str,
    details: str = "",
    priority: str | None = None,
    channel: str = "api",
    external_ref: str | None = None,
    location: Location | None = None,
) -> ServiceRequest:
    """Validate a request against the catalogue and the grid, store it and announce it."""
    default_priority, home = find_category_and_home(
        session, category=category, resident_id=resident_id
    )
    if location is not None and (
        location.community,
        location.building,
        location.unit,
        location.household,
    ) != (home.community, home.building, home.unit, home.number):
        raise Invalid(
            f"Resident {resident_id} lives at {home.community}/{home.building}-{home.unit}-"
            f"{home.number}, not at the location given",
            field="location",
        )
    if channel not in CHANNELS:
        raise Invalid(f"Unknown channel {channel!r}", field="channel")
    now = utcnow()
    # Every column is given, those a new request does not have yet as NULL, so that the
    # request put in the session below is fully loaded.
    row: dict[str, Any] = dict.fromkeys(_requests.c.keys()) | {
        "id": uuid.uuid4().hex,
        "category": category,
        "priority": priority or default_priority,
        "status": SUBMITTED,
        "summary": summary,
        "details": details,
        "channel": channel,
        "external_ref": external_ref,
        "submitted_by": submitted_by.subject,
        "resident_id": resident_id,
        "community": home.community,
        "building": home.building,
        "unit": home.unit,
        "household": home.number,
        "created_at": now,
        "updated_at": now,
    }
    first: dict[str, Any] = {
        "request_id": row["id"],
        "status": SUBMITTED,
        "note": f"Submitted through {channel}",
        "details": {},
        "at": now,
    }
    # Two plain INSERTs rather than the ORM's unit of work, which cost more than the rest of
    # the request; the rows are then put in the session as loaded, for callers that go on.
    session.execute(_insert_request, row)
    entry_id = session.execute(_insert_entry, first).scalar_one()
    request = ServiceRequest(**row)
    request.timeline = [TimelineEntry(id=entry_id, **first)]
    make_transient_to_detached(request.timeline[0])
    make_transient_to_detached(request)
    session.add(request)
    messaging.stage(
        session,
        events.REQUEST_SUBMITTED,
        {
            "request_id": request.id,
            "category": request.category,
            "priority": request.priority,
            "summary": request.summary,
            "resident_id": request.resident_id,
            "location": {
                "community": request.community,
                "building": request.building,
                "unit": request.unit,
                "household": request.household,
            },
            "submitted_at": now,
        },
    )
    return request


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


@dataclass(frozen=True)
class RequestFilter:
    status: tuple[str, ...] = ()
    category: str | None = None
    community: str | None = None
    building: str | None = None
    resident_id: str | None = None


def _filtered(query: Select[Any], where: RequestFilter) -> Select[Any]:
    if where.status:
        query = query.where(ServiceRequest.status.in_(where.status))
    for column, value in (
        (ServiceRequest.category, where.category),
        (ServiceRequest.community, where.community),
        (ServiceRequest.building, where.building),
        (ServiceRequest.resident_id, where.resident_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


def list_requests(
    session: Session, *, where: RequestFilter, offset: int, limit: int
) -> tuple[list[ServiceRequest], int]:
    """A page of requests, newest first, and how many match in all."""
    query = _filtered(select(ServiceRequest), where).order_by(
        ServiceRequest.created_at.desc(), ServiceRequest.id
    )
    return fetch_page(session, query, offset=offset, limit=limit)


def confirm_request(
    session: Session, *, request_id: str, confirmed_by: Principal, note: str | None = None
) -> ServiceRequest:
    """The resident confirms the service was done, or staff do so for them, giving a reason."""
    reason = (note or "").strip()
    request = get_request(session, request_id, for_update=True)
    check_may_confirm(request, confirmed_by, reason)
    if request.status == CONFIRMED:
        raise Conflict(f"Request {request_id} is already confirmed")
    if request.status != COMPLETED:
        raise Conflict(
            f"Request {request_id} is {request.status}; only a completed request can be confirmed"
        )
    if request.assignee_id is None or request.hours is None:
        raise Conflict(f"Request {request_id} has no recorded volunteer hours to confirm")
    if confirmed_by.role == "staff":
        entry = f"Confirmed by staff {confirmed_by.subject} on the resident's behalf: {reason}"
    else:
        entry = "Confirmed by the resident" + (f": {reason}" if reason else "")
    now = utcnow()
    request.status = CONFIRMED
    request.updated_at = now
    request.confirmed_by = confirmed_by.address
    _record(
        session, request, CONFIRMED, entry, at=now, details={"confirmed_by": request.confirmed_by}
    )
    messaging.stage(
        session,
        events.REQUEST_CONFIRMED,
        {
            "request_id": request.id,
            "category": request.category,
            "resident_id": request.resident_id,
            "volunteer_id": request.assignee_id,
            "hours": request.hours,
            "confirmed_by": request.confirmed_by,
            "accepted_by": request.accepted_by,
            "completed_by": request.completed_by,
            "confirmed_at": now,
        },
    )
    return request


def _record(
    session: Session,
    request: ServiceRequest,
    status: str,
    note: str,
    *,
    at: datetime,
    details: Mapping[str, Any] | None = None,
) -> None:
    session.add(
        TimelineEntry(request=request, status=status, note=note, details=dict(details or {}), at=at)
    )


def _advance(
    session: Session,
    request: ServiceRequest,
    status: str,
    note: str,
    at: datetime,
    details: Mapping[str, Any],
) -> ServiceRequest:
    if _RANK[status] > _RANK[request.status]:
        request.status = status
    request.updated_at = utcnow()
    _record(session, request, status, note, at=at, details=details)
    return request


@dataclass(frozen=True)
class Assignee:
    """Who dispatch handed a request to."""

    type: str
    id: str
    name: str


def record_assignment(
    session: Session, *, request_id: str, assignment_id: str, assignee: Assignee, at: datetime
) -> None:
    """Dispatch assigned the request to someone."""
    request = get_request(session, request_id, for_update=True, with_timeline=False)
    # The first assignment intake hears of is the one it follows; news of another is kept in
    # the timeline, saying so, but changes nothing.
    is_followed = request.assignment_id in (None, assignment_id)
    if is_followed:
        note = f"Assigned to {assignee.name}"
    else:
        note = (
            f"Ignored assignment {assignment_id} to {assignee.name}: "
            f"the request stays with assignment {request.assignment_id}"
            + (f" ({request.assignee_name})" if request.assignee_name else "")
        )
    details = {
        "assignment_id": assignment_id,
        "assignee_type": assignee.type,
        "assignee_id": assignee.id,
        "assignee_name": assignee.name,
    }
    _advance(session, request, ASSIGNED, note, at, details)
    if is_followed and request.status != CONFIRMED:
        request.assignment_id = assignment_id
        request.assignee_type = assignee.type
        request.assignee_id = assignee.id
        request.assignee_name = assignee.name


def record_unrouted(session: Session, *, request_id: str, reason: str, at: datetime) -> None:
    """Dispatch found no one for the request: staff must triage it."""
    _advance(
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
    request = _advance(
        session,
        get_request(session, request_id, for_update=True, with_timeline=False),
        ACCEPTED,
        "Accepted by the volunteer" + _on_behalf(accepted_by, volunteer_id),
        at,
        details,
    )
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
) -> None:
    """The volunteer (or staff for them) finished the work, taking ``hours``."""
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
    details = {
        "assignment_id": assignment_id,
        "volunteer_id": volunteer_id,
        "hours": str(hours),
        "completed_by": completed_by,
    }
    if note is not None:
        request.updated_at = utcnow()
        _record(session, request, COMPLETED, note, at=at, details=details)
        return
    _advance(
        session,
        request,
        COMPLETED,
        f"Completed in {hours} hour(s)" + _on_behalf(completed_by, volunteer_id),
        at,
        details,
    )
    request.assignment_id = request.assignment_id or assignment_id
    request.assignee_id = volunteer_id
    request.assignee_type = request.assignee_type or "volunteer"
    request.hours = hours
    request.completed_by = completed_by


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
        details={"earning_refused": reason},
    )
