"""Who answers what: teams, volunteers, routing rules, and the assignments they produce."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, cast

from sqlalchemy import Select, Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.dispatch.models import (
    Assignment,
    RoutingRule,
    Team,
    Volunteer,
    folded,
    messaging,
)
from services.dispatch.policy import ACCEPT, COMPLETE, POLICY, no_assignment
from shared import events, notifications
from shared.auth import Principal
from shared.clock import utcnow
from shared.database import DirectStatement
from shared.errors import Conflict, Invalid, NotFound
from shared.fields import HOURS_MAX, HOURS_PLACES
from shared.paging import fetch_page
from shared.people import address
from shared.policy import TEAM_LEAD

ASSIGNED = "assigned"
ACCEPTED = "accepted"
COMPLETED = "completed"
CONFIRMED = "confirmed"
# The request was cancelled, rejected or merged away at intake before the work was done.
WITHDRAWN = "withdrawn"
STATUSES = (ASSIGNED, ACCEPTED, COMPLETED, CONFIRMED, WITHDRAWN)


class Unchanged:
    """A field an update leaves as it is (``None`` would clear it)."""


UNCHANGED = Unchanged()


def _team_named(session: Session, name: str) -> str | None:
    """The id of the team whose name is ``name`` ignoring case (``models.folded``)."""
    return session.scalars(select(Team.id).where(Team.name_key == folded(name))).first()


def create_team(
    session: Session, *, name: str, description: str = "", team_id: str | None = None
) -> Team:
    """Register a volunteer team; team names are unique."""
    conflict = Conflict(f"A team named {name!r} already exists", field="name")
    if _team_named(session, name) is not None:
        raise conflict
    team = Team(id=team_id or uuid.uuid4().hex, name=name, description=description)
    try:
        # The check cannot see a team another transaction is adding at this moment; the unique
        # name settles that race, and the savepoint leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(team)
    except IntegrityError:
        raise conflict from None
    return team


def no_team(team_id: str) -> NotFound:
    """The answer for a team that does not exist."""
    return NotFound(f"No team {team_id}")


def update_team(
    session: Session,
    *,
    team_id: str,
    name: str | None = None,
    description: str | None = None,
    lead_volunteer_id: str | Unchanged | None = UNCHANGED,
) -> Team:
    """Rename or describe a team, or name (``None``: no longer name) the volunteer who leads
    it: an active member of the team."""
    team = session.get(Team, team_id, with_for_update=True)
    if team is None:
        raise no_team(team_id)
    if name is not None and name != team.name:
        if _team_named(session, name) not in (None, team.id):
            raise Conflict(f"A team named {name!r} already exists", field="name")
        team.name = name
    if description is not None:
        team.description = description
    if not isinstance(lead_volunteer_id, Unchanged):
        if lead_volunteer_id is not None:
            _check_lead(session, team, lead_volunteer_id)
        team.lead_volunteer_id = lead_volunteer_id
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"A team named {name!r} already exists", field="name") from None
    return team


def _check_lead(session: Session, team: Team, volunteer_id: str) -> None:
    lead = session.get(Volunteer, volunteer_id)
    if lead is None or lead.team_id != team.id or not lead.is_active:
        named = f"Volunteer {volunteer_id}" + ("" if lead is None else f" ({lead.name})")
        raise Invalid(
            f"{named} is not an active member of team {team.name!r}, so cannot lead it",
            field="lead_volunteer_id",
        )


def _led_by(lead_volunteer_id: str) -> Select[str]:
    """The ids of the volunteers of the teams ``lead_volunteer_id`` leads."""
    return (
        select(Volunteer.id)
        .join(Team, Volunteer.team_id == Team.id)
        .where(Team.lead_volunteer_id == lead_volunteer_id)
    )


def list_teams(session: Session, *, offset: int = 0, limit: int = 50) -> tuple[list[Team], int]:
    """Teams by name."""
    return fetch_page(
        session, select(Team).order_by(Team.name, Team.id), offset=offset, limit=limit
    )


def register_volunteer(
    session: Session,
    *,
    name: str,
    team_id: str | None = None,
    phone: str | None = None,
    volunteer_id: str | None = None,
) -> Volunteer:
    """Register a volunteer, optionally as a member of a team."""
    if team_id is not None and session.get(Team, team_id) is None:
        raise Invalid(f"No team {team_id}", field="team_id")
    volunteer_id = volunteer_id or uuid.uuid4().hex
    conflict = Conflict(f"Volunteer {volunteer_id} already exists")
    if session.get(Volunteer, volunteer_id) is not None:
        raise conflict
    volunteer = Volunteer(id=volunteer_id, name=name, team_id=team_id, phone=phone, is_active=True)
    try:
        # Only given ids (the demo seed) can collide; two seeds at once meet here.
        with session.begin_nested():
            session.add(volunteer)
    except IntegrityError:
        raise conflict from None
    return volunteer


def list_volunteers(
    session: Session,
    *,
    team_id: str | None = None,
    lead_volunteer_id: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Volunteer], int]:
    """Volunteers by name, optionally one team's, or those of the teams someone leads."""
    query = select(Volunteer).order_by(Volunteer.name, Volunteer.id)
    if team_id is not None:
        query = query.where(Volunteer.team_id == team_id)
    if lead_volunteer_id is not None:
        query = query.where(Volunteer.id.in_(_led_by(lead_volunteer_id)))
    return fetch_page(session, query, offset=offset, limit=limit)


def add_routing_rule(
    session: Session,
    *,
    category: str,
    volunteer_id: str,
    precedence: int = 100,
    rule_id: str | None = None,
) -> RoutingRule:
    """Route requests of ``category`` to an active volunteer."""
    # No constraint forbids a duplicate rule, so rules for one volunteer are added one at a
    # time: the volunteer's row is locked (NO KEY UPDATE, so assignments referring to the
    # volunteer still go ahead) and the duplicate check below then sees any rule just committed.
    volunteer = session.get(Volunteer, volunteer_id, with_for_update={"key_share": True})
    if volunteer is None:
        raise Invalid(f"No volunteer {volunteer_id}", field="volunteer_id")
    if not volunteer.is_active:
        raise Invalid(f"Volunteer {volunteer_id} is not active", field="volunteer_id")
    duplicate = session.scalars(
        select(RoutingRule).filter_by(category=category, volunteer_id=volunteer_id, is_active=True)
    ).first()
    if duplicate is not None:
        raise Conflict(
            f"Rule {duplicate.id} already routes {category} to volunteer {volunteer_id}",
            field="category",
        )
    rule = RoutingRule(
        id=rule_id or uuid.uuid4().hex,
        category=category,
        volunteer=volunteer,
        precedence=precedence,
        is_active=True,
        created_at=utcnow(),
    )
    session.add(rule)
    session.flush()
    return rule


def list_routing_rules(
    session: Session, *, category: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[RoutingRule], int]:
    """Rules by category, the one that wins first."""
    query = select(RoutingRule).order_by(
        RoutingRule.category, RoutingRule.precedence, RoutingRule.created_at, RoutingRule.id
    )
    if category is not None:
        query = query.where(RoutingRule.category == category)
    return fetch_page(session, query, offset=offset, limit=limit)


_assignments = cast(Table, Assignment.__table__)
# Only the first assignment of a request is kept, whichever message about it comes first (a
# re-submission, a replay under a new id, or a concurrent one, which waits for this one).
_ASSIGN_ONCE = {
    name: DirectStatement(
        insert_.insert(_assignments)
        .on_conflict_do_nothing(index_elements=[_assignments.c.request_id])
        .returning(_assignments.c.id)
    )
    for name, insert_ in (("postgresql", postgresql), ("sqlite", sqlite))
}
_route = DirectStatement(
    select(RoutingRule.id, Volunteer.id.label("volunteer_id"), Volunteer.name)
    .join(RoutingRule.volunteer)
    .where(
        RoutingRule.category == bindparam("category"),
        RoutingRule.is_active.is_(True),
        Volunteer.is_active.is_(True),
    )
    .order_by(RoutingRule.precedence, RoutingRule.created_at, RoutingRule.id)
    .limit(1)
)


class Route(NamedTuple):
    id: str
    volunteer_id: str
    name: str


def find_route(session: Session, *, category: str) -> Route | None:
    """The active rule with the lowest precedence for ``category`` whose volunteer is active:
    its ``id``, and its volunteer's ``volunteer_id`` and ``name``."""
    found = _route.first(session, {"category": category})
    return None if found is None else Route(*found)


def _is_assigned(session: Session, request_id: str) -> bool:
    return (
        session.scalars(select(Assignment.id).filter_by(request_id=request_id)).first() is not None
    )


def assign_request(
    session: Session,
    *,
    request_id: str,
    category: str,
    priority: str,
    summary: str,
    resident_id: str,
    location: Mapping[str, str],
) -> None:
    """A request was submitted: hand it to the volunteer its category routes to."""
    # Another message about the same request (a re-submission, a replay under a new id)
    # must not assign it twice, nor report it unrouted once it is assigned.
    now = utcnow()
    route = find_route(session, category=category)
    if route is None:
        if _is_assigned(session, request_id):
            return
        messaging.stage(
            session,
            events.REQUEST_UNROUTED,
            {
                "request_id": request_id,
                "reason": f"No active volunteer is routed for category {category!r}",
                "unrouted_at": now,
            },
        )
        return
    row = {
        "id": uuid.uuid4().hex,
        "request_id": request_id,
        "category": category,
        "priority": priority,
        "summary": summary,
        "resident_id": resident_id,
        "location": dict(location),
        "volunteer_id": route.volunteer_id,
        "rule_id": route.id,
        "status": ASSIGNED,
        "note": "",
        "assigned_at": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect in _ASSIGN_ONCE:
        if _ASSIGN_ONCE[dialect].first(session, row) is None:
            return
    elif _is_assigned(session, request_id):
        return
    else:
        session.execute(insert(_assignments), row)
    messaging.stage(
        session,
        events.REQUEST_ASSIGNED,
        {
            "request_id": request_id,
            "assignment_id": row["id"],
            "assignee_type": "volunteer",
            "assignee_id": route.volunteer_id,
            "assignee_name": route.name,
            "assigned_at": now,
        },
    )
    messaging.notify(
        session,
        notifications.ASSIGNMENT_CREATED,
        recipient=address("volunteer", route.volunteer_id),
        request_id=request_id,
        assignment_id=row["id"],
        category=category,
        summary=summary,
        location=row["location"],
        priority=priority,
    )


def get_assignment(session: Session, assignment_id: str) -> Assignment:
    """An assignment."""
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise no_assignment(assignment_id)
    return assignment


def list_assignments(
    session: Session,
    *,
    volunteer_id: str | None = None,
    lead_volunteer_id: str | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Assignment], int]:
    """Assignments, newest first; optionally those of the teams ``lead_volunteer_id`` leads."""
    query = select(Assignment).order_by(Assignment.assigned_at.desc(), Assignment.id)
    if volunteer_id is not None:
        query = query.where(Assignment.volunteer_id == volunteer_id)
    if lead_volunteer_id is not None:
        query = query.where(Assignment.volunteer_id.in_(_led_by(lead_volunteer_id)))
    if status is not None:
        query = query.where(Assignment.status == status)
    return fetch_page(session, query, offset=offset, limit=limit)


def _address_of(actor: Principal) -> str:
    # A team lead is a volunteer: steering their team's work, they are recorded as that person.
    return address("volunteer", actor.subject) if actor.role == TEAM_LEAD else actor.address


# Each action on an assignment, by the name of its operation in dispatch's policy.
_OPERATIONS = {"accept": ACCEPT, "complete": COMPLETE}


def _held_for_action(
    session: Session, assignment_id: str, actor: Principal, action: str
) -> Assignment:
    # Locked until commit, so that of two concurrent actions the second sees the status the
    # first left (READ COMMITTED would otherwise let both act on the same old status). Only the
    # assignment's row: the eagerly joined volunteer cannot be locked across an outer join.
    assignment = session.get(Assignment, assignment_id, with_for_update={"of": Assignment})
    if assignment is None:
        raise no_assignment(assignment_id)
    POLICY.check_owner(
        _OPERATIONS[action], actor, assignment, hidden_as=no_assignment(assignment_id)
    )
    return assignment


class IllegalTransition(Conflict):
    """The assignment's status does not allow what was asked; the problem names the status."""

    code = "illegal-transition"
    title = "Not allowed in the assignment's current status"


# What each action on an assignment needs its status to be, the status it leaves, and how the
# refusal names it done. Work is accepted once and reported done once: an assignment already
# accepted, completed, confirmed or withdrawn is past it, and the hours reported stand.
TRANSITIONS: dict[str, tuple[str, str, str]] = {
    "accept": (ASSIGNED, ACCEPTED, "accepted"),
    "complete": (ACCEPTED, COMPLETED, "completed"),
}


def _move(assignment: Assignment, action: str) -> str:
    """The status ``action`` takes ``assignment`` to; IllegalTransition from any other."""
    needed, target, done = TRANSITIONS[action]
    if assignment.status == needed:
        return target
    if assignment.status == WITHDRAWN:
        why = f"Assignment {assignment.id} was withdrawn: {assignment.note}"
    elif assignment.status == CONFIRMED:
        why = (
            f"Assignment {assignment.id} is completed and confirmed by the resident: it cannot "
            f"be {done} again"
        )
    elif assignment.status == ASSIGNED:
        why = f"Assignment {assignment.id} is assigned; accept it before completing it"
    else:
        why = f"Assignment {assignment.id} was already {assignment.status}"
    raise IllegalTransition(why, current_status=assignment.status)


def accept_assignment(
    session: Session, *, assignment_id: str, accepted_by: Principal
) -> Assignment:
    """The volunteer takes the job on; the resident is told who is coming."""
    assignment = _held_for_action(session, assignment_id, accepted_by, "accept")
    status = _move(assignment, "accept")
    now = utcnow()
    assignment.status = status
    assignment.accepted_at = now
    # Staff or a team lead acting for the volunteer are recorded as themselves, never as them.
    assignment.accepted_by = _address_of(accepted_by)
    messaging.stage(
        session,
        events.REQUEST_ACCEPTED,
        {
            "request_id": assignment.request_id,
            "assignment_id": assignment.id,
            "volunteer_id": assignment.volunteer_id,
            "accepted_by": assignment.accepted_by,
            "accepted_at": now,
        },
    )
    messaging.notify(
        session,
        notifications.REQUEST_ACCEPTED,
        recipient=address("resident", assignment.resident_id),
        request_id=assignment.request_id,
        volunteer_name=assignment.volunteer.name,
        category=assignment.category,
        summary=assignment.summary,
    )
    session.flush()
    return assignment


@dataclass(frozen=True)
class Participant:
    """A volunteer who took part in a piece of group work, and the hours they gave to it."""

    volunteer_id: str
    hours: Decimal


def _check_hours(hours: Decimal, field: str) -> None:
    hours = Decimal(hours)
    if not Decimal(0) < hours <= HOURS_MAX or hours != round(hours, HOURS_PLACES):
        raise Invalid(
            f"Hours must be more than 0 and at most {HOURS_MAX}, with {HOURS_PLACES} places "
            "at most",
            field=field,
        )


def _participants(
    session: Session, assignment: Assignment, named: Sequence[Participant], hours: Decimal
) -> list[Volunteer]:
    """The volunteers ``named`` as having done ``assignment``'s work, each checked: named
    once, the assigned volunteer among them, every other an active member of their team, none
    giving the service more time than it took (``hours``) and one giving it all of it."""
    holder = assignment.volunteer
    seen: set[str] = set()
    for person in named:
        if person.volunteer_id in seen:
            raise Invalid(
                f"Volunteer {person.volunteer_id} is named twice among the participants",
                field="participants",
            )
        seen.add(person.volunteer_id)
        _check_hours(person.hours, "participants")
        if Decimal(person.hours) > Decimal(hours):
            raise Invalid(
                f"Volunteer {person.volunteer_id} is given {Decimal(person.hours):.2f} hours, "
                f"more than the {Decimal(hours):.2f} the service took: no one gives it more "
                "time than it took",
                field="participants",
            )
    if len(named) > events.MAX_PARTICIPANTS:
        raise Invalid(
            f"At most {events.MAX_PARTICIPANTS} volunteers take part in one request",
            field="participants",
        )
    if holder.id not in seen:
        raise Invalid(
            f"The participants must include volunteer {holder.id} ({holder.name}), to whom "
            "the request was assigned",
            field="participants",
        )
    others = seen - {holder.id}
    found = (
        {
            volunteer.id: volunteer
            for volunteer in session.scalars(select(Volunteer).where(Volunteer.id.in_(others)))
        }
        if others
        else {}
    )
    for person in named:
        if person.volunteer_id == holder.id:
            continue
        volunteer = found.get(person.volunteer_id)
        if (
            volunteer is None
            or not volunteer.is_active
            or holder.team_id is None
            or volunteer.team_id != holder.team_id
        ):
            team = f"team {holder.team_id}" if holder.team_id else "no team: they work alone"
            raise Invalid(
                f"Volunteer {person.volunteer_id} is not an active volunteer of the team the "
                f"request was assigned to ({team})",
                field="participants",
            )
    # The resident confirms the service's hours, and points refuses a confirmation of more
    # hours than any participant reported: hours no one gave would never be credited.
    most = max(Decimal(person.hours) for person in named)
    if most < Decimal(hours):
        raise Invalid(
            f"The service took {Decimal(hours):.2f} hours but no participant is given more "
            f"than {most:.2f}: one of them at least gave it all its time",
            field="participants",
        )
    return [holder if p.volunteer_id == holder.id else found[p.volunteer_id] for p in named]


def complete_assignment(
    session: Session,
    *,
    assignment_id: str,
    completed_by: Principal,
    hours: Decimal,
    note: str = "",
    participants: Sequence[Participant] | None = None,
) -> Assignment:
    """The volunteer reports the service done and the hours it took; group work names every
    volunteer of the team who took part, with their own hours."""
    _check_hours(hours, "hours")
    assignment = _held_for_action(session, assignment_id, completed_by, "complete")
    status = _move(assignment, "complete")
    named = participants or [Participant(volunteer_id=assignment.volunteer_id, hours=hours)]
    volunteers = _participants(session, assignment, named, hours)
    now = utcnow()
    assignment.status = status
    assignment.hours = hours
    assignment.note = note
    assignment.completed_at = now
    assignment.completed_by = _address_of(completed_by)
    assignment.participants = [
        {"volunteer_id": person.volunteer_id, "hours": f"{Decimal(person.hours):.2f}"}
        for person in named
    ]
    messaging.stage(
        session,
        events.REQUEST_COMPLETED,
        {
            "request_id": assignment.request_id,
            "assignment_id": assignment.id,
            "volunteer_id": assignment.volunteer_id,
            "category": assignment.category,
            "hours": hours,
            "completed_by": assignment.completed_by,
            "completed_at": now,
            "volunteer_name": assignment.volunteer.name,
            "team_id": assignment.volunteer.team_id,
            "community": (assignment.location or {}).get("community"),
            "participants": [
                {
                    "volunteer_id": person.volunteer_id,
                    "hours": person.hours,
                    "volunteer_name": volunteer.name,
                }
                for person, volunteer in zip(named, volunteers, strict=True)
            ],
        },
    )
    messaging.notify(
        session,
        notifications.REQUEST_COMPLETED,
        recipient=address("resident", assignment.resident_id),
        request_id=assignment.request_id,
        volunteer_name=assignment.volunteer.name,
        category=assignment.category,
        hours=hours,
    )
    session.flush()
    return assignment


def record_confirmation(session: Session, *, request_id: str, at: datetime) -> None:
    """The resident confirmed the work: the volunteer's assignment is closed."""
    assignment = session.scalars(
        select(Assignment).filter_by(request_id=request_id).with_for_update(of=Assignment)
    ).first()
    if assignment is None or assignment.status in (CONFIRMED, WITHDRAWN):
        # Not dispatch's request (staff placed it by hand), this confirmation was heard, or it
        # is old news of work since withdrawn: withdrawn work is not confirmed.
        return
    assignment.status = CONFIRMED
    assignment.confirmed_at = at


def _held_for_request(session: Session, request_id: str) -> Assignment | None:
    return session.scalars(
        select(Assignment).filter_by(request_id=request_id).with_for_update(of=Assignment)
    ).first()


def withdraw_assignment(session: Session, *, request_id: str, reason: str, at: datetime) -> None:
    """The request was cancelled, rejected or merged away: its volunteer need not go."""
    assignment = _held_for_request(session, request_id)
    if assignment is None or assignment.status in (COMPLETED, CONFIRMED, WITHDRAWN):
        # Never assigned here, the work is done already, or this news was heard.
        return
    assignment.status = WITHDRAWN
    assignment.note = reason


def reopen_assignment(session: Session, *, request_id: str, at: datetime) -> None:
    """A finished request was reopened: it goes back to the volunteer who had it."""
    assignment = _held_for_request(session, request_id)
    if assignment is None or assignment.status in (ASSIGNED, WITHDRAWN):
        # Never assigned here (staff place it), withdrawn, or this news was heard.
        return
    assignment.status = ASSIGNED
    assignment.assigned_at = at
    assignment.accepted_at = assignment.completed_at = assignment.confirmed_at = None
    assignment.accepted_by = assignment.completed_by = None
    assignment.hours = None
    assignment.participants = None
    messaging.stage(
        session,
        events.REQUEST_ASSIGNED,
        {
            "request_id": request_id,
            "assignment_id": assignment.id,
            "assignee_type": "volunteer",
            "assignee_id": assignment.volunteer_id,
            "assignee_name": assignment.volunteer.name,
            "assigned_at": at,
        },
    )
    messaging.notify(
        session,
        notifications.ASSIGNMENT_CREATED,
        recipient=address("volunteer", assignment.volunteer_id),
        request_id=request_id,
        assignment_id=assignment.id,
        category=assignment.category,
        summary=assignment.summary,
        location=assignment.location,
        priority=assignment.priority,
    )
