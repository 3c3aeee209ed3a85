"""What intake tells of a request after it was assigned: withdrawn, or reopened."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.dispatch import actors, routing
from services.dispatch.config import runtime
from services.dispatch.tests.builders import assigned, assignment_for, volunteer
from shared import events
from shared.auth import Principal
from shared.errors import Conflict
from tests.support import deliver_to, message_for, staged_messages

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def withdrawn(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "status": "cancelled",
        "reason": "Cancelled: my son came",
        "withdrawn_by": "resident:r1",
        "withdrawn_at": NOW,
    }


def reopened(request_id: str, assignment_id: str) -> dict:
    return {
        "request_id": request_id,
        "assignment_id": assignment_id,
        "reason": "Blunt again",
        "reopened_by": "resident:r1",
        "reopened_at": NOW,
    }


def test_a_withdrawn_request_withdraws_its_assignment_which_can_no_longer_be_accepted():
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    message = message_for(events.REQUEST_WITHDRAWN, withdrawn(assignment.request_id))
    assert deliver_to(actors.CONSUMERS, message) is True
    assert deliver_to(actors.CONSUMERS, message) is False
    assert assignment_for(assignment.request_id).status == "withdrawn"
    with runtime().db.transaction() as session, pytest.raises(Conflict, match="withdrawn"):
        routing.accept_assignment(
            session, assignment_id=assignment.id, accepted_by=Principal(sharpener.id, "volunteer")
        )


def test_work_already_done_is_not_withdrawn():
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    who = Principal(sharpener.id, "volunteer")
    with runtime().db.transaction() as session:
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=who)
        routing.complete_assignment(session, assignment_id=assignment.id, completed_by=who, hours=1)
    deliver_to(
        actors.CONSUMERS, message_for(events.REQUEST_WITHDRAWN, withdrawn(assignment.request_id))
    )
    assert assignment_for(assignment.request_id).status == "completed"


def test_a_reopened_request_goes_back_to_the_same_volunteer_who_is_told():
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    who = Principal(sharpener.id, "volunteer")
    with runtime().db.transaction() as session:
        routing.accept_assignment(session, assignment_id=assignment.id, accepted_by=who)
        routing.complete_assignment(session, assignment_id=assignment.id, completed_by=who, hours=1)
    message = message_for(events.REQUEST_REOPENED, reopened(assignment.request_id, assignment.id))
    assert deliver_to(actors.CONSUMERS, message) is True
    again = assignment_for(assignment.request_id)
    assert (again.id, again.volunteer_id, again.status) == (assignment.id, sharpener.id, "assigned")
    assert (again.accepted_by, again.completed_by, again.hours) == (None, None, None)
    [announced] = [
        m
        for m in staged_messages(runtime(), events.REQUEST_ASSIGNED)
        if m.kwargs["assigned_at"] == NOW.isoformat()
    ]
    assert announced.kwargs["assignment_id"] == assignment.id


def test_a_confirmation_heard_after_the_assignment_was_withdrawn_changes_nothing():
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    deliver_to(
        actors.CONSUMERS, message_for(events.REQUEST_WITHDRAWN, withdrawn(assignment.request_id))
    )

    with runtime().db.transaction() as session:
        routing.record_confirmation(session, request_id=assignment.request_id, at=NOW)

    kept = assignment_for(assignment.request_id)
    assert (kept.status, kept.confirmed_at) == ("withdrawn", None)
