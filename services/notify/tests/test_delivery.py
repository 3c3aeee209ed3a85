"""Notifications rendered from templates, delivered to the inbox and logged."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy.orm import Session

from services.notify import delivery
from services.notify.commands import EXTRA_COMMANDS
from services.notify.config import runtime
from services.notify.models import Template
from services.notify.tests.builders import (
    COSTLY_TEMPLATES,
    RESIDENT,
    STATICALLY_COSTLY,
    VOLUNTEER,
    delivery_log,
    inbox_of,
    notify,
    store_template,
)
from shared.auth import Principal
from shared.cli import run_cli
from shared.errors import Forbidden, Invalid, NotFound

LOCATION = {"community": "changshan-garden", "building": "3", "unit": "2", "household": "501"}
OWNER = Principal(subject="r-501", role="resident")


# Rendering into the inbox


def test_a_requested_notification_is_rendered_into_the_recipients_inbox() -> None:
    notify(
        RESIDENT, "request.accepted", {"volunteer_name": "Wang Jun", "category": "knife_sharpening"}
    )

    (message,) = inbox_of(RESIDENT)
    assert message.subject == "Your knife_sharpening request was accepted"
    assert message.body == "Wang Jun accepted your knife_sharpening request."
    assert message.template == "request.accepted"
    assert message.data == {"volunteer_name": "Wang Jun", "category": "knife_sharpening"}
    assert message.read_at is None


def test_an_assignment_tells_the_volunteer_what_and_where() -> None:
    notify(
        VOLUNTEER,
        "assignment.created",
        {"category": "lunch_delivery", "summary": "Lunch every day", "location": LOCATION},
    )

    (message,) = inbox_of(VOLUNTEER)
    assert message.body == (
        "New lunch_delivery request: Lunch every day\nAt building 3, unit 2, household 501."
    )


def test_credited_points_are_announced_with_the_new_balance() -> None:
    notify(
        VOLUNTEER,
        "points.credited",
        {"points": 10, "hours": "1.00", "category": "knife_sharpening", "balance": 130},
    )

    (message,) = inbox_of(VOLUNTEER)
    assert message.subject == "10 points credited"
    assert "10 points for 1.00 hour(s) of knife_sharpening" in message.body
    assert "balance is 130 points" in message.body


def test_plain_text_is_not_html_escaped() -> None:
    notify(RESIDENT, "request.accepted", {"volunteer_name": "Li & <Sons>", "category": "repair"})

    assert inbox_of(RESIDENT)[0].body.startswith("Li & <Sons> accepted")


def test_every_delivery_is_logged_with_the_message_that_asked_for_it() -> None:
    source = notify(RESIDENT)

    (entry,) = delivery_log()
    assert (entry.recipient, entry.channel, entry.template, entry.status, entry.error) == (
        RESIDENT,
        "inbox",
        "request.accepted",
        "delivered",
        None,
    )
    assert entry.source_message_id == source


def test_the_same_source_message_sent_twice_puts_one_message_in_the_inbox() -> None:
    with runtime().db.transaction() as session:
        first = delivery.send_notification(
            session,
            recipient=RESIDENT,
            template="request.accepted",
            data={"volunteer_name": "Wang Jun", "category": "haircut"},
            source_message_id="m-1",
        )
    with runtime().db.transaction() as session:
        second = delivery.send_notification(
            session,
            recipient=RESIDENT,
            template="request.accepted",
            data={"volunteer_name": "Wang Jun", "category": "haircut"},
            source_message_id="m-1",
        )

    assert first is not None
    assert second is None
    assert len(inbox_of(RESIDENT)) == 1
    assert len(delivery_log()) == 1


# What cannot be delivered


def test_an_unknown_template_is_refused_and_nothing_is_stored() -> None:
    with pytest.raises(NotFound, match=re.escape("No template 'no.such.template'")):
        notify(RESIDENT, "no.such.template", {})

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_missing_variable_is_refused_with_its_name_and_nothing_is_stored() -> None:
    with pytest.raises(delivery.TemplateError, match="'volunteer_name' is undefined"):
        notify(RESIDENT, "request.accepted", {"category": "haircut"})

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_an_unknown_channel_is_refused() -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid, match="Unknown channel"):
        delivery.send_notification(
            session,
            recipient=RESIDENT,
            template="request.accepted",
            data={},
            source_message_id="m-2",
            channel="carrier_pigeon",
        )


def test_a_template_written_for_another_channel_is_not_delivered_to_the_inbox() -> None:
    store_template("sms.only", body="Hi", channel="sms")

    with pytest.raises(NotFound, match=re.escape("No template 'sms.only' for the inbox channel")):
        notify(RESIDENT, "sms.only", {})

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_the_message_picks_the_channel_and_the_template_must_be_written_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []

    def send_sms(session: Session, *, message: delivery.Rendered, **_: Any) -> None:
        sent.append(message.body)

    monkeypatch.setitem(delivery.CHANNELS, "sms", send_sms)
    store_template("sms.hello", body="Hello {{ name }}", channel="sms")

    with runtime().db.transaction() as session:
        delivery.send_notification(
            session,
            recipient=RESIDENT,
            template="sms.hello",
            data={"name": "Li"},
            source_message_id="m-3",
            channel="sms",
        )
    with runtime().db.transaction() as session, pytest.raises(NotFound, match="sms channel"):
        delivery.send_notification(
            session,
            recipient=RESIDENT,
            template="request.accepted",
            data={"volunteer_name": "Li", "category": "haircut"},
            source_message_id="m-4",
            channel="sms",
        )

    assert sent == ["Hello Li"]
    assert inbox_of(RESIDENT) == []
    assert [(entry.channel, entry.template) for entry in delivery_log()] == [("sms", "sms.hello")]


def test_the_sandbox_refuses_a_stored_template_reaching_for_class_internals() -> None:
    store_template("evil", body="{{ ''.__class__.__mro__[1].__subclasses__() }}")

    with pytest.raises(delivery.UnsafeTemplate, match=r"unsafe.*__class__"):
        notify(RESIDENT, "evil", {})

    assert inbox_of(RESIDENT) == []


def test_the_sandbox_refuses_private_attributes_reached_through_a_filter() -> None:
    store_template("sly", body="{{ name|attr('__class__') }}")

    with pytest.raises(delivery.UnsafeTemplate, match="__class__"):
        notify(RESIDENT, "sly", {"name": "Wang Jun"})


def test_a_template_that_fails_while_rendering_is_refused_with_the_reason() -> None:
    store_template("broken", body="{{ 1 / count }}")

    with pytest.raises(delivery.TemplateError, match="ZeroDivisionError"):
        notify(RESIDENT, "broken", {"count": 0})


# Templates that would cost too much to render


@pytest.mark.parametrize(
    ("subject", "body", "data", "part", "reason"),
    COSTLY_TEMPLATES.values(),
    ids=COSTLY_TEMPLATES.keys(),
)
def test_a_template_too_costly_to_render_is_refused_and_nothing_is_stored(
    subject: str, body: str, data: dict[str, Any], part: str, reason: str
) -> None:
    store_template("costly", subject=subject, body=body)

    with pytest.raises(delivery.TemplateError) as refused:
        notify(RESIDENT, "costly", data)

    assert refused.value.extra["field"] == part
    assert f"'costly' {part} is too costly to render" in refused.value.detail
    assert reason in refused.value.detail
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_loops_numbers_and_formatting_within_the_limits_render() -> None:
    store_template(
        "digest",
        body="{% for item in items %}{{ loop.index }}/{{ loop.length }} {{ item }}; {% endfor %}"
        "{{ '{:,}'.format(balance) }} {{ '%.1f' % hours }} {{ '-' * 10 }} {{ 7 * 6 }}",
    )

    notify(RESIDENT, "digest", {"items": ["a", "b"], "balance": 1234567, "hours": 1.25})

    assert inbox_of(RESIDENT)[0].body == "1/2 a; 2/2 b; 1,234,567 1.2 ---------- 42"


# Staff editing templates


def test_staff_replace_the_text_of_a_template() -> None:
    with runtime().db.transaction() as session:
        delivery.save_template(
            session,
            key="request.accepted",
            subject="Good news",
            body="{{ volunteer_name }} is on the way.",
        )

    notify(RESIDENT)

    (message,) = inbox_of(RESIDENT)
    assert (message.subject, message.body) == ("Good news", "Wang Jun is on the way.")


@pytest.mark.parametrize("part", ["subject", "body"])
def test_a_template_that_does_not_parse_is_refused_naming_the_field(part: str) -> None:
    text = {"subject": "Hello", "body": "Hello", part: "{{ volunteer_name "}

    with runtime().db.transaction() as session, pytest.raises(delivery.TemplateError) as refused:
        delivery.save_template(session, key="request.accepted", **text)

    assert refused.value.extra["field"] == part
    assert part in refused.value.extra["errors"]
    assert f"template {part} does not parse" in refused.value.detail


def test_a_template_reaching_for_private_attributes_is_refused_when_saved() -> None:
    with runtime().db.transaction() as session, pytest.raises(delivery.UnsafeTemplate) as refused:
        delivery.save_template(
            session, key="evil", subject="Hi", body="{{ cycler.__init__.__globals__ }}"
        )

    assert refused.value.extra["field"] == "body"
    assert "access to '__globals__', '__init__' is not allowed" in refused.value.detail


@pytest.mark.parametrize(
    ("subject", "body", "part", "reason"),
    STATICALLY_COSTLY.values(),
    ids=STATICALLY_COSTLY.keys(),
)
def test_a_template_sure_to_cost_too_much_is_refused_when_saved_naming_the_field(
    subject: str, body: str, part: str, reason: str
) -> None:
    with runtime().db.transaction() as session, pytest.raises(delivery.TemplateError) as refused:
        delivery.save_template(session, key="costly", subject=subject, body=body)

    assert refused.value.extra["field"] == part
    assert reason in refused.value.extra["errors"][part][0]
    assert f"template {part} is too costly to render" in refused.value.detail


def test_a_template_key_must_look_like_an_event_name() -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid, match="key"):
        delivery.save_template(session, key="Bad Key", subject="Hi", body="Hi")


def test_defaults_never_overwrite_a_template_staff_edited() -> None:
    with runtime().db.transaction() as session:
        delivery.save_template(
            session, key="points.credited", subject="Thank you", body="{{ points }} points"
        )
    with runtime().db.transaction() as session:
        delivery.ensure_default_templates(session)

    with runtime().db.read() as session:
        assert delivery.get_template(session, "points.credited").subject == "Thank you"


def test_seed_demo_creates_missing_templates_and_lists_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with runtime().db.transaction() as session:
        session.delete(delivery.get_template(session, "request.accepted"))

    assert run_cli(runtime, ["seed-demo"], extra=EXTRA_COMMANDS) == 0
    assert run_cli(runtime, ["seed-demo"], extra=EXTRA_COMMANDS) == 0

    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[-1]) == {
        "templates": [
            "assignment.created",
            "request.accepted",
            "request.completed",
            "points.credited",
        ]
    }
    with runtime().db.read() as session:
        assert session.get(Template, "request.accepted") is not None


# Reading the inbox


def test_an_inbox_lists_newest_first_and_can_show_only_unread() -> None:
    for name in ("Wang", "Li", "Zhao"):
        notify(RESIDENT, data={"volunteer_name": name, "category": "haircut"})
    oldest = inbox_of(RESIDENT)[0]
    with runtime().db.transaction() as session:
        delivery.mark_read(session, recipient=RESIDENT, message_id=oldest.id, viewer=OWNER)

    with runtime().db.read() as session:
        everything, total = delivery.list_inbox(session, recipient=RESIDENT, viewer=OWNER)
        unread, unread_total = delivery.list_inbox(
            session, recipient=RESIDENT, viewer=OWNER, is_unread_only=True
        )

    assert [m.body.split()[0] for m in everything] == ["Zhao", "Li", "Wang"]
    assert total == 3
    assert [m.body.split()[0] for m in unread] == ["Zhao", "Li"]
    assert unread_total == 2


def test_a_person_may_not_read_someone_elses_inbox() -> None:
    notify(RESIDENT)
    stranger = Principal(subject="r-502", role="resident")

    with runtime().db.read() as session, pytest.raises(Forbidden):
        delivery.list_inbox(session, recipient=RESIDENT, viewer=stranger)


def test_the_same_id_under_another_role_is_another_person() -> None:
    volunteer = Principal(subject="r-501", role="volunteer")

    with runtime().db.read() as session, pytest.raises(Forbidden):
        delivery.list_inbox(session, recipient=RESIDENT, viewer=volunteer)


def test_marking_a_message_read_twice_keeps_the_first_time() -> None:
    notify(RESIDENT)
    (message,) = inbox_of(RESIDENT)

    with runtime().db.transaction() as session:
        delivery.mark_read(session, recipient=RESIDENT, message_id=message.id, viewer=OWNER)
    first = inbox_of(RESIDENT)[0].read_at
    with runtime().db.transaction() as session:
        delivery.mark_read(session, recipient=RESIDENT, message_id=message.id, viewer=OWNER)
    again = inbox_of(RESIDENT)[0].read_at

    assert first is not None
    assert again == first


def test_a_message_cannot_be_marked_read_through_another_inbox() -> None:
    notify(VOLUNTEER)
    (message,) = inbox_of(VOLUNTEER)

    with runtime().db.transaction() as session, pytest.raises(NotFound):
        delivery.mark_read(session, recipient=RESIDENT, message_id=message.id, viewer=OWNER)
