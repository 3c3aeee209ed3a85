"""Submitting through the door: what is read fresh on every request, what a retry answers, and
what the session holds afterwards."""

from __future__ import annotations

from sqlalchemy import select, update

from services.intake import requests
from services.intake.config import runtime
from services.intake.models import Category, ServiceRequest, TimelineEntry
from services.intake.tests.builders import (
    HOTLINE,
    a_request,
    post,
    request_body,
)


def change_category(**values):
    """Change the catalogue as another process (or an operator's SQL) would."""
    with runtime().db.transaction() as session:
        session.execute(
            update(Category).where(Category.code == "knife_sharpening").values(**values)
        )


class TestTheCatalogueIsReadFresh:
    def test_a_category_deactivated_is_refused_by_the_very_next_post(
        self, client, api_key, resident_id
    ):
        assert post(client, api_key, request_body(resident_id)).status_code == 201
        change_category(is_active=False)
        response = post(client, api_key, request_body(resident_id))
        assert response.status_code == 404
        assert response.json["field"] == "category"

    def test_a_category_reactivated_is_accepted_by_the_very_next_post(
        self, client, api_key, resident_id
    ):
        change_category(is_active=False)
        assert post(client, api_key, request_body(resident_id)).status_code == 404
        change_category(is_active=True)
        assert post(client, api_key, request_body(resident_id)).status_code == 201

    def test_a_changed_default_priority_applies_to_the_very_next_post(
        self, client, api_key, resident_id
    ):
        assert post(client, api_key, request_body(resident_id)).json["priority"] == "normal"
        change_category(default_priority="urgent")
        assert post(client, api_key, request_body(resident_id)).json["priority"] == "urgent"

    def test_an_unknown_category_and_an_unknown_resident_name_the_category(self, client, api_key):
        response = post(client, api_key, request_body("nobody", category="teleportation"))
        assert response.status_code == 404
        assert response.json["field"] == "category"


class TestTheAnswer:
    def test_the_answer_is_the_request_as_stored_its_first_entry_included(
        self, client, api_key, resident_id
    ):
        # The answer is made before the request is written; its first entry's id only after.
        created = post(client, api_key, request_body(resident_id), idempotency_key="hotline-9")
        assert created.status_code == 201
        read = client.get(created.headers["Location"], headers={"X-API-Key": api_key})
        assert read.status_code == 200
        assert created.json == read.json
        with runtime().db.read() as session:
            entry = session.scalars(select(TimelineEntry)).one()
        assert created.json["timeline"][0]["id"] == entry.id
        retry = post(client, api_key, request_body(resident_id), idempotency_key="hotline-9")
        assert retry.json == created.json

    def test_each_answer_names_its_own_first_entry(self, client, api_key, resident_id):
        answers = [post(client, api_key, request_body(resident_id)).json for _ in range(3)]
        entries = [answer["timeline"][0]["id"] for answer in answers]
        with runtime().db.read() as session:
            stored = session.scalars(select(TimelineEntry.id).order_by(TimelineEntry.id)).all()
        assert entries == stored


class TestARetryIsAnsweredAsTheFirstAttempt:
    def test_a_retry_after_the_category_was_deactivated_gets_the_first_answer(
        self, client, api_key, resident_id
    ):
        first = post(client, api_key, request_body(resident_id), idempotency_key="hotline-5")
        change_category(is_active=False)
        retry = post(client, api_key, request_body(resident_id), idempotency_key="hotline-5")
        assert retry.status_code == 201
        assert retry.json == first.json
        assert retry.headers["Idempotent-Replayed"] == "true"

    def test_a_used_key_with_a_body_that_would_fail_is_refused_as_reused(
        self, client, api_key, resident_id
    ):
        post(client, api_key, request_body(resident_id), idempotency_key="hotline-6")
        response = post(
            client,
            api_key,
            request_body(resident_id, category="teleportation"),
            idempotency_key="hotline-6",
        )
        assert response.status_code == 422
        assert response.json["type"].endswith("/idempotency-key-reused")

    def test_a_retry_creates_nothing_and_stages_nothing(self, client, api_key, resident_id):
        for _ in range(3):
            post(client, api_key, request_body(resident_id), idempotency_key="hotline-7")
        messaging = runtime().messaging
        with runtime().db.read() as session:
            assert len(session.scalars(select(ServiceRequest)).all()) == 1
            assert len(session.scalars(select(TimelineEntry)).all()) == 1
            assert len(session.execute(select(messaging.outbox)).all()) == 1

    def test_a_key_whose_first_attempt_failed_may_be_used_again(self, client, api_key, resident_id):
        failed = post(
            client,
            api_key,
            request_body(resident_id, category="teleportation"),
            idempotency_key="hotline-8",
        )
        assert failed.status_code == 404
        retry = post(client, api_key, request_body(resident_id), idempotency_key="hotline-8")
        assert retry.status_code == 201
        assert "Idempotent-Replayed" not in retry.headers


class TestTheSubmittedRequestInTheSession:
    def test_it_is_the_stored_request_fully_loaded_and_nothing_is_left_to_flush(self):
        with runtime().db.transaction() as session:
            request = a_request(session)
            assert not session.new and not session.dirty
            assert request in session
            assert [entry.status for entry in request.timeline] == ["submitted"]
            session.expunge_all()
            stored = session.get(ServiceRequest, request.id)
            assert stored is not None and stored is not request
            columns = ServiceRequest.__table__.c.keys()
            assert {c: getattr(stored, c) for c in columns} == {
                c: getattr(request, c) for c in columns
            }
            assert [(e.id, e.status, e.note) for e in stored.timeline] == [
                (e.id, e.status, e.note) for e in request.timeline
            ]

    def test_news_handled_in_the_same_session_is_seen_on_the_returned_request(self):
        with runtime().db.transaction() as session:
            request = a_request(session)
            requests.record_assignment(
                session,
                request_id=request.id,
                assignment_id="a1",
                assignee=requests.Assignee(type="volunteer", id="v1", name="Lao Zhang"),
                at=request.created_at,
            )
            assert request.status == "assigned"
            assert [entry.status for entry in request.timeline] == ["submitted", "assigned"]

    def test_a_request_submitted_by_a_system_records_its_subject(self):
        with runtime().db.transaction() as session:
            request = a_request(session, submitted_by=HOTLINE)
        with runtime().db.read() as session:
            assert session.get_one(ServiceRequest, request.id).submitted_by == HOTLINE.subject
