"""notify over HTTP: inboxes for their owners, templates and the delivery log for staff."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.notify.tests.builders import (
    DEFAULTS,
    REFUSED_WHEN_SAVED,
    RESIDENT,
    STATICALLY_COSTLY,
    UNDECLARED_VARIABLE,
    VOLUNTEER,
    BadTemplate,
    bearer,
    inbox_of,
    notify,
)
from shared.notifications import KINDS
from tests.support import assert_errors_documented

RESIDENT_TOKEN = bearer("resident", "r-501")
STAFF_TOKEN = bearer("staff", "s-1")
PROBLEM = "application/problem+json"


def put_template(client: FlaskClient, key: str, subject: str, body: str) -> Any:
    """Staff replace the template ``key``."""
    return client.put(
        f"/v1/templates/{key}", headers=STAFF_TOKEN, json={"subject": subject, "body": body}
    )


def assert_unchanged(client: FlaskClient, key: str) -> None:
    """The template under ``key`` is still the default one: nothing was stored."""
    shown = client.get(f"/v1/templates/{key}", headers=STAFF_TOKEN)
    assert shown.status_code == 200
    assert (shown.json["subject"], shown.json["body"]) == (
        DEFAULTS[key].subject,
        DEFAULTS[key].body,
    )


# Inboxes


def test_a_person_reads_their_own_inbox(client: FlaskClient) -> None:
    notify(RESIDENT)

    response = client.get(f"/v1/inbox/{RESIDENT}", headers=RESIDENT_TOKEN)

    assert response.status_code == 200
    (message,) = response.json
    assert message["body"] == "Wang Jun accepted your knife_sharpening request."
    assert message["is_read"] is False
    assert message["read_at"] is None


def test_another_persons_inbox_is_not_found(client: FlaskClient) -> None:
    notify(VOLUNTEER)

    response = client.get(f"/v1/inbox/{VOLUNTEER}", headers=RESIDENT_TOKEN)

    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.json["type"].endswith("/not-found")


@pytest.mark.parametrize(
    ("role", "inbox"),
    [("team_lead", VOLUNTEER), ("grid_leader", RESIDENT)],
    ids=["a team lead, a volunteer", "a grid leader, a resident"],
)
def test_a_person_of_any_role_reads_their_own_inbox_and_marks_it_read(
    client: FlaskClient, role: str, inbox: str
) -> None:
    notify(inbox)
    (message,) = inbox_of(inbox)
    token = bearer(role, inbox.split(":", 1)[1])

    listed = client.get(f"/v1/inbox/{inbox}", headers=token)
    read = client.post(f"/v1/inbox/{inbox}/messages/{message.id}/read", headers=token)

    assert listed.status_code == 200
    assert [m["id"] for m in listed.json] == [message.id]
    assert (read.status_code, read.json["is_read"]) == (200, True)


@pytest.mark.parametrize("role", ["team_lead", "grid_leader"])
def test_a_person_of_any_role_may_not_read_someone_elses_inbox(
    client: FlaskClient, role: str
) -> None:
    notify(VOLUNTEER)
    notify(RESIDENT)
    (message,) = inbox_of(RESIDENT)
    token = bearer(role, "someone-else")

    listed = [client.get(f"/v1/inbox/{inbox}", headers=token) for inbox in (VOLUNTEER, RESIDENT)]
    read = client.post(f"/v1/inbox/{RESIDENT}/messages/{message.id}/read", headers=token)

    assert [response.status_code for response in listed] == [404, 404]
    assert all(response.json["type"].endswith("/not-found") for response in listed)
    assert read.status_code == 404
    assert inbox_of(RESIDENT)[0].read_at is None


@pytest.mark.parametrize("role", ["health", "admin"])
def test_health_and_admin_tokens_have_no_inbox(client: FlaskClient, role: str) -> None:
    notify(VOLUNTEER)
    (message,) = inbox_of(VOLUNTEER)
    token = bearer(role, VOLUNTEER.split(":", 1)[1])

    listed = client.get(f"/v1/inbox/{VOLUNTEER}", headers=token)
    read = client.post(f"/v1/inbox/{VOLUNTEER}/messages/{message.id}/read", headers=token)

    assert [listed.status_code, read.status_code] == [403, 403]
    assert listed.json["type"].endswith("/forbidden")
    assert inbox_of(VOLUNTEER)[0].read_at is None


def test_a_team_lead_does_not_read_the_inbox_of_the_resident_of_the_same_id(
    client: FlaskClient,
) -> None:
    notify(RESIDENT)

    response = client.get(f"/v1/inbox/{RESIDENT}", headers=bearer("team_lead", "r-501"))

    assert response.status_code == 404


def test_staff_read_any_inbox(client: FlaskClient) -> None:
    notify(VOLUNTEER)

    response = client.get(f"/v1/inbox/{VOLUNTEER}", headers=STAFF_TOKEN)

    assert response.status_code == 200
    assert len(response.json) == 1


def test_an_inbox_needs_a_bearer_token(client: FlaskClient) -> None:
    assert client.get(f"/v1/inbox/{RESIDENT}").status_code == 401


def test_api_keys_are_not_accepted(client: FlaskClient) -> None:
    response = client.get(f"/v1/inbox/{RESIDENT}", headers={"X-API-Key": "rv_anything"})

    assert response.status_code == 401
    assert response.mimetype == PROBLEM


def test_an_inbox_is_paginated_newest_first(client: FlaskClient) -> None:
    for name in ("Wang", "Li", "Zhao"):
        notify(RESIDENT, volunteer_name=name, category="haircut")

    response = client.get(f"/v1/inbox/{RESIDENT}?page=1&page_size=2", headers=RESIDENT_TOKEN)

    assert response.status_code == 200
    assert [m["body"].split()[0] for m in response.json] == ["Zhao", "Li"]
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 3
    assert pagination["total_pages"] == 2
    assert pagination["next_page"] == 2


def test_an_inbox_can_show_only_unread_messages(client: FlaskClient) -> None:
    notify(RESIDENT)
    notify(RESIDENT)
    read = inbox_of(RESIDENT)[0]
    client.post(f"/v1/inbox/{RESIDENT}/messages/{read.id}/read", headers=RESIDENT_TOKEN)

    response = client.get(f"/v1/inbox/{RESIDENT}?unread=true", headers=RESIDENT_TOKEN)

    assert [m["id"] for m in response.json] == [inbox_of(RESIDENT)[1].id]


@pytest.mark.parametrize("unread", ["yes", "on", "2", "True ", ""])
def test_unread_is_true_or_false_and_nothing_else(client: FlaskClient, unread: str) -> None:
    response = client.get(f"/v1/inbox/{RESIDENT}?unread={unread}", headers=RESIDENT_TOKEN)

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["unread"]


@pytest.mark.parametrize(("unread", "count"), [("1", 1), ("0", 2), ("false", 2)])
def test_unread_reads_one_and_zero_too(client: FlaskClient, unread: str, count: int) -> None:
    notify(RESIDENT)
    notify(RESIDENT)
    read = inbox_of(RESIDENT)[0]
    client.post(f"/v1/inbox/{RESIDENT}/messages/{read.id}/read", headers=RESIDENT_TOKEN)

    response = client.get(f"/v1/inbox/{RESIDENT}?unread={unread}", headers=RESIDENT_TOKEN)

    assert len(response.json) == count


def test_marking_a_message_read_twice_answers_the_same(client: FlaskClient) -> None:
    notify(RESIDENT)
    (message,) = inbox_of(RESIDENT)
    url = f"/v1/inbox/{RESIDENT}/messages/{message.id}/read"

    first = client.post(url, headers=RESIDENT_TOKEN)
    again = client.post(url, headers=RESIDENT_TOKEN)

    assert first.status_code == again.status_code == 200
    assert first.json["is_read"] is True
    assert again.json["read_at"] == first.json["read_at"]


def test_a_message_of_another_inbox_cannot_be_marked_read(client: FlaskClient) -> None:
    notify(VOLUNTEER)
    (message,) = inbox_of(VOLUNTEER)

    response = client.post(
        f"/v1/inbox/{RESIDENT}/messages/{message.id}/read", headers=RESIDENT_TOKEN
    )

    assert response.status_code == 404
    assert inbox_of(VOLUNTEER)[0].read_at is None


# Templates


def test_staff_list_and_show_the_templates(client: FlaskClient) -> None:
    listed = client.get("/v1/templates", headers=STAFF_TOKEN)
    shown = client.get("/v1/templates/points.credited", headers=STAFF_TOKEN)

    assert [t["key"] for t in listed.json] == [
        "assignment.created",
        "points.credited",
        "points.expiring",
        "request.accepted",
        "request.completed",
    ]
    assert shown.status_code == 200
    assert "{{ balance }}" in shown.json["body"]


def test_an_unknown_template_is_not_found(client: FlaskClient) -> None:
    response = client.get("/v1/templates/no.such.template", headers=STAFF_TOKEN)

    assert response.status_code == 404
    assert response.mimetype == PROBLEM


def test_volunteers_and_residents_may_not_see_templates(client: FlaskClient) -> None:
    assert client.get("/v1/templates", headers=RESIDENT_TOKEN).status_code == 403
    assert client.get("/v1/templates", headers=bearer("volunteer", "v-17")).status_code == 403


def test_staff_replace_a_template_and_the_next_notification_uses_it(client: FlaskClient) -> None:
    response = put_template(
        client, "request.accepted", "Help is coming", "{{ volunteer_name }} is on the way."
    )
    notify(RESIDENT)

    assert response.status_code == 200
    assert response.json["subject"] == "Help is coming"
    assert inbox_of(RESIDENT)[0].body == "Wang Jun is on the way."


def test_a_template_with_a_jinja_syntax_error_is_refused_naming_the_field(
    client: FlaskClient,
) -> None:
    response = put_template(client, "request.accepted", "Hello", "{% if volunteer_name %}unclosed")

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.json["field"] == "body"
    assert "body" in response.json["errors"]
    assert "does not parse" in response.json["detail"]


def test_an_unsafe_template_is_refused(client: FlaskClient) -> None:
    response = put_template(client, "request.accepted", "{{ ''.__class__ }}", "Hello")

    assert response.status_code == 422
    assert response.json["field"] == "subject"
    assert "'__class__' is not allowed" in response.json["detail"]
    assert_unchanged(client, "request.accepted")


@pytest.mark.parametrize("bad", REFUSED_WHEN_SAVED.values(), ids=REFUSED_WHEN_SAVED.keys())
def test_a_template_that_cannot_render_its_kind_is_refused_naming_part_and_reason(
    client: FlaskClient, bad: BadTemplate
) -> None:
    response = put_template(client, bad.kind.key, bad.subject, bad.body)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.json["type"].endswith(f"/{bad.error.code}")
    assert response.json["field"] == bad.part
    assert list(response.json["errors"]) == [bad.part]
    assert bad.reason in response.json["errors"][bad.part][0]
    assert bad.reason in response.json["detail"]
    assert_unchanged(client, bad.kind.key)


def test_a_variable_its_kind_does_not_declare_is_refused_listing_the_kinds_fields(
    client: FlaskClient,
) -> None:
    bad = UNDECLARED_VARIABLE

    response = put_template(client, bad.kind.key, bad.subject, bad.body)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.json["field"] == "body"
    assert "'volunteer_phone' is undefined" in response.json["detail"]
    assert (
        "a request.accepted notification carries: category, request_id, summary, volunteer_name"
        in response.json["detail"]
    )


def test_a_template_for_an_unknown_kind_of_notification_is_refused(client: FlaskClient) -> None:
    response = put_template(
        client, "request.declined", "Sorry", "Nobody could take your {{ category }} request."
    )

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.json["field"] == "key"
    assert "No kind of notification 'request.declined'" in response.json["detail"]
    assert ", ".join(sorted(KINDS)) in response.json["detail"]
    assert client.get("/v1/templates/request.declined", headers=STAFF_TOKEN).status_code == 404


@pytest.mark.parametrize(
    ("subject", "body", "part", "reason"),
    STATICALLY_COSTLY.values(),
    ids=STATICALLY_COSTLY.keys(),
)
def test_a_template_sure_to_cost_too_much_is_refused_naming_the_field(
    client: FlaskClient, subject: str, body: str, part: str, reason: str
) -> None:
    response = put_template(client, "request.accepted", subject, body)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.json["field"] == part
    assert reason in response.json["errors"][part][0]
    assert "too costly to render" in response.json["detail"]
    shown = client.get("/v1/templates/request.accepted", headers=STAFF_TOKEN)
    assert shown.json["body"] == "{{ volunteer_name }} accepted your {{ category }} request."
    assert_unchanged(client, "request.accepted")


def test_every_endpoint_documents_its_errors_as_problems(client: FlaskClient) -> None:
    expected = {
        ("get", "/v1/inbox/{recipient}"): {"401", "404", "422"},
        ("post", "/v1/inbox/{recipient}/messages/{message_id}/read"): {"401", "404"},
        ("get", "/v1/templates"): {"401", "403"},
        ("get", "/v1/templates/{key}"): {"401", "403", "404"},
        ("put", "/v1/templates/{key}"): {"401", "403", "422"},
        ("get", "/v1/deliveries"): {"401", "403", "422"},
    }
    assert_errors_documented(client.get("/openapi.json").json, expected)


@pytest.mark.parametrize(
    ("subject", "body", "field"),
    [
        ("   ", "Hi", "subject"),
        ("Good\nnews", "Hi", "subject"),
        ("Good news\u202e", "Hi", "subject"),
        ("Hi", " \n ", "body"),
        ("Hi", "{{ volunteer_name }}\x1b[2J is on the way", "body"),
        ("Hi", "{{ volunteer_name }} \u2066is on the way", "body"),
    ],
)
def test_template_text_is_readable_text_and_never_blank(
    client: FlaskClient, subject: str, body: str, field: str
) -> None:
    response = put_template(client, "request.accepted", subject, body)

    assert response.status_code == 422
    assert list(response.json["errors"]) == [field]
    assert_unchanged(client, "request.accepted")


def test_a_template_body_keeps_its_lines_and_tabs(client: FlaskClient) -> None:
    response = put_template(
        client, "request.accepted", "Good news", "{{ volunteer_name }}\r\n\tis on the way."
    )

    assert response.status_code == 200
    assert response.json["body"] == "{{ volunteer_name }}\r\n\tis on the way."


def test_a_template_with_unknown_fields_is_refused(client: FlaskClient) -> None:
    response = client.put(
        "/v1/templates/request.accepted",
        headers=STAFF_TOKEN,
        json={"subject": "Hi", "body": "Hi", "channel": "sms"},
    )

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert "channel" in response.json["errors"]


# The delivery log


def test_staff_page_through_the_delivery_log_newest_first(client: FlaskClient) -> None:
    notify(RESIDENT)
    newest = notify(VOLUNTEER)

    response = client.get("/v1/deliveries?page_size=1", headers=STAFF_TOKEN)

    assert response.status_code == 200
    (entry,) = response.json
    assert (entry["recipient"], entry["status"]) == (VOLUNTEER, "delivered")
    assert entry["source_message_id"] == newest
    assert json.loads(response.headers["X-Pagination"])["total"] == 2


def test_the_delivery_log_refuses_an_unreadable_recipient(client: FlaskClient) -> None:
    response = client.get("/v1/deliveries?recipient=resident:r%0a1", headers=STAFF_TOKEN)

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["recipient"]


def test_the_delivery_log_is_for_staff_only(client: FlaskClient) -> None:
    assert client.get("/v1/deliveries", headers=bearer("volunteer", "v-17")).status_code == 403
