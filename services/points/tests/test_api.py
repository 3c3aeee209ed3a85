"""The HTTP API: volunteers read their own points, staff read all and set the earning rates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.points.app import create_app
from services.points.tests.builders import bearer, credit, rates
from tests.support import assert_errors_documented

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def app() -> Flask:
    return create_app()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


STAFF = bearer("staff", "s-1")
VOLUNTEER = bearer("volunteer", "v-7")


# Accounts


def test_a_volunteer_sees_their_own_balance(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-7", hours="1.50")

    response = client.get("/v1/accounts/volunteer:v-7", headers=VOLUNTEER)

    assert response.status_code == 200
    assert response.json == {"holder": "volunteer:v-7", "kind": "holder", "balance": "15.00"}


def test_another_volunteers_account_is_not_found(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-8")

    response = client.get("/v1/accounts/volunteer:v-8", headers=VOLUNTEER)

    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.json["detail"] == "No account 'volunteer:v-8'"


def test_residents_may_not_read_accounts(client: FlaskClient) -> None:
    response = client.get("/v1/accounts/volunteer:v-7", headers=bearer("resident", "r-1"))

    assert response.status_code == 403


def test_staff_see_any_account_including_the_issuance_account(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-8")

    response = client.get("/v1/accounts/bank:issuance", headers=STAFF)

    assert response.status_code == 200
    assert response.json == {"holder": "bank:issuance", "kind": "issuance", "balance": "-15.00"}


def test_an_unknown_account_is_a_404_problem(client: FlaskClient) -> None:
    response = client.get("/v1/accounts/volunteer:v-7", headers=VOLUNTEER)

    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.json["detail"] == "No account 'volunteer:v-7'"


def test_reading_the_ledger_needs_a_bearer_token(client: FlaskClient) -> None:
    assert client.get("/v1/accounts/volunteer:v-7").status_code == 401
    assert client.get("/v1/rates", headers={"X-API-Key": "rv_anything"}).status_code == 401


def test_entries_are_paginated_newest_first(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    for number in range(3):
        credit(request_id=f"req-{number}", volunteer_id="v-7", hours="1.00")

    response = client.get(
        "/v1/accounts/volunteer:v-7/entries?page=1&page_size=2", headers=VOLUNTEER
    )

    assert response.status_code == 200
    assert json.loads(response.headers["X-Pagination"])["total"] == 3
    newest: dict[str, Any] = response.json[0]  # type: ignore[index]
    assert newest.pop("created_at").endswith("+00:00")
    assert newest == {
        "transfer_id": "earn:req-2",
        "kind": "earn",
        "amount": "10.00",
        "memo": "1.00 h of knife_sharpening at 10.00 points/h",
        "request_id": "req-2",
    }
    assert [entry["transfer_id"] for entry in response.json] == ["earn:req-2", "earn:req-1"]


def test_the_issuance_account_shows_debits_as_negative_entries(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(request_id="req-1", hours="1.00")

    response = client.get("/v1/accounts/bank:issuance/entries", headers=STAFF)

    assert [entry["amount"] for entry in response.json] == ["-10.00"]


def test_another_volunteers_entries_are_not_found(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-8")

    assert client.get("/v1/accounts/volunteer:v-8/entries", headers=VOLUNTEER).status_code == 404


# Transfers


def test_a_transfer_shows_both_of_its_sides(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(request_id="req-1", volunteer_id="v-7", hours="1.00")

    response = client.get("/v1/transfers/earn:req-1", headers=VOLUNTEER)

    assert response.status_code == 200
    assert {key: response.json[key] for key in ("id", "kind", "amount", "debit", "credit")} == {
        "id": "earn:req-1",
        "kind": "earn",
        "amount": "10.00",
        "debit": "bank:issuance",
        "credit": "volunteer:v-7",
    }


def test_a_transfer_between_others_is_not_found_by_a_volunteer(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(request_id="req-1", volunteer_id="v-8")

    hidden = client.get("/v1/transfers/earn:req-1", headers=VOLUNTEER)
    missing = client.get("/v1/transfers/earn:nothing", headers=STAFF)

    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json["detail"] == "No transfer 'earn:req-1'"


# Earning rates


def test_staff_set_a_rate_and_anyone_signed_in_reads_it(client: FlaskClient) -> None:
    response = client.put("/v1/rates/mediation", json={"points_per_hour": 12.5}, headers=STAFF)

    assert response.status_code == 200
    assert response.json["points_per_hour"] == "12.50"
    listed = client.get("/v1/rates", headers=bearer("resident", "r-1")).json
    assert [(rate["category"], rate["points_per_hour"]) for rate in listed] == [
        ("mediation", "12.50")
    ]


def test_a_volunteer_may_not_set_rates(client: FlaskClient) -> None:
    response = client.put("/v1/rates/mediation", json={"points_per_hour": "99"}, headers=VOLUNTEER)

    assert response.status_code == 403
    assert client.get("/v1/rates", headers=VOLUNTEER).json == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"points_per_hour": 0}, "points_per_hour"),
        ({"points_per_hour": "-5"}, "points_per_hour"),
        ({"points_per_hour": "1.005"}, "points_per_hour"),
        ({"points_per_hour": "ten"}, "points_per_hour"),
        ({"points_per_hour": "NaN"}, "points_per_hour"),
        ({"points_per_hour": "1e1000"}, "points_per_hour"),
        ({}, "points_per_hour"),
        ({"points_per_hour": 10, "bonus": 1}, "bonus"),
    ],
)
def test_an_invalid_rate_is_a_422_problem_naming_the_field(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    response = client.put("/v1/rates/mediation", json=body, headers=STAFF)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert field in response.json["errors"]
    assert client.get("/v1/rates", headers=STAFF).json == []


def test_a_rate_for_something_that_is_not_a_catalogue_code_is_refused(client: FlaskClient) -> None:
    response = client.put("/v1/rates/Not%20a%20code", json={"points_per_hour": 5}, headers=STAFF)

    assert response.status_code == 422
    assert response.json["field"] == "category"


def test_the_openapi_document_describes_the_ledger(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]

    assert {
        "/v1/accounts/{holder}",
        "/v1/accounts/{holder}/entries",
        "/v1/rates",
        "/v1/rates/{category}",
        "/v1/transfers/{transfer_id}",
    } <= set(paths)


# Every error status each operation can answer; 422 wherever it takes a body or a query.
ERRORS_EACH_OPERATION_DOCUMENTS = {
    ("get", "/v1/accounts/{holder}"): {"401", "403", "404"},
    ("get", "/v1/accounts/{holder}/entries"): {"401", "403", "404", "422"},
    ("get", "/v1/transfers/{transfer_id}"): {"401", "403", "404"},
    ("get", "/v1/rates"): {"401"},
    ("put", "/v1/rates/{category}"): {"401", "403", "422"},
}


def test_every_operation_documents_the_errors_it_can_answer(client: FlaskClient) -> None:
    assert_errors_documented(client.get("/openapi.json").json, ERRORS_EACH_OPERATION_DOCUMENTS)
