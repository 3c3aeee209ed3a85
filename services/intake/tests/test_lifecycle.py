"""A request's life past submission: its state machine, its timeline, proxies, the timer that
closes what no one confirmed, cancelling, reopening, notes, attachments and duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from services.intake import directory, requests
from services.intake.config import runtime
from services.intake.directory import Place
from services.intake.tests.builders import (
    DUTY_OFFICER,
    HOTLINE,
    a_category,
    a_request,
    a_resident,
    post,
    request_body,
    resident_of,
    walk_to_completed,
)
from services.intake.tests.test_api import bearer
from shared import clock, events
from shared.auth import Principal
from shared.errors import Invalid, NotFound
from tests.support import staged_messages

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
VOLUNTEER = Principal("v1", "volunteer")


@pytest.fixture
def frozen():
    with clock.freeze(T0):
        yield


class TestTheStateMachine:
    def test_an_illegal_transition_is_a_conflict_naming_the_current_status(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        with pytest.raises(requests.IllegalTransition, match="is completed: it cannot cancel"):
            requests.cancel_request(
                session, request_id=request.id, cancelled_by=DUTY_OFFICER, reason="x"
            )
        assert request.status == "completed"

    def test_over_http_the_problem_names_the_current_status(self, client, api_key, resident_id):
        created = post(client, api_key, request_body(resident_id)).json
        url = f"/v1/requests/{created['id']}"
        staff = bearer("duty-officer", "staff")
        rejected = client.post(f"{url}/rejection", json={"reason": "Not ours"}, headers=staff)
        assert rejected.status_code == 200
        response = client.post(f"{url}/escalation", json={"reason": "Late"}, headers=staff)
        assert response.status_code == 409
        assert response.json["type"].endswith("/illegal-transition")
        assert response.json["current_status"] == "rejected"
        assert "is rejected" in response.json["detail"]

    def test_every_transition_table_entry_names_known_statuses(self):
        for allowed, target in requests.TRANSITIONS.values():
            assert allowed <= set(requests.STATUSES) and target in requests.STATUSES
        for moves_from in requests.NEWS.values():
            assert moves_from <= set(requests.STATUSES)

    def test_triage_escalation_and_start_each_land_on_the_timeline_with_who_did_it(self, session):
        request = a_request(session)
        requests.triage_request(
            session, request_id=request.id, triaged_by=DUTY_OFFICER, priority="urgent"
        )
        requests.escalate_request(
            session, request_id=request.id, escalated_by=DUTY_OFFICER, reason="No one yet"
        )
        requests.record_assignment(
            session,
            request_id=request.id,
            assignment_id="a1",
            assignee=requests.Assignee("volunteer", "v1", "Lao Zhang"),
            at=T0,
        )
        requests.start_service(session, request_id=request.id, started_by=VOLUNTEER)
        assert request.status == "in_service"
        assert [(e.action, e.status, e.actor, e.is_public) for e in request.timeline] == [
            ("submitted", "submitted", "system:client:city-hotline", True),
            ("triage", "triaged", "staff:duty-officer", False),
            ("escalate", "escalated", "staff:duty-officer", False),
            ("assigned", "assigned", "system:dispatch", True),
            ("start", "in_service", "volunteer:v1", True),
        ]
        assert request.priority == "urgent" and request.urgency == 3
        assert request.escalated_at is not None

    def test_a_volunteer_may_start_only_a_request_assigned_to_them(self, session):
        request = a_request(session)
        requests.record_assignment(
            session,
            request_id=request.id,
            assignment_id="a1",
            assignee=requests.Assignee("volunteer", "v1", "Lao Zhang"),
            at=T0,
        )
        with pytest.raises(NotFound, match=f"No request {request.id}"):
            requests.start_service(
                session, request_id=request.id, started_by=Principal("v2", "volunteer")
            )


class TestCancelRejectAndReopen:
    def test_cancelling_tells_dispatch_to_withdraw_the_assignment(self, session):
        request = a_request(session)
        requests.cancel_request(
            session,
            request_id=request.id,
            cancelled_by=resident_of(request),
            reason="My son came",
        )
        session.commit()
        assert request.status == "cancelled"
        assert request.due_at == requests.FAR_FUTURE
        [message] = staged_messages(runtime(), events.REQUEST_WITHDRAWN)
        assert message.queue_name == "dispatch"
        assert message.kwargs["status"] == "cancelled"
        assert message.kwargs["withdrawn_by"] == f"resident:{request.resident_id}"

    def test_a_reason_is_required(self, session):
        request = a_request(session)
        with pytest.raises(Invalid, match="Say why"):
            requests.reject_request(
                session, request_id=request.id, rejected_by=DUTY_OFFICER, reason=" "
            )

    def test_news_of_a_cancelled_request_is_kept_but_changes_nothing(self, session):
        request = a_request(session)
        requests.cancel_request(
            session, request_id=request.id, cancelled_by=DUTY_OFFICER, reason="Duplicate call"
        )
        walk_to_completed(session, request)
        assert request.status == "cancelled"
        assert request.hours is None
        assert request.timeline[-1].note.startswith("Ignored news")

    def test_a_finished_request_reopens_to_the_same_assignment_within_the_window(
        self, session, frozen
    ):
        request = a_request(session)
        walk_to_completed(session, request)
        requests.confirm_request(session, request_id=request.id, confirmed_by=resident_of(request))
        clock.advance(timedelta(days=3))
        requests.reopen_request(
            session, request_id=request.id, reopened_by=resident_of(request), reason="Blunt again"
        )
        session.commit()
        assert request.status == "reopened"
        assert (request.accepted_by, request.completed_by, request.confirmed_by) == (None,) * 3
        assert request.acknowledge_by == T0 + timedelta(days=3, hours=4)
        [message] = staged_messages(runtime(), events.REQUEST_REOPENED)
        assert message.kwargs["assignment_id"] == "a1"

    def test_reopening_after_the_window_is_refused(self, session, frozen):
        request = a_request(session)
        walk_to_completed(session, request)
        clock.advance(requests.REOPEN_WITHIN + timedelta(minutes=1))
        with pytest.raises(requests.IllegalTransition, match="submit a new request"):
            requests.reopen_request(
                session, request_id=request.id, reopened_by=DUTY_OFFICER, reason="Again"
            )

    def test_an_open_request_cannot_be_reopened(self, session):
        request = a_request(session)
        with pytest.raises(requests.IllegalTransition, match="is submitted"):
            requests.reopen_request(
                session, request_id=request.id, reopened_by=DUTY_OFFICER, reason="x"
            )


class TestConfirmingByProxyAndRating:
    def test_a_household_member_confirms_as_a_proxy_and_rates(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        home = directory.find_node(session, Place("changshan-garden", "3", "2", "501"))
        son = directory.register_resident(session, name="Son", household=home)
        requests.confirm_request(
            session,
            request_id=request.id,
            confirmed_by=Principal(son.id, "resident"),
            rating=requests.Rating(5, "Sharp as new"),
        )
        assert request.status == "confirmed"
        assert (request.confirmed_as, request.rating) == ("proxy: household member", 5)
        assert request.timeline[-1].note.startswith(f"Confirmed by {son.id} (household member)")

    def test_the_unit_leader_confirms_as_a_proxy(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        leader = a_resident(session, number="502", name="Zhao Ming")
        unit = directory.find_node(session, Place("changshan-garden", "3", "2"))
        directory.update_node(
            session, node_id=unit.id, responsible={"name": "Zhao Ming", "resident_id": leader.id}
        )
        requests.confirm_request(
            session, request_id=request.id, confirmed_by=Principal(leader.id, "resident")
        )
        assert request.confirmed_as == "proxy: unit leader"

    def test_a_neighbour_who_is_neither_is_told_the_request_does_not_exist(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        neighbour = a_resident(session, number="502")
        with pytest.raises(NotFound, match=f"No request {request.id}"):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=Principal(neighbour.id, "resident")
            )


class TestClosingWhatNoOneConfirmed:
    def test_the_timer_closes_a_completed_request_after_the_window_and_says_so(self, frozen):
        with runtime().db.transaction() as session:
            stale = a_request(session)
            walk_to_completed(session, stale)
        clock.advance(timedelta(days=3))
        with runtime().db.transaction() as session:
            fresh = a_request(session, resident=a_resident(session, number="502"))
            walk_to_completed(session, fresh)
        clock.advance(requests.CONFIRM_WITHIN - timedelta(days=3))
        scheduler = _scheduler()
        assert scheduler.run_jobs() == []  # the first run only counts from now
        clock.advance(timedelta(minutes=10))
        assert [run.job for run in scheduler.run_jobs()] == ["close-unconfirmed"]
        with runtime().db.read() as session:
            closed = requests.get_request(session, stale.id)
            assert closed.status == "closed"
            assert closed.timeline[-1].note.startswith("Closed: not confirmed within 7 days")
            assert requests.get_request(session, fresh.id).status == "completed"
        with runtime().db.transaction() as session, pytest.raises(requests.IllegalTransition):
            requests.confirm_request(session, request_id=stale.id, confirmed_by=resident_of(stale))


def _scheduler():
    import importlib

    from shared.scheduler import Scheduler
    from shared.timers import Timers

    importlib.import_module("services.intake.timers")
    timers = Timers.on(runtime().metadata)
    assert timers is not None
    return Scheduler(service="intake", db=runtime().db, timers=timers, interval_s=1, max_attempts=3)


class TestNotesAndAttachments:
    def test_internal_notes_are_hidden_from_the_resident(self, client, api_key, resident_id):
        created = post(client, api_key, request_body(resident_id)).json
        url = f"/v1/requests/{created['id']}"
        staff = bearer("duty-officer", "staff")
        client.post(f"{url}/notes", json={"text": "Call first", "public": True}, headers=staff)
        client.post(f"{url}/notes", json={"text": "Grumpy dog"}, headers=staff)
        mine = client.get(url, headers=bearer(resident_id, "resident")).json
        assert [e["note"] for e in mine["timeline"] if e["action"] == "note"] == ["Call first"]
        theirs = client.get(url, headers=staff).json
        assert [e["note"] for e in theirs["timeline"] if e["action"] == "note"] == [
            "Call first",
            "Grumpy dog",
        ]

    def test_a_resident_adds_public_notes_only(self, session):
        request = a_request(session)
        with pytest.raises(Invalid, match="public"):
            requests.add_note(
                session,
                request_id=request.id,
                text="x",
                written_by=resident_of(request),
                is_public=False,
            )

    def test_attachments_are_kept_by_url(self, client, api_key, resident_id):
        created = post(
            client,
            api_key,
            request_body(
                resident_id, attachments=[{"url": "https://img.example/a.jpg", "description": "a"}]
            ),
        ).json
        added = client.post(
            f"/v1/requests/{created['id']}/attachments",
            json={"url": "https://img.example/b.jpg"},
            headers={"X-API-Key": api_key},
        )
        assert [a["url"] for a in added.json["attachments"]] == [
            "https://img.example/a.jpg",
            "https://img.example/b.jpg",
        ]
        refused = client.post(
            f"/v1/requests/{created['id']}/attachments",
            json={"url": "javascript:alert(1)"},
            headers={"X-API-Key": api_key},
        )
        assert refused.status_code == 422


class TestDuplicates:
    def test_a_second_request_of_the_household_and_category_within_a_week_is_suggested(
        self, session, frozen
    ):
        resident = a_resident(session)
        first = a_request(session, resident=resident)
        clock.advance(timedelta(days=6))
        second = a_request(session, resident=resident)
        assert second.possible_duplicate_of == first.id
        assert "may repeat request" in second.timeline[0].note
        clock.advance(timedelta(days=2))
        third = a_request(session, resident=resident)
        assert third.possible_duplicate_of == second.id
        other = a_request(session, resident=resident, category="haircut")
        assert other.possible_duplicate_of is None

    def test_only_merged_requests_are_in_the_index_that_finds_a_requests_merged_ones(self, session):
        """Every submission looks for the household's latest request not merged: an index of
        every request's ``duplicate_of`` offered PostgreSQL, before it had statistics of the
        table, a way to that which read every request. It holds the merged ones only."""
        dialect = session.get_bind().dialect.name
        found = {
            index["name"]: index for index in inspect(session.connection()).get_indexes("requests")
        }
        where = found["ix_requests_duplicate_of"]["dialect_options"][f"{dialect}_where"]
        assert " ".join(str(where).strip("()").split()).lower() == "duplicate_of is not null"
        if dialect == "sqlite":
            plan = session.connection().exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM requests WHERE duplicate_of IN ('a', 'b')"
            )
            assert any("USING INDEX ix_requests_duplicate_of" in row[3] for row in plan)

    def test_staff_merge_a_duplicate_and_each_names_the_other(self, session):
        resident = a_resident(session)
        first = a_request(session, resident=resident)
        second = a_request(session, resident=resident)
        requests.merge_request(session, request_id=second.id, into=first.id, merged_by=DUTY_OFFICER)
        session.commit()
        assert (second.status, second.duplicate_of) == ("closed", first.id)
        with runtime().db.read() as reading:
            original = requests.get_request(reading, first.id)
            assert [d.id for d in original.duplicates] == [second.id]
            assert original.timeline[-1].note == f"Request {second.id} merged into this one"
        assert staged_messages(runtime(), events.REQUEST_WITHDRAWN)[0].kwargs["status"] == "closed"

    def test_a_request_cannot_be_merged_into_a_cancelled_one(self, session):
        resident = a_resident(session)
        first = a_request(session, resident=resident)
        second = a_request(session, resident=resident)
        requests.cancel_request(
            session, request_id=first.id, cancelled_by=DUTY_OFFICER, reason="Wrong"
        )
        with pytest.raises(requests.IllegalTransition, match="is cancelled"):
            requests.merge_request(
                session, request_id=second.id, into=first.id, merged_by=DUTY_OFFICER
            )


class TestReportersWithoutARecord:
    def test_a_typed_address_is_matched_and_the_request_waits_for_staff(self, session):
        a_category(session)
        directory.add_household(
            session, community="changshan-garden", building="3", unit="2", number="501"
        )
        request = requests.submit_request(
            session,
            submitted_by=HOTLINE,
            category="knife_sharpening",
            summary="Knives",
            address="3栋2单元501",
            reporter=requests.Reporter("A caller", "139"),
            channel="hotline",
        )
        assert (request.building, request.unit, request.household) == ("3", "2", "501")
        assert request.resident_id is None and request.reporter_name == "A caller"
        session.commit()
        # Dispatch needs a resident to tell: it hears of the request once staff name one.
        assert staged_messages(runtime(), events.REQUEST_SUBMITTED) == []

    def test_an_unmatched_address_is_kept_as_typed_for_staff_to_place(self, session):
        a_category(session)
        resident = a_resident(session)
        request = requests.submit_request(
            session,
            submitted_by=HOTLINE,
            category="knife_sharpening",
            summary="Knives",
            address="the house by the square",
        )
        assert request.household is None and request.address_text == "the house by the square"
        assert "kept as typed" in request.timeline[0].note
        requests.triage_request(
            session, request_id=request.id, triaged_by=DUTY_OFFICER, resident_id=resident.id
        )
        session.commit()
        assert request.household == "501"
        [message] = staged_messages(runtime(), events.REQUEST_SUBMITTED)
        assert message.kwargs["request_id"] == request.id

    def test_staff_filing_for_a_resident_is_recorded_as_such(self, session):
        request = a_request(session, submitted_by=DUTY_OFFICER, channel="walk_in")
        assert request.is_on_behalf
        assert request.timeline[0].note == (
            "Submitted through walk_in, filed by staff:duty-officer on the resident's behalf"
        )
        own = a_request(
            session,
            resident=a_resident(session, number="502"),
            submitted_by=Principal("x", "resident"),
        )
        assert not own.is_on_behalf

    def test_neither_a_resident_nor_an_address_is_refused(self, session):
        a_category(session)
        with pytest.raises(Invalid, match="resident_id"):
            requests.submit_request(
                session, submitted_by=HOTLINE, category="knife_sharpening", summary="x"
            )
