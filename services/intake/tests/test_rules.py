"""Rules of a request's life a probe found open: a merged request reopened, a resident placed
at another household by triage, a comment without stars dropped, attachments past the cap or
on an ended request, attachment URLs without a host or with credentials."""

from __future__ import annotations

import pytest

from services.intake import directory, requests
from services.intake.config import runtime
from services.intake.tests.builders import (
    DUTY_OFFICER,
    HOTLINE,
    a_request,
    a_resident,
    post,
    request_body,
    resident_of,
    walk_to_completed,
)
from services.intake.tests.test_api import bearer
from shared.errors import Conflict, Invalid


class TestAMergedRequest:
    def test_is_not_reopened_by_its_resident(self, session):
        resident = a_resident(session)
        first = a_request(session, resident=resident)
        second = a_request(session, resident=resident)
        requests.merge_request(session, request_id=second.id, into=first.id, merged_by=DUTY_OFFICER)
        with pytest.raises(requests.IllegalTransition, match=f"merged into {first.id}") as refused:
            requests.reopen_request(
                session, request_id=second.id, reopened_by=resident_of(second), reason="Again"
            )
        assert refused.value.status == 409

    def test_is_refused_over_http_with_a_409(self, client):
        with runtime().db.transaction() as session:
            resident = a_resident(session)
            first = a_request(session, resident=resident)
            second = a_request(session, resident=resident)
            requests.merge_request(
                session, request_id=second.id, into=first.id, merged_by=DUTY_OFFICER
            )
            second_id, first_id, resident_id = second.id, first.id, resident.id
        response = client.post(
            f"/v1/requests/{second_id}/reopening",
            json={"reason": "It came back"},
            headers=bearer(resident_id, "resident"),
        )
        assert response.status_code == 409
        assert f"merged into {first_id}" in response.json["detail"]


class TestTriagePlacesAResidentAtTheirHome:
    def test_a_resident_and_another_household_are_refused_as_at_submission(self, session):
        request = a_request(session, resident=a_resident(session, number="501"))
        neighbour = a_resident(session, number="502")
        with pytest.raises(Invalid, match="not at the location given") as refused:
            requests.triage_request(
                session,
                request_id=request.id,
                triaged_by=DUTY_OFFICER,
                resident_id=neighbour.id,
                location=requests.Location("changshan-garden", "3", "2", "501"),
            )
        assert refused.value.extra["field"] == "location"

    def test_a_request_of_a_resident_is_not_moved_to_another_household(self, session):
        request = a_request(session, resident=a_resident(session, number="501"))
        directory.add_household(
            session, community="changshan-garden", building="3", unit="2", number="502"
        )
        with pytest.raises(Invalid, match="not at the location given"):
            requests.triage_request(
                session,
                request_id=request.id,
                triaged_by=DUTY_OFFICER,
                location=requests.Location("changshan-garden", "3", "2", "502"),
            )

    def test_a_resident_with_their_own_home_is_placed_there(self, session):
        request = a_request(session, resident=a_resident(session, number="501"))
        neighbour = a_resident(session, number="502")
        requests.triage_request(
            session,
            request_id=request.id,
            triaged_by=DUTY_OFFICER,
            resident_id=neighbour.id,
            location=requests.Location("changshan-garden", "3", "2", "502"),
        )
        assert (request.resident_id, request.household) == (neighbour.id, "502")


class TestAConfirmationsComment:
    def test_a_comment_without_stars_is_kept(self, client):
        with runtime().db.transaction() as session:
            request = a_request(session)
            walk_to_completed(session, request)
            request_id, resident_id = request.id, request.resident_id
        response = client.post(
            f"/v1/requests/{request_id}/confirmation",
            json={"comment": "Sharp as new"},
            headers=bearer(resident_id, "resident"),
        )
        assert response.status_code == 200
        assert (response.json["rating"], response.json["rating_comment"]) == (None, "Sharp as new")


class TestAttachments:
    def attach(self, session, request, url="https://photos.example/1.jpg"):
        return requests.add_attachment(session, request_id=request.id, url=url, added_by=HOTLINE)

    def test_no_more_are_added_than_a_request_is_submitted_with(self, session):
        many = [{"url": f"https://photos.example/{n}.jpg"} for n in range(10)]
        request = a_request(session, attachments=many)
        with pytest.raises(Conflict, match="10 attachments"):
            self.attach(session, request)
        assert len(request.attachments) == requests.MAX_ATTACHMENTS

    @pytest.mark.parametrize("ending", ["cancel", "merge"])
    def test_none_is_added_to_a_request_that_ended(self, session, ending):
        request = a_request(session)
        if ending == "cancel":
            requests.cancel_request(
                session, request_id=request.id, cancelled_by=DUTY_OFFICER, reason="Not needed"
            )
        else:
            other = a_request(session, resident=a_resident(session, number="502"))
            requests.merge_request(
                session, request_id=request.id, into=other.id, merged_by=DUTY_OFFICER
            )
        with pytest.raises(requests.IllegalTransition, match="nothing more is attached"):
            self.attach(session, request)

    @pytest.mark.parametrize(
        "url",
        [
            "https://user:pw@photos.example/x.jpg",
            "https://@photos.example/x.jpg",
            "https:///x.jpg",
            "http:x.jpg",
            "https://photos.example:0/x.jpg",
            "https://photos.example:99999/x.jpg",
            "ftp://photos.example/x.jpg",
        ],
    )
    def test_a_url_without_a_host_or_with_credentials_is_refused(
        self, client, api_key, resident_id, url
    ):
        response = post(client, api_key, request_body(resident_id, attachments=[{"url": url}]))
        assert (response.status_code, response.json["field"]) == (422, "attachments")
        with runtime().db.transaction() as session:
            request = a_request(session)
        added = client.post(
            f"/v1/requests/{request.id}/attachments",
            json={"url": url},
            headers={"X-API-Key": api_key},
        )
        assert (added.status_code, added.json["field"]) == (422, "url")

    @pytest.mark.parametrize("url", ["HTTP://photos.example/x.jpg", "Https://photos.example/x"])
    def test_a_scheme_is_read_in_any_case(self, client, api_key, resident_id, url):
        response = post(client, api_key, request_body(resident_id, attachments=[{"url": url}]))
        assert response.status_code == 201
        assert response.json["attachments"][0]["url"] == url
