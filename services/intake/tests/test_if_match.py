"""If-Match on the records that keep no version: a category, a grid node, a resident and a
webhook subscription are changed only from the copy their ETag names (412 naming the current
one otherwise); and tags are compared exactly, so "v05" is not v5."""

from __future__ import annotations

import pytest

from services.intake import directory
from services.intake.config import runtime
from services.intake.models import Resident
from services.intake.tests.builders import a_category, a_request, a_resident
from services.intake.tests.test_api import bearer

STAFF = bearer("duty-officer", "staff")


def a_category_path() -> tuple[str, dict]:
    with runtime().db.transaction() as session:
        a_category(session)
    return "/v1/categories/knife_sharpening", {"description": "Knives and scissors"}


def a_node_path() -> tuple[str, dict]:
    with runtime().db.transaction() as session:
        node = directory.add_household(
            session, community="changshan-garden", building="3", unit="2", number="501"
        )
        return f"/v1/grid/nodes/{node.id}", {"name": "Li's flat"}


def a_resident_path() -> tuple[str, dict]:
    with runtime().db.transaction() as session:
        return f"/v1/residents/{a_resident(session).id}", {"phone": "13900000000"}


def a_webhook_path(client) -> tuple[str, dict]:
    created = client.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example/in", "owner": "client:city-hotline"},
        headers=STAFF,
    )
    assert created.status_code == 201, created.json
    return f"/v1/webhooks/{created.json['id']}", {"description": "The hotline's receiver"}


@pytest.fixture(params=["category", "node", "resident", "webhook"])
def record(request, client, api_key):
    if request.param == "webhook":
        return a_webhook_path(client)
    return {"category": a_category_path, "node": a_node_path, "resident": a_resident_path}[
        request.param
    ]()


class TestIfMatchOnRecords:
    def test_a_change_from_a_stale_copy_is_a_412_naming_the_current_tag(self, client, record):
        path, change = record
        read = client.get(path, headers=STAFF)
        tag = read.headers["ETag"]
        refused = client.patch(path, json=change, headers={**STAFF, "If-Match": '"stale"'})
        assert refused.status_code == 412
        assert refused.json["current_etag"] == tag
        assert client.get(path, headers=STAFF).json == read.json

    def test_a_change_from_the_current_copy_is_made_once(self, client, record):
        path, change = record
        tag = client.get(path, headers=STAFF).headers["ETag"]
        made = client.patch(path, json=change, headers={**STAFF, "If-Match": tag})
        assert made.status_code == 200
        again = client.patch(path, json=change, headers={**STAFF, "If-Match": tag})
        assert again.status_code == 412
        assert again.json["current_etag"] == client.get(path, headers=STAFF).headers["ETag"]

    def test_a_weak_tag_never_matches_and_a_star_always_does(self, client, record):
        path, change = record
        tag = client.get(path, headers=STAFF).headers["ETag"]
        weak = client.patch(path, json=change, headers={**STAFF, "If-Match": f"W/{tag}"})
        star = client.patch(path, json=change, headers={**STAFF, "If-Match": "*"})
        assert (weak.status_code, star.status_code) == (412, 200)


class TestDocumented:
    @pytest.mark.parametrize(
        "route",
        [
            "/v1/categories/{code}",
            "/v1/grid/nodes/{node_id}",
            "/v1/residents/{resident_id}",
            "/v1/webhooks/{subscription_id}",
        ],
    )
    def test_the_operations_document_if_match_and_412(self, client, route):
        operation = client.get("/openapi.json").json["paths"][route]["patch"]
        assert "412" in operation["responses"]
        assert any(p["name"] == "If-Match" for p in operation["parameters"])


class TestVersionTagsAreExact:
    @pytest.mark.parametrize("tag", ['"v01"', '"v1 "', '"V1"', '"v+1"'])
    def test_a_tag_written_otherwise_than_the_version_is_not_it(self, client, tag):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id
        response = client.post(
            f"/v1/requests/{request_id}/notes",
            json={"text": "Called back"},
            headers={**STAFF, "If-Match": tag},
        )
        assert response.status_code == 412
        assert response.json["current_etag"] == '"v1"'


class TestWording:
    def test_a_resident_naming_no_resident_is_told_what_is_missing(self, client, resident_id):
        response = client.post(
            "/v1/requests",
            json={"category": "knife_sharpening", "summary": "Knives", "address": "3-2-501"},
            headers=bearer(resident_id, "resident"),
        )
        assert (response.status_code, response.json["field"]) == (422, "resident_id")
        assert "None" not in response.json["detail"]

    def test_a_residents_note_without_public_is_public(self, client, resident_id):
        with runtime().db.transaction() as session:
            request_id = a_request(session, resident=session.get(Resident, resident_id)).id
        own = client.post(
            f"/v1/requests/{request_id}/notes",
            json={"text": "The door code is 1234"},
            headers=bearer(resident_id, "resident"),
        )
        staffs = client.post(
            f"/v1/requests/{request_id}/notes", json={"text": "Called"}, headers=STAFF
        )
        hidden = client.post(
            f"/v1/requests/{request_id}/notes",
            json={"text": "Hidden?", "public": False},
            headers=bearer(resident_id, "resident"),
        )
        assert (own.status_code, own.json["public"]) == (201, True)
        assert (staffs.status_code, staffs.json["public"]) == (201, False)
        assert (hidden.status_code, hidden.json["field"]) == (422, "public")

    @pytest.mark.parametrize("wildcard", ["_", "%"])
    def test_search_text_is_matched_literally(self, client, wildcard):
        with runtime().db.transaction() as session:
            a_category(session, "haircut")
            a_resident(session, name="Li Shufen")
        categories = client.get("/v1/categories", query_string={"q": wildcard}, headers=STAFF)
        residents = client.get("/v1/residents", query_string={"name": wildcard}, headers=STAFF)
        assert (categories.status_code, categories.json) == (200, [])
        assert (residents.status_code, residents.json) == (200, [])
