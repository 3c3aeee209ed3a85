"""intake over HTTP: validation, idempotency, auth, problem+json, docs and probes."""

from __future__ import annotations

import pytest

from services.intake import directory
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.tests.builders import a_category, a_resident
from shared.auth import issue_token


@pytest.fixture
def client():
    return create_app().test_client()


@pytest.fixture
def api_key():
    with runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="city-hotline")
    return key


@pytest.fixture
def resident_id():
    with runtime().db.transaction() as session:
        a_category(session)
        return a_resident(session).id


def body(resident_id, **changes):
    return {
        "category": "knife_sharpening",
        "summary": "Two kitchen knives",
        "resident_id": resident_id,
        "location": {
            "community": "changshan-garden",
            "building": "3",
            "unit": "2",
            "household": "501",
        },
        **changes,
    }


def post(client, key, payload, idempotency_key=None):
    headers = {"X-API-Key": key}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return client.post("/v1/requests", json=payload, headers=headers)


def count_requests(client, key):
    return client.get("/v1/requests", headers={"X-API-Key": key}).headers["X-Pagination"]


class TestSubmitting:
    def test_a_valid_request_is_created_with_its_location(self, client, api_key, resident_id):
        response = post(client, api_key, body(resident_id))
        assert response.status_code == 201
        assert response.headers["Location"] == f"/v1/requests/{response.json['id']}"
        assert response.json["status"] == "submitted"
        assert response.json["timeline"][0]["status"] == "submitted"
        assert (
            client.get(response.headers["Location"], headers={"X-API-Key": api_key}).json["id"]
            == response.json["id"]
        )

    def test_the_same_idempotency_key_posted_twice_yields_one_request(
        self, client, api_key, resident_id
    ):
        first = post(client, api_key, body(resident_id), idempotency_key="hotline-778")
        second = post(client, api_key, body(resident_id), idempotency_key="hotline-778")
        assert second.status_code == 201
        assert second.json == first.json
        assert second.headers["Location"] == first.headers["Location"]
        assert second.headers["Idempotent-Replayed"] == "true"
        listed = client.get("/v1/requests", headers={"X-API-Key": api_key})
        assert len(listed.json) == 1

    def test_the_same_idempotency_key_with_a_different_body_is_a_422(
        self, client, api_key, resident_id
    ):
        post(client, api_key, body(resident_id), idempotency_key="hotline-778")
        response = post(
            client, api_key, body(resident_id, summary="Scissors"), idempotency_key="hotline-778"
        )
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        assert response.json["type"].endswith("/idempotency-key-reused")
        assert len(client.get("/v1/requests", headers={"X-API-Key": api_key}).json) == 1

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"category": ""}, "category"),
            ({"summary": None}, "summary"),
            ({"priority": "whenever"}, "priority"),
            ({"location": {"building": "3"}}, "location"),
            ({"colour": "red"}, "colour"),
        ],
    )
    def test_a_bad_body_gets_a_problem_naming_the_field_and_changes_nothing(
        self, client, api_key, resident_id, change, field
    ):
        response = post(client, api_key, body(resident_id, **change))
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        assert field in response.json["errors"]
        assert field in response.json["detail"]
        assert client.get("/v1/requests", headers={"X-API-Key": api_key}).json == []

    def test_an_unknown_category_is_a_404_problem(self, client, api_key, resident_id):
        response = post(client, api_key, body(resident_id, category="teleportation"))
        assert response.status_code == 404
        assert response.json["field"] == "category"

    def test_a_body_that_is_not_json_is_refused(self, client, api_key):
        response = client.post(
            "/v1/requests",
            data="not json",
            headers={"X-API-Key": api_key, "Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422)
        assert response.mimetype == "application/problem+json"


class TestAuthentication:
    def test_no_credentials_is_a_401(self, client, resident_id):
        response = client.post("/v1/requests", json=body(resident_id))
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"

    def test_an_unknown_api_key_is_a_401(self, client, resident_id):
        assert post(client, "rv_wrong", body(resident_id)).status_code == 401

    def test_a_revoked_api_key_is_a_401(self, client, api_key, resident_id):
        from datetime import UTC, datetime

        from services.intake.models import ApiClient

        with runtime().db.transaction() as session:
            for api_client in session.query(ApiClient):
                api_client.revoked_at = datetime.now(UTC)
        assert post(client, api_key, body(resident_id)).status_code == 401

    def test_a_resident_sees_only_their_own_requests(self, client, api_key, resident_id):
        post(client, api_key, body(resident_id))
        secret = runtime().settings.auth_secret
        mine = {
            "Authorization": f"Bearer {issue_token(secret, subject=resident_id, role='resident')}"
        }
        theirs = {
            "Authorization": f"Bearer {issue_token(secret, subject='other', role='resident')}"
        }
        assert len(client.get("/v1/requests", headers=mine).json) == 1
        assert client.get("/v1/requests", headers=theirs).json == []

    def test_a_forged_token_is_a_401(self, client, resident_id):
        forged = issue_token(
            "an-attacker-guessing-the-secret-wrongly", subject=resident_id, role="staff"
        )
        response = client.get("/v1/requests", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401


class TestConfirmation:
    def test_confirming_a_request_that_is_not_completed_is_a_409(
        self, client, api_key, resident_id
    ):
        created = post(client, api_key, body(resident_id)).json
        response = client.post(
            f"/v1/requests/{created['id']}/confirmation", headers={"X-API-Key": api_key}
        )
        assert response.status_code == 409
        assert "completed" in response.json["detail"]

    def test_confirming_an_unknown_request_is_a_404(self, client, api_key):
        response = client.post("/v1/requests/nope/confirmation", headers={"X-API-Key": api_key})
        assert response.status_code == 404


class TestPlumbing:
    def test_health_readiness_metrics_and_docs_answer(self, client):
        assert client.get("/healthz").json["status"] == "ok"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json["checks"] == {"database": "ok", "broker": "ok"}
        metrics = client.get("/metrics").data.decode()
        assert "redvest_outbox_pending" in metrics
        assert "redvest_dead_letters" in metrics
        assert client.get("/docs").status_code == 200
        asset = client.get("/docs/assets/swagger-ui-bundle.js")
        assert asset.status_code == 200
        asset.close()

    def test_the_openapi_document_describes_the_request_endpoints(self, client):
        spec = client.get("/openapi.json").json
        assert "/v1/requests" in spec["paths"]
        assert "/v1/requests/{request_id}/confirmation" in spec["paths"]
        params = spec["paths"]["/v1/requests"]["post"]["parameters"]
        assert any(p["name"] == "Idempotency-Key" for p in params)

    def test_the_correlation_id_is_echoed_and_carried_into_the_outbox(
        self, client, api_key, resident_id
    ):
        response = client.post(
            "/v1/requests",
            json=body(resident_id),
            headers={"X-API-Key": api_key, "X-Correlation-ID": "corr-42"},
        )
        assert response.headers["X-Correlation-ID"] == "corr-42"
        from tests.support import staged_messages

        [message] = staged_messages(runtime())
        assert message.options["correlation_id"] == "corr-42"

    def test_staff_can_add_categories_and_register_residents(self, client, api_key):
        with runtime().db.transaction() as session:
            directory.add_household(session, community="c", building="1", unit="1", number="101")
        headers = {"X-API-Key": api_key}
        created = client.post(
            "/v1/categories", headers=headers, json={"code": "haircut", "name": "Haircut at home"}
        )
        assert created.status_code == 201
        resident = client.post(
            "/v1/residents",
            headers=headers,
            json={
                "name": "Sun Hua",
                "location": {"community": "c", "building": "1", "unit": "1", "household": "101"},
            },
        )
        assert resident.status_code == 201
        assert (
            client.get(f"/v1/residents/{resident.json['id']}", headers=headers).status_code == 200
        )
        off_grid = client.post(
            "/v1/residents",
            headers=headers,
            json={
                "name": "Nobody",
                "location": {"community": "c", "building": "9", "unit": "9", "household": "999"},
            },
        )
        assert off_grid.status_code == 404
