"""The routing domain: who gets a request, and an assignment's way to completion."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from services.dispatch import routing
from services.dispatch.config import runtime
from services.dispatch.tests.builders import (
    assigned,
    assignments,
    rules,
    submission,
    volunteer,
)
from shared import events
from shared.auth import Principal
from shared.errors import Conflict, Invalid, NotFound
from tests.support import staged_messages

STAFF = Principal(subject="staff-1", role="staff")
# SQLite serialises writers, so only PostgreSQL can race two transactions.
# Collected only on PostgreSQL (see the root conftest): SQLite has one writer at a time.
postgresql_only = pytest.mark.postgres


def holder(assignment_id: str) -> Principal:
    with runtime().db.read() as session:
        return Principal(
            subject=routing.get_assignment(session, assignment_id).volunteer_id, role="volunteer"
        )


# Routing a submitted request


def test_a_request_goes_to_the_volunteer_its_category_is_routed_to() -> None:
    volunteer("Wang Jun", routed_for="electrical_repair")
    sharpener = volunteer("Li Guang", routed_for="knife_sharpening")

    assignment = assigned(category="knife_sharpening", priority="high", summary="Blunt cleaver")

    assert assignment.volunteer_id == sharpener.id
    assert (assignment.status, assignment.priority, assignment.summary) == (
        "assigned",
        "high",
        "Blunt cleaver",
    )
    assert assignment.location["building"] == "3"


def test_the_rule_with_the_lowest_precedence_wins() -> None:
    volunteer("Backup", routed_for="mediation", precedence=20)
    first = volunteer("First choice", routed_for="mediation", precedence=10)
    volunteer("Last resort", routed_for="mediation", precedence=30)

    assert assigned(category="mediation").volunteer_id == first.id


def test_an_inactive_volunteer_is_passed_over_for_the_next_rule() -> None:
    volunteer("On leave", routed_for="haircut", precedence=1, is_active=False)
    barber = volunteer("Barber", routed_for="haircut", precedence=2)

    assert assigned(category="haircut").volunteer_id == barber.id


def test_an_assignment_stages_the_assigned_event_and_a_notice_to_the_volunteer() -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")

    assignment = assigned(category="knife_sharpening")

    (assigned_event,) = staged_messages(runtime(), events.REQUEST_ASSIGNED)
    assert assigned_event.kwargs == {
        "request_id": assignment.request_id,
        "assignment_id": assignment.id,
        "assignee_type": "volunteer",
        "assignee_id": sharpener.id,
        "assignee_name": "Lao Zhang",
        "assigned_at": assigned_event.kwargs["assigned_at"],
    }
    (notice,) = staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
    assert notice.kwargs["recipient"] == f"volunteer:{sharpener.id}"
    assert notice.kwargs["template"] == "assignment.created"
    assert notice.kwargs["data"] == {
        "request_id": assignment.request_id,
        "assignment_id": assignment.id,
        "category": "knife_sharpening",
        "summary": assignment.summary,
        "location": assignment.location,
        "priority": "normal",
    }
    assert len(staged_messages(runtime())) == 2


def test_a_category_nobody_is_routed_for_is_reported_unrouted_and_nothing_is_stored() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    payload = submission(category="piano_lessons")

    with runtime().db.transaction() as session:
        routing.assign_request(session, **payload)

    assert assignments() == []
    (unrouted,) = staged_messages(runtime())
    assert unrouted.actor_name == events.REQUEST_UNROUTED.actor_name
    assert unrouted.kwargs["request_id"] == payload["request_id"]
    assert "piano_lessons" in unrouted.kwargs["reason"]


def test_a_request_already_assigned_is_not_assigned_again() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    first = assigned()
    before = staged_messages(runtime())

    with runtime().db.transaction() as session:
        routing.assign_request(session, **submission(request_id=first.request_id))

    assert [a.id for a in assignments()] == [first.id]
    assert [m.message_id for m in staged_messages(runtime())] == [m.message_id for m in before]


# Keeping the roster


def test_a_rule_for_an_unknown_or_inactive_volunteer_is_refused() -> None:
    retired = volunteer("Retired", is_active=False)

    with runtime().db.transaction() as session, pytest.raises(Invalid) as unknown:
        routing.add_routing_rule(session, category="haircut", volunteer_id="nobody")
    with runtime().db.transaction() as session, pytest.raises(Invalid) as inactive:
        routing.add_routing_rule(session, category="haircut", volunteer_id=retired.id)

    assert unknown.value.extra == {"field": "volunteer_id"}
    assert "not active" in inactive.value.detail


def test_routing_a_category_to_the_same_volunteer_twice_is_a_conflict() -> None:
    barber = volunteer("Barber", routed_for="haircut")

    with runtime().db.transaction() as session, pytest.raises(Conflict):
        routing.add_routing_rule(session, category="haircut", volunteer_id=barber.id)


def test_a_volunteer_of_an_unknown_team_is_refused() -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid) as refused:
        routing.register_volunteer(session, name="Nobody's", team_id="no-such-team")

    assert refused.value.extra == {"field": "team_id"}


def test_team_names_are_unique() -> None:
    with runtime().db.transaction() as session:
        routing.create_team(session, name="Mediation team")
    with runtime().db.transaction() as session, pytest.raises(Conflict):
        routing.create_team(session, name="Mediation team")


# Accepting and completing


def test_the_holder_accepts_then_completes_an_assignment() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    volunteer_ = holder(assignment.id)

    with runtime().db.transaction() as session:
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=volunteer_)
    with runtime().db.transaction() as session:
        done = routing.complete_assignment(
            session,
            assignment_id=assignment.id,
            completed_by=volunteer_,
            hours=Decimal("1.5"),
            note="Sharpened three knives",
        )

    assert (done.status, done.hours, done.note) == (
        "completed",
        Decimal("1.5"),
        "Sharpened three knives",
    )
    assert done.accepted_at is not None and done.completed_at is not None


def test_accepting_twice_is_a_conflict() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    with runtime().db.transaction() as session:
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=STAFF)

    with runtime().db.transaction() as session, pytest.raises(Conflict, match="already accepted"):
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=STAFF)


def test_an_assignment_not_yet_accepted_cannot_be_completed() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()

    with runtime().db.transaction() as session, pytest.raises(Conflict, match="accept it"):
        routing.complete_assignment(
            session, assignment_id=assignment.id, completed_by=STAFF, hours=Decimal(1)
        )

    assert staged_messages(runtime(), events.REQUEST_COMPLETED) == []


def test_another_volunteer_may_neither_accept_nor_complete() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    stranger = Principal(subject=volunteer("Stranger").id, role="volunteer")

    # Another's assignment is hidden as if it did not exist (the policy's one rule).
    with runtime().db.transaction() as session, pytest.raises(NotFound):
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=stranger)
    with runtime().db.transaction() as session, pytest.raises(NotFound):
        routing.complete_assignment(
            session, assignment_id=assignment.id, completed_by=stranger, hours=Decimal(1)
        )


@pytest.mark.parametrize("hours", [Decimal(0), Decimal("-1"), Decimal("24.01")])
def test_hours_outside_zero_to_twenty_four_are_refused(hours: Decimal) -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    with runtime().db.transaction() as session:
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=STAFF)

    with runtime().db.transaction() as session, pytest.raises(Invalid):
        routing.complete_assignment(
            session, assignment_id=assignment.id, completed_by=STAFF, hours=hours
        )


# Racing on PostgreSQL


def race(*attempts: Callable[[Session], object]) -> list[object]:
    """Start each attempt at once in a thread and transaction of its own; what each returned
    or raised. Each transaction stays open a moment, so that the others run before it commits."""
    start = threading.Barrier(len(attempts))
    outcomes: list[object] = []

    def run(attempt: Callable[[Session], object]) -> None:
        start.wait(timeout=10)
        try:
            with runtime().db.transaction() as session:
                outcome = attempt(session)
                time.sleep(0.2)
        except Exception as error:
            outcome = error
        outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(attempt,)) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == len(attempts), "an attempt did not finish"
    return outcomes


def kinds(outcomes: list[object]) -> list[str]:
    return sorted(type(outcome).__name__ for outcome in outcomes)


@postgresql_only
def test_of_two_simultaneous_completions_one_succeeds_and_one_completed_event_is_staged() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    with runtime().db.transaction() as session:
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=STAFF)

    def complete(hours: str) -> Callable[[Session], object]:
        return lambda session: routing.complete_assignment(
            session, assignment_id=assignment.id, completed_by=STAFF, hours=Decimal(hours)
        )

    outcomes = race(complete("1.5"), complete("3"))

    assert kinds(outcomes) == ["Assignment", "IllegalTransition"]
    (completed,) = staged_messages(runtime(), events.REQUEST_COMPLETED, to="intake")
    (done,) = assignments(id=assignment.id)
    assert Decimal(completed.kwargs["hours"]) == done.hours


@postgresql_only
def test_of_two_simultaneous_acceptances_one_succeeds_and_one_accepted_event_is_staged() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()

    def accept(session: Session) -> object:
        return routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=STAFF)

    outcomes = race(accept, accept)

    assert kinds(outcomes) == ["Assignment", "IllegalTransition"]
    assert len(staged_messages(runtime(), events.REQUEST_ACCEPTED)) == 1


@postgresql_only
def test_of_two_teams_registered_at_once_under_one_name_the_second_is_a_conflict() -> None:
    def register(session: Session) -> object:
        return routing.create_team(session, name="Mediation team")

    outcomes = race(register, register)

    assert kinds(outcomes) == ["Conflict", "Team"]
    (conflict,) = [o for o in outcomes if isinstance(o, Conflict)]
    assert conflict.extra == {"field": "name"}
    assert "Mediation team" in conflict.detail


@postgresql_only
def test_of_one_rule_added_twice_at_once_the_second_is_a_conflict() -> None:
    barber = volunteer("Barber")

    def route(session: Session) -> object:
        return routing.add_routing_rule(session, category="haircut", volunteer_id=barber.id)

    outcomes = race(route, route)

    assert kinds(outcomes) == ["Conflict", "RoutingRule"]
    assert len(rules()) == 1
