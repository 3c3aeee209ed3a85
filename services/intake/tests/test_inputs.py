"""What intake refuses at its door, with a 422 naming the field rather than a 500 or a silent
change: moments past the ends of UTC, unreadable or blank text, numbers out of all reason,
grid names that would make another place's path."""

from __future__ import annotations

import pytest

from services.intake import directory
from services.intake.config import runtime
from services.intake.directory import Place
from services.intake.tests.builders import a_category, a_resident, post, request_body
from services.intake.tests.test_api import bearer
from shared.errors import Invalid

STAFF = bearer("duty-officer", "staff")
SUBSCRIPTION = "0" * 32
PAST_THE_END = "9999-12-31T23:59:59-14:00"
BEFORE_THE_START = "0001-01-01T00:00:00+01:00"


class TestMomentsOutsideUtc:
    @pytest.mark.parametrize("moment", [PAST_THE_END, BEFORE_THE_START])
    @pytest.mark.parametrize(
        "name", ["created_after", "created_before", "updated_after", "updated_before"]
    )
    @pytest.mark.parametrize(
        ("path", "more"), [("/v1/requests", {}), ("/v1/requests/counts", {"by": "status"})]
    )
    def test_a_filter_past_the_ends_of_utc_is_a_422(self, client, path, more, name, moment):
        response = client.get(path, query_string={name: moment, **more}, headers=STAFF)
        assert response.status_code == 422
        assert name in response.json["errors"]

    @pytest.mark.parametrize(
        "body",
        [
            {"since": PAST_THE_END},
            {"since": BEFORE_THE_START},
            {"since": "2026-01-01T00:00:00Z", "until": PAST_THE_END},
        ],
    )
    def test_a_replay_past_the_ends_of_utc_is_a_422(self, client, body):
        response = client.post(f"/v1/webhooks/{SUBSCRIPTION}/replays", json=body, headers=STAFF)
        assert response.status_code == 422
        assert set(response.json["errors"]) <= {"since", "until"}

    @pytest.mark.parametrize("name", ["start_date", "end_date"])
    def test_an_open311_date_past_the_ends_of_utc_is_a_400(self, client, name):
        response = client.get("/open311/v2/requests.json", query_string={name: PAST_THE_END})
        assert response.status_code == 400
        assert name in response.json[0]["description"]


BLANK_OR_UNREADABLE = [" ", "\t", "a\u202eb", "a\x00b", "a\x07b"]


class TestTextPeopleRead:
    @pytest.mark.parametrize("text", BLANK_OR_UNREADABLE)
    @pytest.mark.parametrize(
        "change",
        [
            lambda text: {"summary": text},
            lambda text: {"external_ref": text},
            lambda text: {"reporter": {"name": text}},
            lambda text: {"reporter": {"name": "A caller", "phone": text}},
            lambda text: {"details": "Fine\n" + text.strip() + "\u202e"},
        ],
    )
    def test_a_request_with_blank_or_unreadable_text_is_a_422(
        self, client, api_key, resident_id, change, text
    ):
        body = request_body(resident_id, **change(text))
        if "reporter" in body:
            body.pop("resident_id")
            body.pop("location")
            body["address"] = "3-2-501"
        response = post(client, api_key, body)
        assert response.status_code == 422, response.json

    @pytest.mark.parametrize("text", ["", *BLANK_OR_UNREADABLE])
    def test_an_address_and_an_external_ref_are_not_blank(self, client, api_key, resident_id, text):
        for change in ({"address": text}, {"external_ref": text}):
            response = post(client, api_key, request_body(resident_id, **change))
            assert response.status_code == 422
            assert set(change) <= set(response.json["errors"])

    def test_details_keep_their_lines(self, client, api_key, resident_id):
        details = "Two knives\n\tand a pair of scissors"
        response = post(client, api_key, request_body(resident_id, details=details))
        assert (response.status_code, response.json["details"]) == (201, details)

    @pytest.mark.parametrize("text", BLANK_OR_UNREADABLE)
    def test_a_resident_and_a_health_note_are_read_by_people(self, client, resident_id, text):
        headers = STAFF
        place = {"community": "changshan-garden", "building": "3", "unit": "2", "household": "501"}
        registered = client.post(
            "/v1/residents", json={"name": text, "location": place}, headers=headers
        )
        phoned = client.patch(f"/v1/residents/{resident_id}", json={"phone": text}, headers=headers)
        noted = client.post(
            f"/v1/residents/{resident_id}/health-notes",
            json={"note": text if text.strip() else text + "\n"},
            headers=headers,
        )
        assert [registered.status_code, phoned.status_code, noted.status_code] == [422] * 3

    def test_a_residents_phone_is_taken_off_with_null(self, client, resident_id):
        response = client.patch(f"/v1/residents/{resident_id}", json={"phone": None}, headers=STAFF)
        assert (response.status_code, response.json["phone"]) == (200, None)

    @pytest.mark.parametrize("flag", ["yes", 1, "on"])
    def test_a_flag_is_true_or_false(self, client, resident_id, flag):
        response = client.patch(
            f"/v1/residents/{resident_id}", json={"is_elderly": flag}, headers=STAFF
        )
        assert response.status_code == 422


class TestNumberAnswers:
    @pytest.fixture
    def asking(self, client):
        with runtime().db.transaction() as session:
            a_category(
                session,
                "counted",
                questions=[
                    {
                        "code": "items",
                        "labels": {"en": "How many", "zh-CN": "几个"},
                        "type": "number",
                    }
                ],
            )
            return a_resident(session).id

    @pytest.mark.parametrize("number", [-5, 1.5, 1e30, 10**7, True, "3"])
    def test_a_number_out_of_reason_is_a_422(self, client, api_key, asking, number):
        body = request_body(asking, category="counted", answers={"items": number})
        response = post(client, api_key, body)
        assert response.status_code == 422
        assert "answers.items" in response.json["field"]

    @pytest.mark.parametrize(("number", "kept"), [(0, 0), (3, 3), (2.0, 2), (10**6, 10**6)])
    def test_a_whole_number_is_kept(self, client, api_key, asking, number, kept):
        body = request_body(asking, category="counted", answers={"items": number})
        response = post(client, api_key, body)
        assert (response.status_code, response.json["answers"]) == (201, {"items": kept})


class TestGridNames:
    @pytest.mark.parametrize(
        "place",
        [
            {"community": "changshan-garden", "building": "3/4"},
            {"community": "a/b"},
            {"community": " "},
            {"community": "changshan-garden", "building": "\u202e3"},
        ],
    )
    def test_a_name_with_a_slash_or_blank_is_a_422(self, client, place):
        response = client.post("/v1/grid/nodes", json={"place": place}, headers=STAFF)
        assert response.status_code == 422
        assert "place" in response.json["errors"]

    @pytest.mark.parametrize(
        ("place", "field"),
        [
            (Place("changshan-garden", "3/4"), "building"),
            (Place(" "), "community"),
            (Place("changshan-garden", "3", "2", "50\n1"), "household"),
        ],
    )
    def test_the_grid_itself_refuses_them(self, place, field):
        with runtime().db.transaction() as session, pytest.raises(Invalid) as refused:
            directory.ensure_node(session, place)
        assert refused.value.extra["field"] == field
