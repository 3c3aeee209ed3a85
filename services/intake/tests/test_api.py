"""intake over HTTP: validation, idempotency, auth, problem+json, docs and probes."""

from __future__ import annotations

import pytest

from services.intake import directory
from services.intake.config import runtime
from services.intake.tests.builders import (
    a_request,
    post,
    request_body,
    walk_to_completed,
)
from shared.auth import issue_token
from tests.support import assert_errors_documented


def bearer(subject, role):
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}


def count_requests(client, key):
    return client.get("/v1/requests", headers={"X-API-Key": key}).headers["X-Pagination"]


class TestSubmitting:
    def test_a_valid_request_is_created_with_its_location(self, client, api_key, resident_id):
        response = post(client, api_key, request_body(resident_id))
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
        first = post(client, api_key, request_body(resident_id), idempotency_key="hotline-778")
        second = post(client, api_key, request_body(resident_id), idempotency_key="hotline-778")
        assert second.status_code == 201
        assert second.json == first.json
        assert second.headers["Location"] == first.headers["Location"]
        assert second.headers["Idempotent-Replayed"] == "true"
        listed = client.get("/v1/requests", headers={"X-API-Key": api_key})
        assert len(listed.json) == 1

    def test_the_same_idempotency_key_with_a_different_body_is_a_422(
        self, client, api_key, resident_id
    ):
        post(client, api_key, request_body(resident_id), idempotency_key="hotline-778")
        response = post(
            client,
            api_key,
            request_body(resident_id, summary="Scissors"),
            idempotency_key="hotline-778",
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
        response = post(client, api_key, request_body(resident_id, **change))
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        assert field in response.json["errors"]
        assert field in response.json["detail"]
        assert client.get("/v1/requests", headers={"X-API-Key": api_key}).json == []

    def test_an_unknown_category_is_a_404_problem(self, client, api_key, resident_id):
        response = post(client, api_key, request_body(resident_id, category="teleportation"))
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
        response = client.post("/v1/requests", json=request_body(resident_id))
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"

    def test_an_unknown_api_key_is_a_401(self, client, resident_id):
        assert post(client, "rv_wrong", request_body(resident_id)).status_code == 401

    def test_a_revoked_api_key_is_a_401(self, client, api_key, resident_id):
        from datetime import UTC, datetime

        from services.intake.models import ApiClient

        with runtime().db.transaction() as session:
            for api_client in session.query(ApiClient):
                api_client.revoked_at = datetime.now(UTC)
        assert post(client, api_key, request_body(resident_id)).status_code == 401

    def test_a_resident_sees_only_their_own_requests(self, client, api_key, resident_id):
        post(client, api_key, request_body(resident_id))
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


@pytest.fixture
def completed():
    """A completed request: (its id, its resident's id)."""
    with runtime().db.transaction() as session:
        request = a_request(session)
        walk_to_completed(session, request)
        return request.id, request.resident_id


def confirm(client, request_id, headers, **kwargs):
    return client.post(f"/v1/requests/{request_id}/confirmation", headers=headers, **kwargs)


class TestConfirmation:
    def test_the_resident_confirms_their_completed_request_with_no_body(self, client, completed):
        request_id, resident = completed
        response = confirm(client, request_id, bearer(resident, "resident"))
        assert response.status_code == 200
        assert response.json["status"] == "confirmed"
        assert response.json["timeline"][-1]["note"] == "Confirmed by the resident"

    def test_the_resident_may_confirm_with_an_empty_json_body(self, client, completed):
        request_id, resident = completed
        response = confirm(client, request_id, bearer(resident, "resident"), json={})
        assert response.status_code == 200

    def test_staff_confirm_on_the_residents_behalf_giving_the_reason(self, client, completed):
        request_id, _ = completed
        response = confirm(
            client,
            request_id,
            bearer("duty-officer", "staff"),
            json={"note": "resident called the office"},
        )
        assert response.status_code == 200
        assert response.json["timeline"][-1]["note"] == (
            "Confirmed by staff duty-officer on the resident's behalf: resident called the office"
        )

    def test_staff_without_a_note_get_a_422_naming_the_note(self, client, completed):
        request_id, _ = completed
        response = confirm(client, request_id, bearer("duty-officer", "staff"))
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        assert response.json["field"] == "note"

    @pytest.mark.parametrize("payload", [{"note": ""}, {"note": "x" * 501}, {"colour": "red"}])
    def test_a_bad_confirmation_body_is_refused_and_confirms_nothing(
        self, client, completed, payload
    ):
        request_id, _ = completed
        staff = bearer("duty-officer", "staff")
        response = confirm(client, request_id, staff, json=payload)
        assert response.status_code == 422
        assert list(response.json["errors"]) == list(payload)
        assert client.get(f"/v1/requests/{request_id}", headers=staff).json["status"] == "completed"

    def test_an_api_client_may_not_confirm_and_gets_a_403_saying_who_may(
        self, client, api_key, completed
    ):
        request_id, _ = completed
        response = confirm(
            client, request_id, {"X-API-Key": api_key}, json={"note": "the resident said so"}
        )
        assert response.status_code == 403
        assert response.mimetype == "application/problem+json"
        assert "Only the resident who asked, or staff on their behalf" in response.json["detail"]

    def test_confirming_a_request_that_is_not_completed_is_a_409(
        self, client, api_key, resident_id
    ):
        created = post(client, api_key, request_body(resident_id)).json
        response = confirm(client, created["id"], bearer(resident_id, "resident"))
        assert response.status_code == 409
        assert "completed" in response.json["detail"]

    def test_confirming_an_unknown_request_is_a_404(self, client, resident_id):
        response = confirm(client, "nope", bearer(resident_id, "resident"))
        assert response.status_code == 404


# Every error status each operation can answer; 422 wherever it takes a body or a query.
_ON_A_REQUEST = {"401", "403", "404", "409", "412", "422"}
ERRORS_EACH_OPERATION_DOCUMENTS = {
    ("get", "/v1/requests"): {"401", "403", "422"},
    ("post", "/v1/requests"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/requests/changes"): {"401", "403", "422"},
    ("get", "/v1/requests/counts"): {"401", "403", "422"},
    ("get", "/v1/requests/{request_id}"): {"401", "403", "404"},
    ("post", "/v1/api-keys"): {"401", "403", "409", "422", "429"},
    ("get", "/v1/api-keys"): {"401", "403", "422", "429"},
    ("get", "/v1/api-keys/{name}"): {"401", "403", "404", "429"},
    ("delete", "/v1/api-keys/{name}"): {"401", "403", "404", "429"},
    **{
        ("post", f"/v1/requests/{{request_id}}/{action}"): _ON_A_REQUEST
        for action in (
            "confirmation",
            "triage",
            "start",
            "escalation",
            "cancellation",
            "rejection",
            "reopening",
            "merge",
        )
    },
    ("post", "/v1/requests/{request_id}/notes"): {"401", "403", "404", "412", "422"},
    ("post", "/v1/requests/{request_id}/attachments"): {"401", "403", "404", "412", "422"},
    ("get", "/v1/categories"): {"401", "422"},
    ("post", "/v1/categories"): {"401", "403", "409", "422"},
    ("get", "/v1/categories/{code}"): {"401", "404"},
    ("patch", "/v1/categories/{code}"): {"401", "403", "404", "412", "422"},
    ("get", "/v1/grid/nodes"): {"401", "403", "422"},
    ("post", "/v1/grid/nodes"): {"401", "403", "404", "422"},
    ("get", "/v1/grid/nodes/{node_id}"): {"401", "403", "404"},
    ("patch", "/v1/grid/nodes/{node_id}"): {"401", "403", "404", "412", "422"},
    ("get", "/v1/residents"): {"401", "403", "422"},
    # No 409: a resident's id is always a new one, so registering never collides.
    ("post", "/v1/residents"): {"401", "403", "404", "422"},
    ("get", "/v1/residents/{resident_id}"): {"401", "403", "404"},
    ("patch", "/v1/residents/{resident_id}"): {"401", "403", "404", "412", "422"},
    ("get", "/v1/residents/{resident_id}/health-notes"): {"401", "403", "404"},
    ("post", "/v1/residents/{resident_id}/health-notes"): {"401", "403", "404", "422"},
    ("get", "/v1/webhooks"): {"401", "403"},
    ("post", "/v1/webhooks"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/webhooks/{subscription_id}"): {"401", "403", "404"},
    ("patch", "/v1/webhooks/{subscription_id}"): {"401", "403", "404", "412", "422"},
    ("delete", "/v1/webhooks/{subscription_id}"): {"401", "403", "404"},
    ("post", "/v1/webhooks/{subscription_id}/secret"): {"401", "403", "404", "422"},
    ("post", "/v1/webhooks/{subscription_id}/resumption"): {"401", "403", "404", "409"},
    ("get", "/v1/webhooks/{subscription_id}/deliveries"): {"401", "403", "404", "422"},
    ("get", "/v1/webhooks/{subscription_id}/deliveries/{delivery_id}"): {"401", "403", "404"},
    ("post", "/v1/webhooks/{subscription_id}/deliveries/{delivery_id}/replay"): {
        "401",
        "403",
        "404",
    },
    ("post", "/v1/webhooks/{subscription_id}/replays"): {"401", "403", "404", "422"},
}


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

    def test_every_operation_documents_the_errors_it_can_answer(self, client):
        spec = client.get("/openapi.json").json
        # API keys are rate limited: every operation documents the 429 too.
        assert_errors_documented(
            spec, {key: codes | {"429"} for key, codes in ERRORS_EACH_OPERATION_DOCUMENTS.items()}
        )

    def test_the_correlation_id_is_echoed_and_carried_into_the_outbox(
        self, client, api_key, resident_id
    ):
        response = client.post(
            "/v1/requests",
            json=request_body(resident_id),
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
            "/v1/categories",
            headers=headers,
            json={"code": "haircut", "names": {"en": "Haircut at home", "zh-CN": "上门理发"}},
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
