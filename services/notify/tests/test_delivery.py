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
from services.notify.policy import POLICY, no_inbox
from services.notify.sandbox import MAX_DEPTH
from services.notify.tests.builders import (
    COSTLY_TEMPLATES,
    COSTLY_WITH_SOME_DATA,
    DEFAULTS,
    LOCATION,
    REFUSED_WHEN_SAVED,
    RESIDENT,
    STATICALLY_COSTLY,
    UNDECLARED_VARIABLE,
    UNSAFE_TEMPLATES,
    VOLUNTEER,
    BadTemplate,
    data_for,
    delivery_log,
    inbox_of,
    notify,
    remove_template,
    store_template,
    stored_template,
)
from shared.auth import Principal
from shared.cli import run_cli
from shared.errors import Invalid, NotFound
from shared.notifications import (
    ASSIGNMENT_CREATED,
    KINDS,
    POINTS_CREDITED,
    REQUEST_ACCEPTED,
    REQUEST_COMPLETED,
)

OWNER = Principal(subject="r-501", role="resident")


def assert_unchanged(key: str) -> None:
    """The template under ``key`` is still the default one: nothing was stored."""
    stored = stored_template(key)
    assert stored is not None
    assert (stored.subject, stored.body) == (DEFAULTS[key].subject, DEFAULTS[key].body)


# Rendering into the inbox


def test_a_requested_notification_is_rendered_into_the_recipients_inbox() -> None:
    notify(RESIDENT, REQUEST_ACCEPTED, volunteer_name="Wang Jun", category="knife_sharpening")

    (message,) = inbox_of(RESIDENT)
    assert message.subject == "Your knife_sharpening request was accepted"
    assert message.body == "Wang Jun accepted your knife_sharpening request."
    assert message.template == "request.accepted"
    assert message.data == {
        "request_id": "req-778",
        "volunteer_name": "Wang Jun",
        "category": "knife_sharpening",
        "summary": "Two knives",
    }
    assert message.read_at is None


def test_an_assignment_tells_the_volunteer_what_and_where() -> None:
    notify(
        VOLUNTEER,
        ASSIGNMENT_CREATED,
        category="lunch_delivery",
        summary="Lunch every day",
        location=LOCATION,
    )

    (message,) = inbox_of(VOLUNTEER)
    assert message.body == (
        "New lunch_delivery request: Lunch every day\nAt building 3, unit 2, household 501."
    )


def test_the_resident_is_asked_to_confirm_completed_work_with_its_hours() -> None:
    notify(RESIDENT, REQUEST_COMPLETED, volunteer_name="Li Na", category="haircut", hours="0.75")

    (message,) = inbox_of(RESIDENT)
    assert message.subject == "Please confirm your haircut request"
    assert message.body.startswith("Li Na reports your haircut request done (0.75 hour(s)).")


def test_credited_points_are_announced_with_the_new_balance() -> None:
    notify(
        VOLUNTEER,
        POINTS_CREDITED,
        points=10,
        hours="1.00",
        category="knife_sharpening",
        balance=130,
    )

    (message,) = inbox_of(VOLUNTEER)
    assert message.subject == "10 points credited"
    assert "10 points for 1.00 hour(s) of knife_sharpening" in message.body
    assert "balance is 130 points" in message.body


def test_plain_text_is_not_html_escaped() -> None:
    notify(RESIDENT, REQUEST_ACCEPTED, volunteer_name="Li & <Sons>", category="repair")

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
            kind="request.accepted",
            data=data_for(REQUEST_ACCEPTED, category="haircut"),
            source_message_id="m-1",
        )
    with runtime().db.transaction() as session:
        second = delivery.send_notification(
            session,
            recipient=RESIDENT,
            kind="request.accepted",
            data=data_for(REQUEST_ACCEPTED, category="haircut"),
            source_message_id="m-1",
        )

    assert first is not None
    assert second is None
    assert len(inbox_of(RESIDENT)) == 1
    assert len(delivery_log()) == 1


# What cannot be delivered


def test_a_kind_whose_template_is_missing_is_refused_and_nothing_is_stored() -> None:
    remove_template("request.completed")

    with pytest.raises(NotFound, match=re.escape("No template 'request.completed'")):
        notify(RESIDENT, REQUEST_COMPLETED)

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_stored_template_using_a_variable_its_kind_lacks_is_refused_with_its_name() -> None:
    bad = UNDECLARED_VARIABLE
    store_template(bad.kind.key, subject=bad.subject, body=bad.body)

    with pytest.raises(delivery.TemplateError, match=re.escape(bad.reason)) as refused:
        notify(RESIDENT, bad.kind)

    assert refused.value.extra["field"] == bad.part
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_an_unknown_channel_is_refused() -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid, match="Unknown channel"):
        delivery.send_notification(
            session,
            recipient=RESIDENT,
            kind="request.accepted",
            data=data_for(REQUEST_ACCEPTED),
            source_message_id="m-2",
            channel="carrier_pigeon",
        )


def test_a_template_written_for_another_channel_is_not_delivered_to_the_inbox() -> None:
    store_template("request.accepted", body="Hi", channel="sms")

    with pytest.raises(
        NotFound, match=re.escape("No template 'request.accepted' for the inbox channel")
    ):
        notify(RESIDENT, REQUEST_ACCEPTED)

    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_the_message_picks_the_channel_and_the_template_must_be_written_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []

    def send_sms(session: Session, *, message: delivery.Rendered, **_: Any) -> None:
        sent.append(message.body)

    monkeypatch.setitem(delivery.CHANNELS, "sms", send_sms)
    store_template("request.completed", body="Please confirm, {{ volunteer_name }}", channel="sms")

    with runtime().db.transaction() as session:
        delivery.send_notification(
            session,
            recipient=RESIDENT,
            kind="request.completed",
            data=data_for(REQUEST_COMPLETED, volunteer_name="Li"),
            source_message_id="m-3",
            channel="sms",
        )
    with runtime().db.transaction() as session, pytest.raises(NotFound, match="sms channel"):
        delivery.send_notification(
            session,
            recipient=RESIDENT,
            kind="request.accepted",
            data=data_for(REQUEST_ACCEPTED, volunteer_name="Li", category="haircut"),
            source_message_id="m-4",
            channel="sms",
        )

    assert sent == ["Please confirm, Li"]
    assert inbox_of(RESIDENT) == []
    assert [(entry.channel, entry.template) for entry in delivery_log()] == [
        ("sms", "request.completed")
    ]


@pytest.mark.parametrize("bad", UNSAFE_TEMPLATES.values(), ids=UNSAFE_TEMPLATES.keys())
def test_the_sandbox_refuses_a_stored_template_reaching_for_python_internals(
    bad: BadTemplate,
) -> None:
    store_template(bad.kind.key, subject=bad.subject, body=bad.body)

    with pytest.raises(delivery.UnsafeTemplate) as refused:
        notify(RESIDENT, bad.kind)

    assert refused.value.extra["field"] == bad.part
    assert f"{bad.part} is unsafe" in refused.value.detail
    assert bad.reason in refused.value.detail
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


def test_a_saved_template_failing_on_some_data_is_refused_with_the_reason_when_rendered() -> None:
    with runtime().db.transaction() as session:
        delivery.save_template(
            session,
            key="request.completed",
            subject="Please confirm",
            body="{{ 1 / (hours|int) }}",
        )

    with pytest.raises(delivery.TemplateError, match="ZeroDivisionError"):
        notify(RESIDENT, REQUEST_COMPLETED, hours="0.50")

    assert inbox_of(RESIDENT) == []


# Templates that would cost too much to render


@pytest.mark.parametrize(
    "bad",
    [*COSTLY_TEMPLATES.values(), *COSTLY_WITH_SOME_DATA.values()],
    ids=[*COSTLY_TEMPLATES.keys(), *COSTLY_WITH_SOME_DATA.keys()],
)
def test_a_stored_template_too_costly_to_render_is_refused_and_nothing_is_stored(
    bad: BadTemplate,
) -> None:
    store_template(bad.kind.key, subject=bad.subject, body=bad.body)

    with pytest.raises(delivery.TemplateError) as refused:
        notify(RESIDENT, bad.kind, **bad.changes)

    assert refused.value.extra["field"] == bad.part
    assert f"'{bad.kind.key}' {bad.part} is too costly to render" in refused.value.detail
    assert bad.reason in refused.value.detail
    assert inbox_of(RESIDENT) == []
    assert delivery_log() == []


@pytest.mark.parametrize("bad", COSTLY_WITH_SOME_DATA.values(), ids=COSTLY_WITH_SOME_DATA.keys())
def test_a_template_costly_only_with_some_data_is_saved_and_refused_when_that_data_comes(
    bad: BadTemplate,
) -> None:
    with runtime().db.transaction() as session:
        delivery.save_template(session, key=bad.kind.key, subject=bad.subject, body=bad.body)
    notify(RESIDENT, bad.kind)

    with pytest.raises(delivery.TemplateError, match=re.escape(bad.reason)):
        notify(RESIDENT, bad.kind, **bad.changes)

    assert len(inbox_of(RESIDENT)) == 1


def test_loops_numbers_and_formatting_within_the_limits_render() -> None:
    with runtime().db.transaction() as session:
        delivery.save_template(
            session,
            key="points.credited",
            subject="Digest",
            body="{% for word in category.split('_') %}{{ loop.index }}/{{ loop.length }} "
            "{{ word }}; {% endfor %}{{ '{:,}'.format(balance|int) }} "
            "{{ '%.1f' % (hours|float) }} {{ '-' * 10 }} {{ 7 * 6 }}",
        )

    notify(RESIDENT, POINTS_CREDITED, category="knife_sharpening", balance=1234567, hours="1.25")

    assert inbox_of(RESIDENT)[0].body == "1/2 knife; 2/2 sharpening; 1,234,567 1.2 ---------- 42"


def test_templates_nested_as_deep_as_the_sandbox_allows_render() -> None:
    blocks = MAX_DEPTH // 2
    body = (
        "{% if category %}" * blocks
        + "{{ "
        + "(" * MAX_DEPTH
        + "points"
        + ")" * MAX_DEPTH
        + " }}"
        + "{% endif %}" * blocks
    )
    with runtime().db.transaction() as session:
        delivery.save_template(session, key="points.credited", subject="Hi", body=body)

    notify(RESIDENT, POINTS_CREDITED, points="15")

    assert inbox_of(RESIDENT)[0].body == "15"


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


@pytest.mark.parametrize("default", delivery.DEFAULT_TEMPLATES, ids=lambda default: default.key)
def test_every_default_template_renders_the_sample_of_its_kind(
    default: delivery.DefaultTemplate,
) -> None:
    template = Template(
        key=default.key, channel=default.channel, subject=default.subject, body=default.body
    )

    sample = KINDS[default.key].sample()

    rendered = delivery.render(template, sample)

    assert rendered.subject
    # What the news is about: the service's category, or the points themselves.
    shown = sample["category"] if "category" in sample else sample["points"]
    assert shown in rendered.body
    assert "{" not in rendered.subject + rendered.body


def test_every_kind_of_notification_has_a_default_template() -> None:
    assert sorted(DEFAULTS) == sorted(KINDS)


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
            session,
            key="request.accepted",
            subject="Hi",
            body="{{ cycler.__init__.__globals__ }}",
        )

    assert refused.value.extra["field"] == "body"
    assert "access to '__globals__', '__init__' is not allowed" in refused.value.detail
    assert_unchanged("request.accepted")


@pytest.mark.parametrize(
    ("subject", "body", "part", "reason"),
    STATICALLY_COSTLY.values(),
    ids=STATICALLY_COSTLY.keys(),
)
def test_a_template_sure_to_cost_too_much_is_refused_when_saved_naming_the_field(
    subject: str, body: str, part: str, reason: str
) -> None:
    with runtime().db.transaction() as session, pytest.raises(delivery.TemplateError) as refused:
        delivery.save_template(session, key="points.credited", subject=subject, body=body)

    assert refused.value.extra["field"] == part
    assert reason in refused.value.extra["errors"][part][0]
    assert f"template {part} is too costly to render" in refused.value.detail
    assert_unchanged("points.credited")


@pytest.mark.parametrize("bad", REFUSED_WHEN_SAVED.values(), ids=REFUSED_WHEN_SAVED.keys())
def test_a_template_that_cannot_render_its_kind_is_refused_when_saved_naming_part_and_reason(
    bad: BadTemplate,
) -> None:
    with runtime().db.transaction() as session, pytest.raises(bad.error) as refused:
        delivery.save_template(session, key=bad.kind.key, subject=bad.subject, body=bad.body)

    assert type(refused.value) is bad.error
    assert refused.value.status == 422
    assert refused.value.extra["field"] == bad.part
    assert list(refused.value.extra["errors"]) == [bad.part]
    assert bad.reason in refused.value.extra["errors"][bad.part][0]
    assert bad.reason in refused.value.detail
    assert_unchanged(bad.kind.key)


def test_an_undeclared_variable_is_refused_when_saved_listing_the_kinds_fields() -> None:
    bad = UNDECLARED_VARIABLE

    with runtime().db.transaction() as session, pytest.raises(delivery.TemplateError) as refused:
        delivery.save_template(session, key=bad.kind.key, subject=bad.subject, body=bad.body)

    assert "'volunteer_phone' is undefined" in refused.value.detail
    assert (
        "a request.accepted notification carries: category, request_id, summary, volunteer_name"
        in refused.value.detail
    )
    assert_unchanged(bad.kind.key)


def test_a_template_for_an_unknown_kind_of_notification_is_refused_when_saved() -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid) as refused:
        delivery.save_template(
            session, key="request.declined", subject="Sorry", body="Nobody could help."
        )

    assert refused.value.status == 422
    assert refused.value.extra["field"] == "key"
    assert "No kind of notification 'request.declined'" in refused.value.detail
    assert ", ".join(sorted(KINDS)) in refused.value.detail
    assert stored_template("request.declined") is None


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
    remove_template("request.accepted")

    assert run_cli(runtime, ["seed-demo"], extra=EXTRA_COMMANDS) == 0
    assert run_cli(runtime, ["seed-demo"], extra=EXTRA_COMMANDS) == 0

    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[-1]) == {
        "templates": [
            "assignment.created",
            "request.accepted",
            "request.completed",
            "points.credited",
            "points.expiring",
        ]
    }
    assert stored_template("request.accepted") is not None


# Reading the inbox


def test_an_inbox_lists_newest_first_and_can_show_only_unread() -> None:
    for name in ("Wang", "Li", "Zhao"):
        notify(RESIDENT, volunteer_name=name, category="haircut")
    oldest = inbox_of(RESIDENT)[0]
    with runtime().db.transaction() as session:
        delivery.mark_read(session, recipient=RESIDENT, message_id=oldest.id)

    with runtime().db.read() as session:
        everything, total = delivery.list_inbox(session, recipient=RESIDENT)
        unread, unread_total = delivery.list_inbox(session, recipient=RESIDENT, is_unread_only=True)

    assert [m.body.split()[0] for m in everything] == ["Zhao", "Li", "Wang"]
    assert total == 3
    assert [m.body.split()[0] for m in unread] == ["Zhao", "Li"]
    assert unread_total == 2


INBOX = "notify.Inbox.get"


def test_a_person_may_not_read_someone_elses_inbox() -> None:
    notify(RESIDENT)
    stranger = Principal(subject="r-502", role="resident")

    # Another's inbox is hidden as if it did not exist (the policy's one rule).
    with pytest.raises(NotFound):
        POLICY.check_owner(INBOX, stranger, {"recipient": RESIDENT}, hidden_as=no_inbox(RESIDENT))
    POLICY.check_owner(INBOX, OWNER, {"recipient": RESIDENT}, hidden_as=no_inbox(RESIDENT))


def test_the_same_id_under_another_role_is_another_person() -> None:
    volunteer = Principal(subject="r-501", role="volunteer")

    with pytest.raises(NotFound):
        POLICY.check_owner(INBOX, volunteer, {"recipient": RESIDENT}, hidden_as=no_inbox(RESIDENT))


def test_marking_a_message_read_twice_keeps_the_first_time() -> None:
    notify(RESIDENT)
    (message,) = inbox_of(RESIDENT)

    with runtime().db.transaction() as session:
        delivery.mark_read(session, recipient=RESIDENT, message_id=message.id)
    first = inbox_of(RESIDENT)[0].read_at
    with runtime().db.transaction() as session:
        delivery.mark_read(session, recipient=RESIDENT, message_id=message.id)
    again = inbox_of(RESIDENT)[0].read_at

    assert first is not None
    assert again == first


def test_a_message_cannot_be_marked_read_through_another_inbox() -> None:
    notify(VOLUNTEER)
    (message,) = inbox_of(VOLUNTEER)

    with runtime().db.transaction() as session, pytest.raises(NotFound):
        delivery.mark_read(session, recipient=RESIDENT, message_id=message.id)
