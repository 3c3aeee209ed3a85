"""points' consumers: hours reported done are held once and a confirmed service earns points
once, however the messages arrive."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import dramatiq
import pytest
from sqlalchemy import func, select

from services.points import actors
from services.points.config import runtime
from services.points.models import Transfer
from services.points.tests.builders import (
    account,
    all_at_once,
    balance,
    completed,
    confirmed,
    rates,
    transfers,
)
from shared import events
from shared.consumers import PermanentError
from tests.support import deliver_to, eventually, message_for, running_worker, staged_messages


def raw_message(
    kwargs: dict[str, Any], event: events.Event = events.REQUEST_CONFIRMED
) -> dramatiq.Message:
    """A message as a careless publisher might send it, unchecked."""
    return dramatiq.Message(
        queue_name="points",
        actor_name=event.actor_name,
        args=(),
        kwargs=kwargs,
        options={},
        message_id=uuid.uuid4().hex,
    )


def _person(volunteer_id: str, hours: str = "1.00") -> dict[str, str]:
    return {"volunteer_id": volunteer_id, "hours": hours}


def row_count(table: Any) -> int:
    with runtime().db.read() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def notifications() -> list[dramatiq.Message]:
    return staged_messages(runtime(), events.NOTIFICATION_REQUESTED)


def assert_nothing_changed() -> None:
    assert transfers() == []
    assert notifications() == []
    assert row_count(runtime().messaging.inbox) == 0


# Exactly once


def test_a_confirmed_service_credits_the_volunteer() -> None:
    rates(knife_sharpening=10)
    message = message_for(
        events.REQUEST_CONFIRMED, confirmed(volunteer_id="v-7", hours="2.00"), to="points"
    )

    assert deliver_to(actors.CONSUMERS, message) is True

    (transfer,) = transfers()
    assert transfer.id == f"earn:{message.kwargs['request_id']}"
    assert balance("volunteer:v-7") == Decimal("20.00")
    assert [n.kwargs["recipient"] for n in notifications()] == ["volunteer:v-7"]


def test_second_delivery_of_the_same_message_credits_once() -> None:
    rates(knife_sharpening=10)
    message = message_for(events.REQUEST_CONFIRMED, confirmed(volunteer_id="v-7"), to="points")

    assert deliver_to(actors.CONSUMERS, message) is True
    assert deliver_to(actors.CONSUMERS, message) is False

    assert len(transfers()) == 1
    assert len(notifications()) == 1
    assert balance("volunteer:v-7") == Decimal("15.00")


def test_second_confirmation_of_the_same_request_credits_once() -> None:
    rates(knife_sharpening=10)
    payload = confirmed(volunteer_id="v-7")

    assert deliver_to(actors.CONSUMERS, message_for(events.REQUEST_CONFIRMED, payload, to="points"))
    assert deliver_to(actors.CONSUMERS, message_for(events.REQUEST_CONFIRMED, payload, to="points"))

    assert len(transfers()) == 1
    assert len(notifications()) == 1
    assert balance("volunteer:v-7") == Decimal("15.00")


def test_concurrent_confirmations_of_the_same_request_credit_once() -> None:
    rates(knife_sharpening=10)
    payload = confirmed(volunteer_id="v-new")
    messages = [message_for(events.REQUEST_CONFIRMED, payload, to="points") for _ in range(4)]
    start = threading.Barrier(len(messages))
    failures: list[BaseException] = []

    def deliver(message: dramatiq.Message) -> None:
        start.wait()
        try:
            deliver_to(actors.CONSUMERS, message)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=deliver, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert len(transfers()) == 1
    assert len(notifications()) == 1
    assert balance("volunteer:v-new") == Decimal("15.00")


def test_the_same_completion_delivered_twice_holds_the_points_once() -> None:
    rates(knife_sharpening=10)
    message = message_for(events.REQUEST_COMPLETED, completed(hours="2.00"), to="points")

    assert deliver_to(actors.CONSUMERS, message) is True
    assert deliver_to(actors.CONSUMERS, message) is False

    (held,) = transfers()
    assert (held.status, held.amount) == ("pending", Decimal("20.00"))
    assert account("volunteer:v-7").credits_pending == Decimal("20.00")
    assert notifications() == []


def test_a_completion_and_its_confirmation_each_delivered_twice_credit_once() -> None:
    rates(knife_sharpening=10)
    done = message_for(events.REQUEST_COMPLETED, completed(hours="1.00"), to="points")
    payload = confirmed(request_id=done.kwargs["request_id"], hours="1.00")
    confirmation = message_for(events.REQUEST_CONFIRMED, payload, to="points")

    outcomes = [deliver_to(actors.CONSUMERS, m) for m in (done, confirmation, done, confirmation)]

    assert outcomes == [True, True, False, False]
    (earned,) = transfers()
    assert (earned.status, earned.posted_amount) == ("posted", Decimal("10.00"))
    assert balance("volunteer:v-7") == Decimal("10.00")
    assert len(notifications()) == 1


def test_a_completion_and_its_confirmation_arriving_at_once_credit_once() -> None:
    rates(knife_sharpening=10)
    done = message_for(events.REQUEST_COMPLETED, completed(hours="1.00"), to="points")
    payload = confirmed(request_id=done.kwargs["request_id"], hours="1.00")
    confirmation = message_for(events.REQUEST_CONFIRMED, payload, to="points")

    outcomes = all_at_once(
        [
            lambda: deliver_to(actors.CONSUMERS, done),
            lambda: deliver_to(actors.CONSUMERS, confirmation),
        ]
    )

    assert outcomes == [True, True]
    (earned,) = transfers()
    assert (earned.status, earned.posted_amount) == ("posted", Decimal("10.00"))
    assert account("volunteer:v-7").credits_pending == 0
    assert balance("volunteer:v-7") == Decimal("10.00")
    assert len(notifications()) == 1


# Dead letters


def test_a_category_without_a_rate_is_dead_lettered_and_changes_nothing() -> None:
    message = message_for(events.REQUEST_CONFIRMED, confirmed(category="mediation"), to="points")

    with pytest.raises(PermanentError, match="No earning rate for category 'mediation'"):
        deliver_to(actors.CONSUMERS, message)

    assert_nothing_changed()


def test_a_dead_lettered_confirmation_credits_once_its_rate_is_set() -> None:
    message = message_for(
        events.REQUEST_CONFIRMED, confirmed(category="mediation", hours="1.00"), to="points"
    )
    with pytest.raises(PermanentError):
        deliver_to(actors.CONSUMERS, message)

    rates(mediation=12)

    assert deliver_to(actors.CONSUMERS, message) is True
    assert balance("volunteer:v-7") == Decimal("12.00")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"hours": "0"}, id="no hours"),
        pytest.param({"hours": "-2"}, id="negative hours"),
        pytest.param({"category": "Knife Sharpening"}, id="not a category code"),
        pytest.param({"volunteer_id": "v/7"}, id="volunteer id that names no account"),
        pytest.param({"request_id": "r" * 65}, id="request id too long"),
        pytest.param({"completed_at": "soon"}, id="garbage time"),
    ],
)
def test_a_bad_completion_is_dead_lettered_and_changes_nothing(change: dict[str, Any]) -> None:
    rates(knife_sharpening=10)

    with pytest.raises(PermanentError):
        deliver_to(
            actors.CONSUMERS, raw_message({**completed(), **change}, events.REQUEST_COMPLETED)
        )

    assert_nothing_changed()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"volunteer_id": None}, id="missing volunteer"),
        pytest.param({"hours": None}, id="missing hours"),
        pytest.param({"hours": "-1.00"}, id="negative hours"),
        pytest.param({"hours": "0"}, id="no hours"),
        pytest.param({"hours": "25"}, id="more than a day"),
        pytest.param({"hours": "lots"}, id="hours not a number"),
        pytest.param({"volunteer_id": 7}, id="volunteer id not a string"),
        pytest.param({"confirmed_at": "yesterday"}, id="garbage time"),
        pytest.param({"confirmed_at": "2026-11-26T10:00:00"}, id="time without a zone"),
        pytest.param({"volunteer_id": "v 7"}, id="volunteer id that names no account"),
        pytest.param(
            {"participants": [_person("v-9"), _person("v-8")]}, id="participants without v-7"
        ),
        pytest.param({"participants": [_person("v-7"), _person("v-7")]}, id="one named twice"),
        pytest.param(
            {"participants": [_person("v-7"), _person("v-9", hours="lots")]},
            id="participant's hours not a number",
        ),
        pytest.param({"participants": "everyone"}, id="participants not a list"),
    ],
)
def test_a_bad_payload_is_dead_lettered_and_changes_nothing(change: dict[str, Any]) -> None:
    rates(knife_sharpening=10)
    payload = {key: value for key, value in {**confirmed(), **change}.items() if value is not None}

    with pytest.raises(PermanentError):
        deliver_to(actors.CONSUMERS, raw_message(payload))

    assert_nothing_changed()


def test_positional_arguments_are_dead_lettered() -> None:
    message = raw_message(confirmed())._replace(args=("v-7",))

    with pytest.raises(PermanentError):
        deliver_to(actors.CONSUMERS, message)

    assert_nothing_changed()


# Through the real broker


def _transfer(transfer_id: str) -> Transfer | None:
    with runtime().db.read() as session:
        return session.get(Transfer, transfer_id)


def test_a_worker_credits_a_confirmation_taken_from_the_broker() -> None:
    rates(knife_sharpening=10)
    message = message_for(
        events.REQUEST_CONFIRMED, confirmed(volunteer_id="v-7", hours="1.00"), to="points"
    )

    with running_worker(runtime().broker, "points"):
        runtime().broker.enqueue(message)
        transfer = eventually(
            lambda: _transfer(f"earn:{message.kwargs['request_id']}"), what="the credit"
        )

    assert transfer.amount == Decimal("10.00")
    assert balance("volunteer:v-7") == Decimal("10.00")


def test_a_worker_keeps_an_unpriced_confirmation_as_a_dead_letter() -> None:
    message = message_for(events.REQUEST_CONFIRMED, confirmed(category="mediation"), to="points")
    dead_letters = runtime().messaging.dead_letters

    with running_worker(runtime().broker, "points"):
        runtime().broker.enqueue(message)
        eventually(lambda: row_count(dead_letters), what="the dead letter")

    with runtime().db.read() as session:
        error = session.scalar(
            select(dead_letters.c.error).where(dead_letters.c.message_id == message.message_id)
        )
    assert "No earning rate for category 'mediation'" in str(error)
    assert transfers() == []
