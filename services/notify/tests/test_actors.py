"""notification.requested messages, handled once each, through the consumer and a real worker."""

from __future__ import annotations

import re
import uuid
from typing import Any

import dramatiq
import pytest

from services.notify import actors
from services.notify.config import runtime
from services.notify.tests.builders import (
    ACCEPTED_DATA,
    COSTLY_TEMPLATES,
    RESIDENT,
    delivery_log,
    inbox_of,
    store_template,
)
from shared import events
from shared.consumers import PermanentError, deliver_to
from shared.dead_letters import list_dead_letters
from tests.support import eventually, message_for, running_worker


def requested(
    recipient: str = RESIDENT,
    template: str = "request.accepted",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> dramatiq.Message:
    payload = {
        "recipient": recipient,
        "template": template,
        "data": ACCEPTED_DATA if data is None else data,
        **fields,
    }
    return message_for(events.NOTIFICATION_REQUESTED, payload)


def raw_message(**kwargs: Any) -> dramatiq.Message:
    """A message as a careless publisher might send it, not checked against the contract."""
    return dramatiq.Message(
        queue_name=events.NOTIFY_QUEUE,
        actor_name=events.NOTIFICATION_REQUESTED.actor_name,
        args=(),
        kwargs=kwargs,
        options={},
        message_id=uuid.uuid4().hex,
    )


def test_a_requested_notification_lands_in_the_inbox_of_its_recipient() -> None:
    message = requested()

    assert deliver_to(actors.on_notification_requested, message) is True

    (stored,) = inbox_of(RESIDENT)
    assert stored.body == "Wang Jun accepted your knife_sharpening request."
    assert stored.source_message_id == message.message_id


def test_second_delivery_of_the_same_message_puts_one_message_in_the_inbox() -> None:
    message = requested()

    assert deliver_to(actors.on_notification_requested, message) is True
    assert deliver_to(actors.on_notification_requested, message) is False

    assert len(inbox_of(RESIDENT)) == 1
    assert len(delivery_log()) == 1


def test_fields_a_newer_publisher_adds_are_ignored() -> None:
    message = requested()
    message.kwargs["priority"] = "urgent"

    assert deliver_to(actors.on_notification_requested, message) is True


def test_an_unknown_template_is_permanent_and_stores_nothing() -> None:
    with pytest.raises(PermanentError, match=re.escape("No template 'no.such.template'")):
        deliver_to(actors.on_notification_requested, requested(template="no.such.template"))

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_message_refused_for_a_missing_template_is_delivered_once_staff_create_it() -> None:
    message = requested(template="request.declined", data={"category": "haircut"})
    with pytest.raises(PermanentError):
        deliver_to(actors.on_notification_requested, message)

    store_template("request.declined", body="Nobody could take your {{ category }} request.")

    assert deliver_to(actors.on_notification_requested, message) is True
    assert inbox_of(RESIDENT)[0].body == "Nobody could take your haircut request."


def test_a_missing_variable_is_permanent_and_stores_nothing() -> None:
    with pytest.raises(PermanentError, match="'volunteer_name' is undefined"):
        deliver_to(actors.on_notification_requested, requested(data={"category": "haircut"}))

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_an_unknown_channel_is_permanent() -> None:
    with pytest.raises(PermanentError, match="Unknown channel 'carrier_pigeon'"):
        deliver_to(actors.on_notification_requested, requested(channel="carrier_pigeon"))


def test_an_unsafe_template_is_permanent_with_the_reason() -> None:
    store_template("evil", body="{{ ''.__class__.__mro__[1].__subclasses__() }}")

    with pytest.raises(PermanentError, match=r"UnsafeTemplate.*__class__"):
        deliver_to(actors.on_notification_requested, requested(template="evil", data={}))

    assert inbox_of(RESIDENT) == []


@pytest.mark.parametrize(
    ("subject", "body", "data", "part", "reason"),
    COSTLY_TEMPLATES.values(),
    ids=COSTLY_TEMPLATES.keys(),
)
def test_a_template_too_costly_to_render_is_permanent_and_stores_nothing(
    subject: str, body: str, data: dict[str, Any], part: str, reason: str
) -> None:
    store_template("costly", subject=subject, body=body)

    with pytest.raises(PermanentError, match=rf"TemplateError: .*{part}.*{re.escape(reason)}"):
        deliver_to(actors.on_notification_requested, requested(template="costly", data=data))

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_template_written_for_another_channel_is_permanent() -> None:
    store_template("sms.only", channel="sms")

    message = requested(template="sms.only", data={})

    with pytest.raises(PermanentError, match=re.escape("No template 'sms.only' for the inbox")):
        deliver_to(actors.on_notification_requested, message)

    assert inbox_of(RESIDENT) == []


@pytest.mark.parametrize(
    "recipient", ["Resident:1", "resident", "resident:", "resident:has space", "a:b/c"]
)
def test_a_recipient_outside_the_contract_is_permanent(recipient: str) -> None:
    message = raw_message(recipient=recipient, template="request.accepted", data=ACCEPTED_DATA)

    with pytest.raises(PermanentError, match="recipient"):
        deliver_to(actors.on_notification_requested, message)


def test_a_message_without_a_template_is_permanent() -> None:
    message = raw_message(recipient=RESIDENT, data=ACCEPTED_DATA)

    with pytest.raises(PermanentError, match="template"):
        deliver_to(actors.on_notification_requested, message)


def test_a_real_worker_delivers_a_requested_notification_to_the_inbox() -> None:
    message = requested()

    with running_worker(runtime().broker, events.NOTIFY_QUEUE):
        runtime().broker.enqueue(message)
        stored = eventually(lambda: inbox_of(RESIDENT), what="the notification in the inbox")

    assert stored[0].source_message_id == message.message_id


def test_a_real_worker_keeps_an_undeliverable_notification_as_a_dead_letter() -> None:
    message = requested(template="no.such.template")

    with running_worker(runtime().broker, events.NOTIFY_QUEUE):
        runtime().broker.enqueue(message)
        (letter,) = eventually(lambda: list_dead_letters(runtime()), what="a dead letter")

    assert letter.message_id == message.message_id
    assert "No template 'no.such.template'" in letter.error
    assert inbox_of(RESIDENT) == []


def test_a_real_worker_keeps_a_notification_too_costly_to_render_as_a_dead_letter() -> None:
    store_template(
        "costly",
        body="{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    )
    message = requested(template="costly", data={})

    with running_worker(runtime().broker, events.NOTIFY_QUEUE):
        runtime().broker.enqueue(message)
        (letter,) = eventually(lambda: list_dead_letters(runtime()), what="a dead letter")

    assert letter.message_id == message.message_id
    assert "range() may hold at most 1000 items" in letter.error
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []
