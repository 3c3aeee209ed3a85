"""intake's consumers: each message type delivered twice changes things once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from services.intake import actors, requests
from services.intake.config import runtime
from services.intake.models import ServiceRequest, TimelineEntry
from services.intake.tests.builders import a_request, resident_of
from shared import events
from shared.consumers import PermanentError
from tests.support import deliver_to, eventually, message_for, running_worker, staged_messages

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def new_request_id() -> str:
    with runtime().db.transaction() as session:
        return a_request(session).id


def request_state(request_id: str) -> tuple[str, int]:
    with runtime().db.read() as session:
        request = session.get(ServiceRequest, request_id)
        assert request is not None
        entries = session.scalar(
            select(func.count())
            .select_from(TimelineEntry)
            .where(TimelineEntry.request_id == request_id)
        )
        return request.status, int(entries or 0)


def payloads(request_id: str) -> dict[str, tuple]:
    base = {"request_id": request_id, "assignment_id": "a1"}
    return {
        "assigned": (
            actors.CONSUMERS,
            events.REQUEST_ASSIGNED,
            {
                **base,
                "assignee_type": "volunteer",
                "assignee_id": "v1",
                "assignee_name": "Lao Zhang",
                "assigned_at": NOW,
            },
            "assigned",
        ),
        "unrouted": (
            actors.CONSUMERS,
            events.REQUEST_UNROUTED,
            {"request_id": request_id, "reason": "no rule", "unrouted_at": NOW},
            "needs_triage",
        ),
        "accepted": (
            actors.CONSUMERS,
            events.REQUEST_ACCEPTED,
            {**base, "volunteer_id": "v1", "accepted_by": "volunteer:v1", "accepted_at": NOW},
            "accepted",
        ),
        "completed": (
            actors.CONSUMERS,
            events.REQUEST_COMPLETED,
            {
                **base,
                "volunteer_id": "v1",
                "hours": "1.5",
                "completed_by": "volunteer:v1",
                "completed_at": NOW,
            },
            "completed",
        ),
    }


@pytest.mark.parametrize("kind", ["assigned", "unrouted", "accepted", "completed"])
def test_second_delivery_of_the_same_message_changes_nothing(kind):
    request_id = new_request_id()
    actor, event, payload, status = payloads(request_id)[kind]
    message = message_for(event, payload, to="intake")
    assert deliver_to(actor, message) is True
    after_first = request_state(request_id)
    assert after_first[0] == status
    assert deliver_to(actor, message) is False
    assert request_state(request_id) == after_first


@pytest.mark.parametrize("kind", ["assigned", "unrouted", "accepted", "completed"])
def test_a_garbled_message_is_permanent_and_changes_nothing(kind):
    request_id = new_request_id()
    actor, event, payload, _ = payloads(request_id)[kind]
    message = message_for(event, payload, to="intake")
    message.kwargs.pop("request_id")
    with pytest.raises(PermanentError, match="request_id"):
        deliver_to(actor, message)
    assert request_state(request_id) == ("submitted", 1)


def test_a_real_worker_follows_the_request_through_the_broker():
    request_id = new_request_id()
    broker = runtime().broker
    with running_worker(broker, "intake"):
        for kind in ("assigned", "accepted", "completed"):
            _, event, payload, _ = payloads(request_id)[kind]
            message = message_for(event, payload, to="intake")
            broker.enqueue(message)
            broker.enqueue(message)
        eventually(
            lambda: request_state(request_id) == ("completed", 4),
            what="the request to be completed with one timeline entry per event",
        )


# Group work: the confirmation carries who took part


TEAM = [
    {"volunteer_id": "v1", "hours": "1.50", "volunteer_name": "Lao Zhang"},
    {"volunteer_id": "v2", "hours": "1.00", "volunteer_name": None},
]


def hear(request_id: str, *kinds: str, **completion: Any) -> None:
    """Deliver dispatch's news of the request, ``completion`` changing the completion's."""
    news = payloads(request_id)
    for kind in kinds:
        _, event, payload, _ = news[kind]
        changes = completion if kind == "completed" else {}
        assert deliver_to(actors.CONSUMERS, message_for(event, {**payload, **changes}, to="intake"))


def confirm(request_id: str) -> dict[str, Any]:
    """Confirm the request as its resident; the confirmation as points gets it."""
    with runtime().db.transaction() as session:
        request = requests.get_request(session, request_id)
        requests.confirm_request(session, request_id=request_id, confirmed_by=resident_of(request))
    return confirmation_of(request_id)


def completed_and_confirmed(request_id: str, **completion: Any) -> dict[str, Any]:
    """Deliver the request's assignment, acceptance and ``completion``, confirm it as its
    resident; the confirmation as points gets it."""
    hear(request_id, "assigned", "accepted", "completed", **completion)
    return confirm(request_id)


def confirmation_of(request_id: str) -> dict[str, Any]:
    """The confirmation of the request staged for points."""
    staged = staged_messages(runtime(), events.REQUEST_CONFIRMED, to="points")
    (confirmed,) = [m.kwargs for m in staged if m.kwargs["request_id"] == request_id]
    return confirmed


def test_the_confirmation_of_group_work_names_its_participants_and_their_hours():
    confirmed = completed_and_confirmed(new_request_id(), participants=TEAM)

    assert confirmed["participants"] == TEAM
    assert (confirmed["volunteer_id"], confirmed["hours"]) == ("v1", "1.50")


def test_the_timeline_says_who_took_part_in_group_work():
    request_id = new_request_id()
    completed_and_confirmed(request_id, participants=TEAM)

    with runtime().db.read() as session:
        (entry,) = [
            e for e in requests.get_request(session, request_id).timeline if e.status == "completed"
        ]
    assert entry.note == "Completed in 1.50 hour(s), 2 volunteers taking part"
    assert entry.details["participants"] == TEAM


def test_the_confirmation_of_work_done_alone_names_no_participants():
    alone = [{"volunteer_id": "v1", "hours": "1.50"}]

    assert "participants" not in completed_and_confirmed(new_request_id())
    assert "participants" not in completed_and_confirmed(new_request_id(), participants=alone)


def test_a_reopened_request_forgets_who_took_part_until_it_is_completed_again():
    request_id = new_request_id()
    hear(request_id, "assigned", "accepted", "completed", participants=TEAM)
    with runtime().db.transaction() as session:
        request = requests.get_request(session, request_id)
        requests.reopen_request(
            session, request_id=request_id, reopened_by=resident_of(request), reason="Dull again"
        )
        assert request.participants is None
    hear(request_id, "accepted", "completed")

    assert "participants" not in confirm(request_id)
