"""Submitting, following and confirming requests (the domain, on a real database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.intake import listing, requests
from services.intake.config import runtime
from services.intake.directory import Place
from services.intake.policy import POLICY, no_resident
from services.intake.tests.builders import (
    DUTY_OFFICER,
    HOTLINE,
    NOW,
    a_category,
    a_request,
    a_resident,
    resident_of,
    walk_to_completed,
)
from shared import events
from shared.auth import Principal
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from tests.support import staged_messages


class TestSubmitting:
    def test_a_request_takes_its_location_from_the_residents_household(self, session):
        request = a_request(
            session, resident=a_resident(session, building="3", unit="2", number="501")
        )
        assert (request.building, request.unit, request.household) == ("3", "2", "501")
        assert request.status == "submitted"
        assert request.priority == "normal"

    def test_submitting_stages_request_submitted_for_dispatch(self, session):
        request = a_request(session)
        session.flush()
        session.commit()
        [message] = staged_messages(runtime(), events.REQUEST_SUBMITTED)
        assert message.queue_name == "dispatch"
        assert message.kwargs["request_id"] == request.id
        assert message.kwargs["location"]["household"] == "501"

    def test_an_unknown_category_is_refused(self, session):
        resident = a_resident(session)
        with pytest.raises(NotFound, match="category"):
            requests.submit_request(
                session,
                submitted_by=HOTLINE,
                category="teleportation",
                summary="x",
                resident_id=resident.id,
            )

    def test_an_unknown_resident_is_refused(self, session):
        a_category(session)
        with pytest.raises(NotFound, match="resident"):
            requests.submit_request(
                session,
                submitted_by=HOTLINE,
                category="knife_sharpening",
                summary="x",
                resident_id="nobody",
            )

    def test_a_location_that_is_not_the_residents_home_is_refused(self, session):
        resident = a_resident(session)
        a_category(session)
        elsewhere = requests.Location("changshan-garden", "9", "9", "909")
        with pytest.raises(Invalid, match="lives at"):
            requests.submit_request(
                session,
                submitted_by=HOTLINE,
                category="knife_sharpening",
                summary="x",
                resident_id=resident.id,
                location=elsewhere,
            )

    def test_a_resident_cannot_submit_for_someone_else(self, session):
        resident = a_resident(session)
        someone_else = Principal("someone-else", "resident")
        # intake's policy decides it, before any domain function runs; as for every resource
        # of another person, the answer is the one an unknown resident gets.
        with pytest.raises(NotFound, match=f"No resident {resident.id}"):
            POLICY.check_owner(
                "requests.Requests.post",
                someone_else,
                {"resident_id": resident.id},
                hidden_as=no_resident(resident.id),
            )
        POLICY.check_owner(
            "requests.Requests.post",
            Principal(resident.id, "resident"),
            {"resident_id": resident.id},
            hidden_as=no_resident(resident.id),
        )


class TestFollowingDispatch:
    def test_the_request_moves_through_assigned_accepted_and_completed(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        assert request.status == "completed"
        assert request.assignee_name == "Lao Zhang"
        assert request.hours == Decimal("1.5")
        assert [entry.status for entry in request.timeline] == [
            "submitted",
            "assigned",
            "accepted",
            "completed",
        ]

    def test_events_arriving_out_of_order_never_move_the_status_back(self, session):
        request = a_request(session)
        base = {"request_id": request.id, "assignment_id": "a1"}
        requests.record_acceptance(
            session, **base, volunteer_id="v1", accepted_by="volunteer:v1", at=NOW
        )
        requests.record_assignment(
            session,
            **base,
            assignee=requests.Assignee(type="volunteer", id="v1", name="Lao Zhang"),
            at=NOW,
        )
        assert request.status == "accepted"
        assert request.assignee_name == "Lao Zhang"

    def test_a_different_assignment_is_noted_in_the_timeline_but_changes_nothing(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        requests.record_assignment(
            session,
            request_id=request.id,
            assignment_id="a2",
            assignee=requests.Assignee(type="volunteer", id="v2", name="Wang Wei"),
            at=NOW,
        )
        assert (request.status, request.assignment_id) == ("completed", "a1")
        assert (request.assignee_id, request.assignee_name) == ("v1", "Lao Zhang")
        assert request.timeline[-1].note == (
            "Ignored assignment a2 to Wang Wei: the request stays with assignment a1 (Lao Zhang)"
        )

    def test_the_same_assignment_heard_again_reads_as_an_assignment(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        requests.record_assignment(
            session,
            request_id=request.id,
            assignment_id="a1",
            assignee=requests.Assignee(type="volunteer", id="v1", name="Lao Zhang"),
            at=NOW,
        )
        assert request.timeline[-1].note == "Assigned to Lao Zhang"

    def test_completion_of_a_different_assignment_is_noted_but_changes_nothing(self, session):
        request = a_request(session)
        base = {"request_id": request.id, "assignment_id": "a1"}
        requests.record_assignment(
            session,
            **base,
            assignee=requests.Assignee(type="volunteer", id="v1", name="Lao Zhang"),
            at=NOW,
        )
        requests.record_acceptance(
            session, **base, volunteer_id="v1", accepted_by="volunteer:v1", at=NOW
        )

        requests.record_completion(
            session,
            request_id=request.id,
            assignment_id="a2",
            volunteer_id="v2",
            hours=Decimal("3"),
            completed_by="volunteer:v2",
            at=NOW,
        )

        assert (request.status, request.assignment_id) == ("accepted", "a1")
        assert (request.assignee_id, request.assignee_name, request.hours) == (
            "v1",
            "Lao Zhang",
            None,
        )
        assert request.timeline[-1].status == "completed"
        assert request.timeline[-1].note == (
            "Ignored completion of assignment a2 in 3 hour(s): "
            "the request stays with assignment a1 (Lao Zhang)"
        )

    def test_completion_heard_after_confirmation_is_noted_but_changes_nothing(self, session):
        request = a_request(session)
        walk_to_completed(session, request, hours="1.5")
        requests.confirm_request(session, request_id=request.id, confirmed_by=resident_of(request))

        requests.record_completion(
            session,
            request_id=request.id,
            assignment_id="a1",
            volunteer_id="v2",
            hours=Decimal("4"),
            completed_by="volunteer:v2",
            at=NOW,
        )

        assert (request.status, request.assignment_id) == ("confirmed", "a1")
        assert (request.assignee_id, request.hours) == ("v1", Decimal("1.5"))
        assert request.timeline[-1].note == (
            "Ignored completion of assignment a1 in 4 hour(s): the request is already confirmed"
        )
        assert [entry.status for entry in request.timeline][-2:] == ["confirmed", "completed"]

    def test_an_unrouted_request_waits_for_triage(self, session):
        request = a_request(session)
        requests.record_unrouted(session, request_id=request.id, reason="no rule", at=NOW)
        assert request.status == "needs_triage"

    def test_news_about_an_unknown_request_is_refused(self, session):
        with pytest.raises(NotFound):
            requests.record_unrouted(session, request_id="nope", reason="x", at=NOW)


class TestConfirming:
    def test_confirming_a_completed_request_stages_request_confirmed_for_points(self, session):
        request = a_request(session)
        walk_to_completed(session, request, hours="2")
        requests.confirm_request(session, request_id=request.id, confirmed_by=resident_of(request))
        session.commit()
        [message] = staged_messages(runtime(), events.REQUEST_CONFIRMED, to="points")
        assert message.queue_name == "points"
        assert message.kwargs["volunteer_id"] == "v1"
        assert message.kwargs["hours"] == "2.00"
        assert message.kwargs["category"] == "knife_sharpening"
        assert request.timeline[-1].note == "Confirmed by the resident"

    def test_a_request_that_is_not_completed_cannot_be_confirmed(self, session):
        request = a_request(session)
        with pytest.raises(Conflict, match="is submitted: it cannot confirm"):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=resident_of(request)
            )

    def test_confirming_twice_is_a_conflict(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        requests.confirm_request(session, request_id=request.id, confirmed_by=resident_of(request))
        with pytest.raises(Conflict, match="already confirmed"):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=resident_of(request)
            )

    def test_another_resident_cannot_see_or_confirm_the_request(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        with pytest.raises(NotFound):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=Principal("stranger", "resident")
            )

    @pytest.mark.parametrize("caller", [HOTLINE, Principal("v1", "volunteer")])
    def test_api_clients_and_volunteers_may_not_confirm(self, session, caller):
        request = a_request(session)
        walk_to_completed(session, request)
        with pytest.raises(Forbidden, match="Only the resident"):
            requests.confirm_request(session, request_id=request.id, confirmed_by=caller)
        assert request.status == "completed"

    @pytest.mark.parametrize("note", [None, "", "   "])
    def test_staff_may_not_confirm_without_saying_why(self, session, note):
        request = a_request(session)
        walk_to_completed(session, request)
        with pytest.raises(Invalid, match="reason"):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=DUTY_OFFICER, note=note
            )
        assert request.status == "completed"

    def test_staff_confirm_on_the_residents_behalf_and_the_timeline_says_who_and_why(self, session):
        request = a_request(session)
        walk_to_completed(session, request)
        requests.confirm_request(
            session,
            request_id=request.id,
            confirmed_by=DUTY_OFFICER,
            note="resident called the office",
        )
        assert request.status == "confirmed"
        assert request.timeline[-1].note == (
            "Confirmed by staff duty-officer on the resident's behalf: resident called the office"
        )


class TestListing:
    def test_requests_are_filtered_by_status_and_building_and_paged(self, session):
        in_three = a_resident(session, building="3", number="501")
        in_five = a_resident(session, building="5", number="101")
        for _ in range(3):
            a_request(session, resident=in_three)
        a_request(session, resident=in_five)
        where = listing.RequestFilter(status=("submitted",), place=Place("changshan-garden", "3"))
        page = listing.list_requests(session, where=where, page_size=2)
        assert page.total == 3
        assert len(page.items) == 2
        assert all(r.building == "3" for r in page.items)
