"""Conditional requests: every read of one request or record is tagged (ETag) and answered 304
when the caller's copy is current; every change to a request honours If-Match, so two staff
editing the same request from the same copy never overwrite each other (412)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.intake import actors, destinations, directory, requests, webhooks
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.models import ServiceRequest
from services.intake.tests.builders import (
    DUTY_OFFICER,
    NOW,
    a_category,
    a_request,
    a_resident,
    walk_to_completed,
)
from services.intake.tests.test_concurrency import at_once
from shared import events
from shared.auth import issue_token
from shared.clock import utcnow
from shared.conditional import PreconditionFailed
from tests.support import deliver_to, message_for

STAFF = "duty-officer"


def bearer(subject: str = STAFF, role: str = "staff") -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}


def stored(request_id: str) -> ServiceRequest:
    with runtime().db.read() as session:
        return requests.get_request(session, request_id)


@pytest.fixture
def request_id() -> str:
    with runtime().db.transaction() as session:
        return a_request(session).id


def etag_of(client: Any, path: str, headers: dict[str, str] | None = None) -> str:
    response = client.get(path, headers=headers or bearer())
    assert response.status_code == 200
    return str(response.headers["ETag"])


class TestReadingARequest:
    def test_a_request_is_tagged_with_its_version(self, client, request_id):
        response = client.get(f"/v1/requests/{request_id}", headers=bearer())

        assert response.status_code == 200
        assert response.headers["ETag"] == '"v1"'

    def test_the_copy_held_is_answered_304_with_no_body(self, client, request_id):
        tag = etag_of(client, f"/v1/requests/{request_id}")

        again = client.get(f"/v1/requests/{request_id}", headers={**bearer(), "If-None-Match": tag})

        assert again.status_code == 304
        assert again.data == b""
        assert again.headers["ETag"] == tag

    def test_a_copy_from_before_a_change_is_answered_in_full_with_the_new_tag(
        self, client, request_id
    ):
        old = etag_of(client, f"/v1/requests/{request_id}")
        triaged = client.post(
            f"/v1/requests/{request_id}/triage", json={"priority": "high"}, headers=bearer()
        )

        again = client.get(f"/v1/requests/{request_id}", headers={**bearer(), "If-None-Match": old})

        assert again.status_code == 200
        assert again.json["priority"] == "high"
        assert again.headers["ETag"] == triaged.headers["ETag"] != old

    def test_news_from_dispatch_handled_by_the_worker_changes_the_tag(self, client, request_id):
        old = etag_of(client, f"/v1/requests/{request_id}")
        assigned = message_for(
            events.REQUEST_ASSIGNED,
            {
                "request_id": request_id,
                "assignment_id": "a1",
                "assignee_type": "volunteer",
                "assignee_id": "v1",
                "assignee_name": "Lao Zhang",
                "assigned_at": NOW,
            },
            to="intake",
        )
        assert deliver_to(actors.CONSUMERS, assigned)

        again = client.get(f"/v1/requests/{request_id}", headers={**bearer(), "If-None-Match": old})

        assert again.status_code == 200
        assert again.json["status"] == "assigned"
        assert again.headers["ETag"] != old

    def test_a_resident_reading_their_own_request_gets_its_tag(self, client, request_id):
        resident = stored(request_id).resident_id
        assert resident is not None

        mine = client.get(f"/v1/requests/{request_id}", headers=bearer(resident, "resident"))

        assert mine.headers["ETag"] == '"v1"'

    def test_a_request_that_time_alone_made_overdue_is_tagged_anew_yet_may_be_changed_from_the_copy_before(  # noqa: E501
        self, client, request_id
    ):
        with runtime().db.transaction() as session:
            request = requests.get_request(session, request_id, for_update=True)
            request.due_at = utcnow() + timedelta(milliseconds=300)
        before = etag_of(client, f"/v1/requests/{request_id}")
        time.sleep(0.4)

        overdue = client.get(
            f"/v1/requests/{request_id}", headers={**bearer(), "If-None-Match": before}
        )
        escalated = client.post(
            f"/v1/requests/{request_id}/escalation",
            json={"reason": "Past its deadline"},
            headers={**bearer(), "If-Match": before},
        )

        assert overdue.status_code == 200
        assert overdue.json["is_overdue"] is True
        assert overdue.headers["ETag"] == before.removesuffix('"') + '-overdue"'
        assert escalated.status_code == 200


# Each change to a request, with a body it takes; all are made by staff.
CHANGES = {
    "triage": {"priority": "high"},
    "start": {},
    "escalation": {"reason": "The household asked twice"},
    "cancellation": {"reason": "No longer needed"},
    "rejection": {"reason": "Not a service of the neighbourhood"},
    "reopening": {"reason": "The knives are blunt again"},
    "confirmation": {"note": "The resident confirmed by phone"},
    "notes": {"text": "Called the household", "public": False},
    "attachments": {"url": "https://example.org/photo.jpg"},
}


class TestChangingARequest:
    def test_a_change_from_the_current_copy_is_made_and_tagged_with_the_new_version(
        self, client, request_id
    ):
        tag = etag_of(client, f"/v1/requests/{request_id}")

        triaged = client.post(
            f"/v1/requests/{request_id}/triage",
            json={"priority": "high"},
            headers={**bearer(), "If-Match": tag},
        )

        assert triaged.status_code == 200
        assert triaged.headers["ETag"] != tag
        assert triaged.headers["Content-Location"] == f"/v1/requests/{request_id}"
        assert etag_of(client, f"/v1/requests/{request_id}") == triaged.headers["ETag"]

    @pytest.mark.parametrize("action", sorted(CHANGES))
    def test_a_change_from_a_stale_copy_is_a_412_naming_the_current_tag_and_changes_nothing(
        self, client, request_id, action
    ):
        stale = etag_of(client, f"/v1/requests/{request_id}")
        client.post(
            f"/v1/requests/{request_id}/notes",
            json={"text": "Someone else was quicker", "public": False},
            headers=bearer(),
        )
        before = client.get(f"/v1/requests/{request_id}", headers=bearer())

        refused = client.post(
            f"/v1/requests/{request_id}/{action}",
            json=CHANGES[action],
            headers={**bearer(), "If-Match": stale},
        )

        assert refused.status_code == 412
        assert refused.mimetype == "application/problem+json"
        assert refused.json["type"].endswith("/precondition-failed")
        assert refused.json["current_etag"] == before.headers["ETag"] != stale
        after = client.get(f"/v1/requests/{request_id}", headers=bearer())
        assert after.headers["ETag"] == before.headers["ETag"]
        assert after.json == before.json

    def test_without_if_match_a_change_is_made_to_whatever_is_current(self, client, request_id):
        client.post(
            f"/v1/requests/{request_id}/notes",
            json={"text": "First", "public": True},
            headers=bearer(),
        )

        triaged = client.post(
            f"/v1/requests/{request_id}/triage", json={"priority": "low"}, headers=bearer()
        )

        assert triaged.status_code == 200
        assert stored(request_id).priority == "low"

    def test_if_match_star_allows_a_change_to_any_version(self, client, request_id):
        client.post(
            f"/v1/requests/{request_id}/notes",
            json={"text": "First", "public": True},
            headers=bearer(),
        )

        triaged = client.post(
            f"/v1/requests/{request_id}/triage",
            json={"priority": "low"},
            headers={**bearer(), "If-Match": "*"},
        )

        assert triaged.status_code == 200

    def test_any_of_several_tags_may_match(self, client, request_id):
        triaged = client.post(
            f"/v1/requests/{request_id}/triage",
            json={"priority": "low"},
            headers={**bearer(), "If-Match": '"v7", "v1"'},
        )

        assert triaged.status_code == 200

    @pytest.mark.parametrize("tag", ['W/"v1"', '"1"', '"v1-"', "garbage", '""'])
    def test_a_weak_or_foreign_tag_never_allows_a_change(self, client, request_id, tag):
        refused = client.post(
            f"/v1/requests/{request_id}/triage",
            json={"priority": "low"},
            headers={**bearer(), "If-Match": tag},
        )

        assert refused.status_code == 412
        assert stored(request_id).priority == "normal"

    def test_a_caller_who_may_not_see_the_request_learns_nothing_of_its_version(
        self, client, request_id
    ):
        refused = client.post(
            f"/v1/requests/{request_id}/cancellation",
            json={"reason": "Not mine"},
            headers={**bearer("someone-else", "resident"), "If-Match": '"v9"'},
        )

        assert refused.status_code == 404
        assert "current_etag" not in refused.json

    def test_a_merge_from_a_stale_copy_of_the_duplicate_merges_nothing(self, client):
        with runtime().db.transaction() as session:
            original = a_request(session)
            duplicate = a_request(session)
        stale = etag_of(client, f"/v1/requests/{duplicate.id}")
        client.post(
            f"/v1/requests/{duplicate.id}/notes",
            json={"text": "Looked into it", "public": False},
            headers=bearer(),
        )

        refused = client.post(
            f"/v1/requests/{duplicate.id}/merge",
            json={"into": original.id},
            headers={**bearer(), "If-Match": stale},
        )

        assert refused.status_code == 412
        assert stored(duplicate.id).duplicate_of is None
        assert stored(original.id).version == 1


class TestTwoEditorsAtOnce:
    """Both read the same copy, then change it at the same moment: one change is made, the
    other is refused, on SQLite (one writer at a time) and on PostgreSQL (the row locked)."""

    def test_two_staff_triaging_from_the_same_copy_at_once_one_wins_and_one_gets_412(self):
        app = create_app()
        for _ in range(5):
            with runtime().db.transaction() as session:
                request_id = a_request(session).id
            tag = etag_of(app.test_client(), f"/v1/requests/{request_id}")

            def triage(priority: str, by: str, request_id: str = request_id, tag: str = tag) -> Any:
                return app.test_client().post(
                    f"/v1/requests/{request_id}/triage",
                    json={"priority": priority},
                    headers={**bearer(by), "If-Match": tag},
                )

            outcomes = at_once(
                lambda: triage("high", "duty-officer"), lambda: triage("low", "night-officer")
            )

            assert sorted(response.status_code for response in outcomes) == [200, 412]
            (winner,) = [response for response in outcomes if response.status_code == 200]
            (loser,) = [response for response in outcomes if response.status_code == 412]
            request = stored(request_id)
            assert request.priority == winner.json["priority"]
            assert requests.etag_of(request) == winner.headers["ETag"]
            assert loser.json["current_etag"] == winner.headers["ETag"]
            assert [entry.action for entry in request.timeline].count("triage") == 1

    def test_two_notes_on_the_same_copy_at_once_are_one_note_and_one_refusal(self):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id

        def note(text: str) -> Any:
            with runtime().db.transaction() as session:
                return requests.add_note(
                    session,
                    request_id=request_id,
                    text=text,
                    written_by=DUTY_OFFICER,
                    is_public=False,
                    expected_versions={1},
                ).note

        outcomes = at_once(lambda: note("Called them"), lambda: note("Visited them"))

        refused = [outcome for outcome in outcomes if isinstance(outcome, PreconditionFailed)]
        written = [outcome for outcome in outcomes if isinstance(outcome, str)]
        assert (len(refused), len(written)) == (1, 1)
        notes = [entry.note for entry in stored(request_id).timeline if entry.action == "note"]
        assert notes == written


class TestTheVersion:
    def test_every_change_to_the_row_counts_news_and_the_scheduler_included(self):
        with runtime().db.transaction() as session:
            request = a_request(session)
            request_id = request.id
        with runtime().db.transaction() as session:
            walk_to_completed(session, requests.get_request(session, request_id))
        after_news = stored(request_id).version
        with runtime().db.transaction() as session:
            requests.close_unconfirmed(session, confirm_within=timedelta(0))

        assert after_news > 1
        assert stored(request_id).version > after_news
        assert stored(request_id).status == "closed"

    def test_a_submitted_request_starts_at_version_one_without_reading_it_back(self):
        with runtime().db.transaction() as session:
            a_category(session)
            resident = a_resident(session)
            created = requests.submit_request(
                session,
                submitted_by=DUTY_OFFICER,
                category="knife_sharpening",
                summary="Scissors",
                resident_id=resident.id,
            )
            assert created.version == 1
        with runtime().db.read() as session:
            assert session.scalar(select(ServiceRequest.version)) == 1


# The single records other than requests: tagged by a hash of what is shown.
@pytest.fixture
def records() -> dict[str, tuple[str, dict[str, Any]]]:
    """Each record's path, and a change to PATCH it with."""
    with runtime().db.transaction() as session:
        a_category(session)
        resident = a_resident(session)
        node = directory.add_household(
            session, community="changshan-garden", building="3", unit="2", number="502"
        )
        directory.create_api_client(session, name="city-hotline")
        subscription = webhooks.create_subscription(
            session,
            by=DUTY_OFFICER,
            url="http://127.0.0.1:9/hooks",
            destinations=destinations.destinations_for("test"),
            owner="client:city-hotline",
        )
        return {
            "category": ("/v1/categories/knife_sharpening", {"is_active": False}),
            "grid node": (f"/v1/grid/nodes/{node.id}", {"name": "Flat 502"}),
            "resident": (f"/v1/residents/{resident.id}", {"lives_alone": True}),
            "webhook": (f"/v1/webhooks/{subscription.id}", {"description": "Hotline"}),
        }


@pytest.mark.parametrize("record", ["category", "grid node", "resident", "webhook"])
def test_a_record_is_tagged_answered_304_while_current_and_tagged_anew_once_changed(
    client, records, record
):
    path, change = records[record]
    tag = etag_of(client, path)

    unchanged = client.get(path, headers={**bearer(), "If-None-Match": tag})
    assert client.patch(path, json=change, headers=bearer()).status_code == 200
    changed = client.get(path, headers={**bearer(), "If-None-Match": tag})

    assert tag.startswith('"') and not tag.startswith("W/")
    assert (unchanged.status_code, unchanged.data) == (304, b"")
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag


def test_the_api_documents_the_tags_304_and_412(client):
    paths = client.get("/openapi.json").json["paths"]

    read = paths["/v1/requests/{request_id}"]["get"]
    assert "ETag" in read["responses"]["200"]["headers"]
    assert "304" in read["responses"]
    assert "If-None-Match" in [parameter["name"] for parameter in read["parameters"]]
    for action in CHANGES:
        change = paths[f"/v1/requests/{{request_id}}/{action}"]["post"]
        assert "If-Match" in [parameter["name"] for parameter in change["parameters"]]
        problem = change["responses"]["412"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/PreconditionProblem"}
    for path in (
        "/v1/categories/{code}",
        "/v1/grid/nodes/{node_id}",
        "/v1/residents/{resident_id}",
        "/v1/webhooks/{subscription_id}",
    ):
        assert "304" in paths[path]["get"]["responses"]
