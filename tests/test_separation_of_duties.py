"""No single credential both does a service and mints its points.

Every path to a confirmation is walked: the resident, staff on the resident's behalf, staff who
accepted or completed the work themselves, volunteers and other systems; and behind intake's
door, the moral bank refuses on its own to mint points where one person stands on both sides,
and says why on the request's timeline.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from services.dispatch.app import create_app as create_dispatch
from services.dispatch.config import runtime as dispatch_runtime
from services.dispatch.tests.builders import assigned, volunteer
from services.intake import actors as intake_actors
from services.intake import directory, requests
from services.intake.app import create_app as create_intake
from services.intake.config import runtime as intake_runtime
from services.intake.models import ServiceRequest
from services.intake.tests.builders import a_request, resident_of, walk_to_completed
from services.points import actors as points_actors
from services.points.config import runtime as points_runtime
from services.points.tests.builders import confirmed, rates, transfers
from shared import events
from shared.auth import Principal, issue_token
from shared.errors import Forbidden, Invalid
from tests.support import deliver_to, message_for, staged_messages

OFFICER = Principal(subject="duty-officer", role="staff")
OTHER_OFFICER = Principal(subject="night-officer", role="staff")


def bearer(principal: Principal) -> dict[str, str]:
    secret = intake_runtime().settings.auth_secret
    token = issue_token(secret, subject=principal.subject, role=principal.role)
    return {"Authorization": f"Bearer {token}"}


def completed_request(**steps: str) -> ServiceRequest:
    with intake_runtime().db.transaction() as session:
        request = a_request(session)
        walk_to_completed(session, request, **steps)
    return request


def status_of(request_id: str) -> tuple[str, str | None]:
    with intake_runtime().db.read() as session:
        request = session.get(ServiceRequest, request_id)
        assert request is not None
        return request.status, request.confirmed_by


class TestAtIntakesDoor:
    @pytest.mark.parametrize("step", ["accepted_by", "completed_by"])
    def test_staff_who_did_a_step_for_the_volunteer_may_not_confirm_it(self, step):
        request = completed_request(**{step: OFFICER.address})
        with (
            intake_runtime().db.transaction() as session,
            pytest.raises(requests.PartyToTheService, match=step.removesuffix("_by")),
        ):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=OFFICER, note="She cannot walk"
            )
        assert status_of(request.id) == ("completed", None)

    def test_staff_who_took_no_part_confirm_with_a_reason_recorded_on_the_timeline(self):
        request = completed_request(accepted_by=OFFICER.address, completed_by=OFFICER.address)
        with intake_runtime().db.transaction() as session:
            confirmed_request = requests.confirm_request(
                session, request_id=request.id, confirmed_by=OTHER_OFFICER, note="Phoned her"
            )
            note = confirmed_request.timeline[-1].note
        assert status_of(request.id) == ("confirmed", "staff:night-officer")
        assert note == "Confirmed by staff night-officer on the resident's behalf: Phoned her"
        (message,) = staged_messages(intake_runtime(), events.REQUEST_CONFIRMED, to="points")
        assert message.kwargs["confirmed_by"] == "staff:night-officer"
        assert (
            message.kwargs["accepted_by"] == message.kwargs["completed_by"] == "staff:duty-officer"
        )

    @pytest.mark.parametrize("note", [None, "", "   "])
    def test_staff_confirming_for_the_resident_must_say_why(self, note):
        request = completed_request()
        with (
            intake_runtime().db.transaction() as session,
            pytest.raises(Invalid, match="reason"),
        ):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=OTHER_OFFICER, note=note
            )
        assert status_of(request.id) == ("completed", None)

    @pytest.mark.parametrize(
        "caller",
        [Principal("v1", "volunteer"), Principal("client:city-hotline", "system")],
        ids=["the volunteer", "another system"],
    )
    def test_volunteers_and_systems_never_confirm(self, caller):
        request = completed_request()
        with intake_runtime().db.transaction() as session, pytest.raises(Forbidden):
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=caller, note="done, trust me"
            )
        assert status_of(request.id) == ("completed", None)

    def test_the_resident_confirms_their_own_request(self):
        request = completed_request()
        with intake_runtime().db.transaction() as session:
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=resident_of(request)
            )
        assert status_of(request.id) == ("confirmed", f"resident:{request.resident_id}")

    def test_over_http_one_staff_token_cannot_accept_complete_and_confirm(self):
        """The attack: one staff token accepts, completes with 24 hours and confirms."""
        sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
        with intake_runtime().db.transaction() as session:
            request = a_request(session)
        assignment = assigned(request_id=request.id, resident_id=request.resident_id)
        dispatch = create_dispatch().test_client()
        officer = bearer(OFFICER)
        assert (
            dispatch.post(
                f"/v1/assignments/{assignment.id}/acceptance", headers=officer
            ).status_code
            == 200
        )
        assert (
            dispatch.post(
                f"/v1/assignments/{assignment.id}/completion", json={"hours": "24"}, headers=officer
            ).status_code
            == 200
        )
        for event in (events.REQUEST_ASSIGNED, events.REQUEST_ACCEPTED, events.REQUEST_COMPLETED):
            for message in staged_messages(dispatch_runtime(), event):
                deliver_to(intake_actors.CONSUMERS, message)

        response = (
            create_intake()
            .test_client()
            .post(
                f"/v1/requests/{request.id}/confirmation",
                json={"note": "The resident is away"},
                headers=officer,
            )
        )

        assert response.status_code == 403
        assert response.json["type"].endswith("/party-to-the-service")
        assert "accepted and completed" in response.json["detail"]
        assert status_of(request.id) == ("completed", None)
        timeline = [entry.note for entry in requests_timeline(request.id)]
        assert (
            f"Accepted by the volunteer (staff:duty-officer on behalf of volunteer {sharpener.id})"
            in timeline
        )


def requests_timeline(request_id: str) -> list:
    with intake_runtime().db.read() as session:
        request = session.get(ServiceRequest, request_id)
        assert request is not None
        return list(request.timeline)


class TestAtTheMoralBank:
    @pytest.mark.parametrize(
        ("parties", "why"),
        [
            (
                {
                    "confirmed_by": "staff:x",
                    "accepted_by": "staff:x",
                    "completed_by": "volunteer:v-7",
                },
                "the one who accepted it",
            ),
            (
                {
                    "confirmed_by": "staff:x",
                    "accepted_by": "volunteer:v-7",
                    "completed_by": "staff:x",
                },
                "the one who completed it",
            ),
            ({"confirmed_by": "volunteer:v-7"}, "neither the resident nor staff"),
            ({"confirmed_by": "system:client:hotline"}, "neither the resident nor staff"),
        ],
        ids=["accepted", "completed", "the volunteer", "a system"],
    )
    def test_points_are_not_minted_where_one_person_stands_on_both_sides(self, parties, why):
        rates(knife_sharpening=10)
        message = message_for(events.REQUEST_CONFIRMED, confirmed(**parties), to="points")

        assert deliver_to(points_actors.CONSUMERS, message) is True

        assert transfers() == []
        (refusal,) = staged_messages(points_runtime(), events.EARNING_REFUSED)
        assert refusal.kwargs["request_id"] == message.kwargs["request_id"]
        assert why in refusal.kwargs["reason"]

    def test_the_refusal_is_explained_on_the_requests_timeline(self):
        request = completed_request()
        with intake_runtime().db.transaction() as session:
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=resident_of(request)
            )
        rates(knife_sharpening=10)
        (confirmation,) = staged_messages(intake_runtime(), events.REQUEST_CONFIRMED, to="points")
        forged = {**confirmation.kwargs, "confirmed_by": "volunteer:v1"}
        deliver_to(
            points_actors.CONSUMERS, message_for(events.REQUEST_CONFIRMED, forged, to="points")
        )
        (refusal,) = staged_messages(points_runtime(), events.EARNING_REFUSED)

        assert deliver_to(intake_actors.CONSUMERS, refusal) is True

        last = requests_timeline(request.id)[-1]
        assert last.note.startswith("No points credited: it was confirmed by volunteer:v1")
        assert transfers() == []

    def test_a_confirmation_by_someone_who_took_no_part_is_minted(self):
        rates(knife_sharpening=10)
        parties = {"confirmed_by": "staff:y", "accepted_by": "staff:x", "completed_by": "staff:x"}
        message = message_for(
            events.REQUEST_CONFIRMED, confirmed(hours="2.00", **parties), to="points"
        )

        assert deliver_to(points_actors.CONSUMERS, message) is True

        assert [transfer.amount for transfer in transfers()] == [Decimal("20.00")]
        assert staged_messages(points_runtime(), events.EARNING_REFUSED) == []


def test_an_api_client_is_never_a_confirmer_even_as_staff():
    request = completed_request()
    with intake_runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="console", role="staff")
    response = (
        create_intake()
        .test_client()
        .post(
            f"/v1/requests/{request.id}/confirmation",
            json={"note": "Called her"},
            headers={"X-API-Key": key},
        )
    )
    assert response.status_code == 403
    assert status_of(request.id) == ("completed", None)
    with intake_runtime().db.read() as session:
        assert session.scalars(select(ServiceRequest.confirmed_by)).all() == [None]
