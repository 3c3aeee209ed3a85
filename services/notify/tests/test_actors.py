"""notification.requested messages, handled once each, through the consumer and a real worker."""

from __future__ import annotations

import re
import uuid
from typing import Any

import dramatiq
import pytest

from services.notify import actors, delivery
from services.notify.config import runtime
from services.notify.tests.builders import (
    ACCEPTED_DATA,
    COSTLY_TEMPLATES,
    COSTLY_WITH_SOME_DATA,
    RESIDENT,
    UNDECLARED_VARIABLE,
    UNSAFE_TEMPLATES,
    BadTemplate,
    data_for,
    delivery_log,
    inbox_of,
    remove_template,
    store_template,
)
from shared import events
from shared.consumers import PermanentError
from shared.dead_letters import list_dead_letters
from shared.notifications import REQUEST_ACCEPTED, REQUEST_COMPLETED, NotificationKind
from tests.support import deliver_to, eventually, message_for, running_worker


def requested(
    recipient: str = RESIDENT,
    kind: NotificationKind = REQUEST_ACCEPTED,
    *,
    channel: str | None = None,
    **changes: Any,
) -> dramatiq.Message:
    """A notification of ``kind`` as a publisher sends it, with the kind's example data and
    ``changes``."""
    payload: dict[str, Any] = {
        "recipient": recipient,
        "template": kind.key,
        "data": data_for(kind, **changes),
    }
    if channel is not None:
        payload["channel"] = channel
    return message_for(events.NOTIFICATION_REQUESTED, payload)


def raw_message(**kwargs: Any) -> dramatiq.Message:
    """A message as a careless publisher might send it, not checked against the contract."""
    return dramatiq.Message(
        queue_name="notify",
        actor_name=events.NOTIFICATION_REQUESTED.actor_name,
        args=(),
        kwargs=kwargs,
        options={},
        message_id=uuid.uuid4().hex,
    )


def test_a_requested_notification_lands_in_the_inbox_of_its_recipient() -> None:
    message = requested()

    assert deliver_to(actors.CONSUMERS, message) is True

    (stored,) = inbox_of(RESIDENT)
    assert stored.body == "Wang Jun accepted your knife_sharpening request."
    assert stored.source_message_id == message.message_id


def test_second_delivery_of_the_same_message_puts_one_message_in_the_inbox() -> None:
    message = requested()

    assert deliver_to(actors.CONSUMERS, message) is True
    assert deliver_to(actors.CONSUMERS, message) is False

    assert len(inbox_of(RESIDENT)) == 1
    assert len(delivery_log()) == 1


def test_fields_a_newer_publisher_adds_are_ignored() -> None:
    message = requested()
    message.kwargs["priority"] = "urgent"

    assert deliver_to(actors.CONSUMERS, message) is True


def test_data_fields_a_newer_publisher_adds_are_ignored_and_not_kept() -> None:
    message = requested()
    message.kwargs["data"]["volunteer_phone"] = "555-0101"

    assert deliver_to(actors.CONSUMERS, message) is True

    (stored,) = inbox_of(RESIDENT)
    assert stored.data == ACCEPTED_DATA


def test_a_kind_whose_template_is_missing_is_permanent_and_stores_nothing() -> None:
    remove_template("request.accepted")

    with pytest.raises(PermanentError, match=re.escape("No template 'request.accepted'")):
        deliver_to(actors.CONSUMERS, requested())

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_message_refused_for_a_missing_template_is_delivered_once_staff_create_it() -> None:
    remove_template("request.completed")
    message = requested(kind=REQUEST_COMPLETED, category="haircut")
    with pytest.raises(PermanentError):
        deliver_to(actors.CONSUMERS, message)

    with runtime().db.transaction() as session:
        delivery.save_template(
            session,
            key="request.completed",
            subject="Please confirm",
            body="{{ volunteer_name }} finished your {{ category }} request.",
        )

    assert deliver_to(actors.CONSUMERS, message) is True
    assert inbox_of(RESIDENT)[0].body == "Wang Jun finished your haircut request."


def test_a_stored_template_using_a_variable_its_kind_lacks_is_permanent() -> None:
    bad = UNDECLARED_VARIABLE
    store_template(bad.kind.key, subject=bad.subject, body=bad.body)

    with pytest.raises(PermanentError, match=re.escape(bad.reason)):
        deliver_to(actors.CONSUMERS, requested(kind=bad.kind))

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_an_unknown_channel_is_permanent() -> None:
    with pytest.raises(PermanentError, match="Unknown channel 'carrier_pigeon'"):
        deliver_to(actors.CONSUMERS, requested(channel="carrier_pigeon"))


@pytest.mark.parametrize("bad", UNSAFE_TEMPLATES.values(), ids=UNSAFE_TEMPLATES.keys())
def test_an_unsafe_stored_template_is_permanent_with_the_reason(bad: BadTemplate) -> None:
    store_template(bad.kind.key, subject=bad.subject, body=bad.body)

    with pytest.raises(PermanentError, match=rf"UnsafeTemplate.*{re.escape(bad.reason)}"):
        deliver_to(actors.CONSUMERS, requested(kind=bad.kind))

    assert inbox_of(RESIDENT) == []


@pytest.mark.parametrize(
    "bad",
    [*COSTLY_TEMPLATES.values(), *COSTLY_WITH_SOME_DATA.values()],
    ids=[*COSTLY_TEMPLATES.keys(), *COSTLY_WITH_SOME_DATA.keys()],
)
def test_a_template_too_costly_to_render_is_permanent_and_stores_nothing(
    bad: BadTemplate,
) -> None:
    store_template(bad.kind.key, subject=bad.subject, body=bad.body)
    message = requested(kind=bad.kind, **bad.changes)

    with pytest.raises(
        PermanentError, match=rf"TemplateError: .*{bad.part}.*{re.escape(bad.reason)}"
    ):
        deliver_to(actors.CONSUMERS, message)

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_template_written_for_another_channel_is_permanent() -> None:
    store_template("request.accepted", channel="sms")

    with pytest.raises(
        PermanentError, match=re.escape("No template 'request.accepted' for the inbox")
    ):
        deliver_to(actors.CONSUMERS, requested())

    assert inbox_of(RESIDENT) == []


@pytest.mark.parametrize(
    "recipient", ["Resident:1", "resident", "resident:", "resident:has space", "a:b/c"]
)
def test_a_recipient_outside_the_contract_is_permanent(recipient: str) -> None:
    message = raw_message(recipient=recipient, template="request.accepted", data=ACCEPTED_DATA)

    with pytest.raises(PermanentError, match="recipient"):
        deliver_to(actors.CONSUMERS, message)


def test_a_message_without_a_template_is_permanent() -> None:
    message = raw_message(recipient=RESIDENT, data=ACCEPTED_DATA)

    with pytest.raises(PermanentError, match="template"):
        deliver_to(actors.CONSUMERS, message)


def test_a_message_naming_no_known_kind_is_permanent() -> None:
    message = raw_message(recipient=RESIDENT, template="request.declined", data=ACCEPTED_DATA)

    with pytest.raises(PermanentError, match=r"template.*Must be one of"):
        deliver_to(actors.CONSUMERS, message)

    assert delivery_log() == []


@pytest.mark.parametrize(
    "missing", [("summary",), ("volunteer_name", "category")], ids=["one field", "two fields"]
)
def test_data_missing_fields_of_its_kind_is_permanent_and_stores_nothing(
    missing: tuple[str, ...],
) -> None:
    data = {name: value for name, value in ACCEPTED_DATA.items() if name not in missing}
    message = raw_message(recipient=RESIDENT, template="request.accepted", data=data)

    with pytest.raises(PermanentError) as refused:
        deliver_to(actors.CONSUMERS, message)

    for field in missing:
        assert f"'{field}': ['Missing data for required field.']" in str(refused.value)
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_data_of_the_wrong_type_is_permanent() -> None:
    data = data_for(REQUEST_COMPLETED)
    data["hours"] = "an afternoon"
    message = raw_message(recipient=RESIDENT, template="request.completed", data=data)

    with pytest.raises(PermanentError, match=r"hours.*Not a valid number"):
        deliver_to(actors.CONSUMERS, message)

    assert delivery_log() == []


def test_a_real_worker_delivers_a_requested_notification_to_the_inbox() -> None:
    message = requested()

    with running_worker(runtime().broker, "notify"):
        runtime().broker.enqueue(message)
        stored = eventually(lambda: inbox_of(RESIDENT), what="the notification in the inbox")

    assert stored[0].source_message_id == message.message_id


def test_a_real_worker_keeps_an_undeliverable_notification_as_a_dead_letter() -> None:
    remove_template("request.accepted")
    message = requested()

    with running_worker(runtime().broker, "notify"):
        runtime().broker.enqueue(message)
        (letter,) = eventually(
            lambda: list_dead_letters(runtime().db, runtime().messaging.dead_letters),
            what="a dead letter",
        )

    assert letter.message_id == message.message_id
    assert "No template 'request.accepted'" in letter.error
    assert inbox_of(RESIDENT) == []


def test_a_real_worker_keeps_a_notification_too_costly_to_render_as_a_dead_letter() -> None:
    store_template(
        "request.accepted",
        body="{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    )
    message = requested()

    with running_worker(runtime().broker, "notify"):
        runtime().broker.enqueue(message)
        (letter,) = eventually(
            lambda: list_dead_letters(runtime().db, runtime().messaging.dead_letters),
            what="a dead letter",
        )

    assert letter.message_id == message.message_id
    assert "range() may hold at most 1000 items" in letter.error
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []
