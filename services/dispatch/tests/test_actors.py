"""The request.submitted consumer: each request assigned once, however often it arrives."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from sqlalchemy import func, select

from services.dispatch import actors
from services.dispatch.config import runtime
from services.dispatch.tests.builders import assignment_for, assignments, submitted, volunteer
from shared import events
from shared.consumers import PermanentError
from tests.support import deliver_to, eventually, message_for, running_worker, staged_messages


def inbox_size() -> int:
    with runtime().db.read() as session:
        return int(session.scalar(select(func.count()).select_from(runtime().messaging.inbox)) or 0)


def raw_message(kwargs: dict[str, Any]) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name="dispatch",
        actor_name=events.REQUEST_SUBMITTED.actor_name,
        args=(),
        kwargs=kwargs,
        options={},
        message_id=uuid.uuid4().hex,
    )


def test_a_delivered_request_is_assigned_and_announced() -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    message = message_for(events.REQUEST_SUBMITTED, submitted(category="knife_sharpening"))

    assert deliver_to(actors.CONSUMERS, message) is True

    assignment = assignment_for(message.kwargs["request_id"])
    assert assignment.volunteer_id == sharpener.id
    assert [m.actor_name for m in staged_messages(runtime())] == [
        events.REQUEST_ASSIGNED.actor_name,
        events.NOTIFICATION_REQUESTED.actor_name,
    ]
    assert {m.options["correlation_id"] for m in staged_messages(runtime())} == {
        message.options["correlation_id"]
    }


def test_second_delivery_of_the_same_message_assigns_once() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    message = message_for(events.REQUEST_SUBMITTED, submitted())
    deliver_to(actors.CONSUMERS, message)
    outbox = [m.message_id for m in staged_messages(runtime())]

    assert deliver_to(actors.CONSUMERS, message) is False

    assert len(assignments()) == 1
    assert [m.message_id for m in staged_messages(runtime())] == outbox


def test_a_second_message_about_the_same_request_assigns_once() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    payload = submitted()
    deliver_to(actors.CONSUMERS, message_for(events.REQUEST_SUBMITTED, payload))
    outbox = [m.message_id for m in staged_messages(runtime())]

    again = message_for(events.REQUEST_SUBMITTED, payload)
    assert deliver_to(actors.CONSUMERS, again) is True

    assert len(assignments()) == 1
    assert [m.message_id for m in staged_messages(runtime())] == outbox


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"category": None}, id="missing-category"),
        pytest.param({"location": "building 3, unit 2"}, id="location-not-an-object"),
        pytest.param({"priority": "whenever"}, id="unknown-priority"),
        pytest.param({"submitted_at": "2026-11-26T10:00:00"}, id="naive-timestamp"),
    ],
)
def test_a_bad_payload_is_a_permanent_error_and_changes_nothing(change: dict[str, Any]) -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    kwargs = events.REQUEST_SUBMITTED.validate_outgoing(submitted())
    kwargs.update(change)
    kwargs = {key: value for key, value in kwargs.items() if value is not None}

    with pytest.raises(PermanentError):
        deliver_to(actors.CONSUMERS, raw_message(kwargs))

    assert assignments() == []
    assert staged_messages(runtime()) == []
    assert inbox_size() == 0


def test_fields_the_contract_does_not_know_are_ignored() -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    kwargs = events.REQUEST_SUBMITTED.validate_outgoing(submitted())

    assert deliver_to(actors.CONSUMERS, raw_message({**kwargs, "channel": "app"}))

    assert len(assignments()) == 1


def test_a_real_worker_assigns_a_request_published_on_the_broker() -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    message = message_for(events.REQUEST_SUBMITTED, submitted())

    with running_worker(runtime().broker, "dispatch"):
        runtime().broker.enqueue(message)
        found = eventually(
            lambda: assignments(request_id=message.kwargs["request_id"]), what="the assignment"
        )

    assert found[0].volunteer_id == sharpener.id
