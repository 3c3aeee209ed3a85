"""The HTTP API: volunteers read their own points, staff read all and set the earning rates."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.points.tests.builders import (
    balance,
    bearer,
    credit,
    funded,
    rates,
    transfer,
    transfers,
)
from tests.support import assert_errors_documented

PROBLEM = "application/problem+json"


STAFF = bearer("staff", "s-1")
VOLUNTEER = bearer("volunteer", "v-7")


# Accounts


def test_a_volunteer_sees_their_own_balance(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-7", hours="1.50")

    response = client.get("/v1/accounts/volunteer:v-7", headers=VOLUNTEER)

    assert response.status_code == 200
    assert response.json == {
        "holder": "volunteer:v-7",
        "kind": "holder",
        "name": None,
        "balance": "15.00",
        "available": "15.00",
        "debits_pending": "0.00",
        "credits_pending": "0.00",
    }


def test_another_volunteers_account_is_not_found(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-8")

    response = client.get("/v1/accounts/volunteer:v-8", headers=VOLUNTEER)

    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.json["detail"] == "No account 'volunteer:v-8'"


def test_a_team_lead_is_a_volunteer_here_reading_their_own_account_and_no_other(
    client: FlaskClient,
) -> None:
    rates(knife_sharpening=10)
    credit(request_id="req-1", volunteer_id="v-7", hours="1.00")
    credit(request_id="req-2", volunteer_id="v-8", hours="1.00")
    lead = bearer("team_lead", "v-7")

    own = client.get("/v1/accounts/volunteer:v-7", headers=lead)
    member = client.get("/v1/accounts/volunteer:v-8", headers=lead)
    transfers = client.get("/v1/transfers", headers=lead)

    assert (own.status_code, own.json["balance"]) == (200, "10.00")
    assert member.status_code == 404
    assert [t["id"] for t in transfers.json] == ["earn:req-1"]


def test_a_grid_leader_is_a_resident_here_reading_the_catalogue_not_accounts(
    client: FlaskClient,
) -> None:
    leader = bearer("grid_leader", "r-1")

    assert client.get("/v1/catalogue", headers=leader).status_code == 200
    assert client.get("/v1/accounts/volunteer:v-7", headers=leader).status_code == 403


def test_residents_may_not_read_accounts(client: FlaskClient) -> None:
    response = client.get("/v1/accounts/volunteer:v-7", headers=bearer("resident", "r-1"))

    assert response.status_code == 403


def test_staff_see_any_account_including_the_issuance_account(client: FlaskClient) -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-8")

    response = client.get("/v1/accounts/bank:issuance", headers=STAFF)

    assert response.status_code == 200
    assert (response.json["kind"], response.json["balance"]) == ("issuance", "-15.00")


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
    assert newest.pop("posted_at").endswith("+00:00")
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


def adjustment(**changes: str) -> dict[str, str]:
    """The body of an adjustment staff write by hand, with ``changes``."""
    return {
        "id": "adjust:paper-records:v-7",
        "kind": "adjust",
        "debit": "bank:issuance",
        "credit": "volunteer:v-7",
        "amount": "12.50",
        "reason": "Hours kept on paper before the ledger",
        **changes,
    }


@pytest.mark.parametrize(
    "transfer_id",
    [
        "earn:req-1",
        "earn.2:req-1",
        "reversal:x",
        "redeem:r-1",
        "donate:d",
        "gift:g",
        "EXPIRY:1:2",
        "bench:run:1",
    ],
)
def test_a_transfer_written_by_hand_may_not_take_an_id_the_service_gives(
    client: FlaskClient, transfer_id: str
) -> None:
    body = adjustment(id=transfer_id, reason="Taking the id before the earning")

    response = client.post("/v1/transfers", json=body, headers=STAFF)

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["id"]
    assert "are reserved" in response.json["errors"]["id"][0]
    assert client.get(f"/v1/transfers/{transfer_id}", headers=STAFF).status_code == 404


def test_staff_write_an_adjustment_and_asking_again_finds_it(client: FlaskClient) -> None:
    body = adjustment()

    first = client.post("/v1/transfers", json=body, headers=STAFF)
    again = client.post("/v1/transfers", json=body, headers=STAFF)

    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json == again.json
    assert {key: first.json[key] for key in ("status", "posted_amount", "operator", "reason")} == {
        "status": "posted",
        "posted_amount": "12.50",
        "operator": "staff:s-1",
        "reason": "Hours kept on paper before the ledger",
    }
    assert balance("volunteer:v-7") == Decimal("12.50")


def test_the_same_id_with_another_amount_is_a_409_naming_the_field(client: FlaskClient) -> None:
    transfer(id="adjust-1", amount="10", operator="staff:s-1")
    body = adjustment(id="adjust-1", amount="11", reason="Opening balance")

    response = client.post("/v1/transfers", json=body, headers=STAFF)

    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    assert response.json["type"].endswith("/exists-with-different-amount")
    assert response.json["field"] == "amount"
    assert balance("volunteer:v-7") == Decimal(10)


def test_a_gift_of_more_points_than_are_available_is_a_409_and_changes_nothing(
    client: FlaskClient,
) -> None:
    funded("volunteer:v-7", 5)
    body = {
        "id": "gift-1",
        "kind": "gift",
        "debit": "volunteer:v-7",
        "credit": "volunteer:v-8",
        "amount": "6",
    }

    response = client.post("/v1/transfers", json=body, headers=STAFF)

    assert response.status_code == 409
    assert response.json["type"].endswith("/exceeds-available")
    assert "5.00 points available" in response.json["detail"]
    assert (balance("volunteer:v-7"), balance("volunteer:v-8")) == (Decimal(5), None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "earn"}, "kind"),
        ({"kind": "reversal"}, "kind"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": 1e9}, "amount"),
        ({"id": "has space"}, "id"),
        ({"id": "x" * 81}, "id"),
        ({"timeout_seconds": 60}, "timeout"),
        ({"on_timeout": "keep"}, "on_timeout"),
        ({"operator": "staff:me"}, "operator"),
        ({"credit": "bank:vault"}, "credit"),
        ({"reason": None}, "reason"),
        ({"reason": ""}, "reason"),
    ],
)
def test_an_invalid_transfer_is_a_422_problem_and_changes_nothing(
    client: FlaskClient, change: dict[str, Any], field: str
) -> None:
    body = {
        "id": "adjust-1",
        "kind": "adjust",
        "debit": "bank:issuance",
        "credit": "volunteer:v-7",
        "amount": "10",
        "reason": "Opening balance",
        **change,
    }

    response = client.post("/v1/transfers", json=body, headers=STAFF)

    assert response.status_code == 422, response.json
    assert response.mimetype == PROBLEM
    assert field in response.json.get("errors", {}) or response.json.get("field") == field
    assert transfers() == []


def test_only_staff_write_post_void_or_reverse_transfers(client: FlaskClient) -> None:
    written = funded("volunteer:v-7", 5)
    paths = [
        "/v1/transfers",
        f"/v1/transfers/{written.id}/posting",
        f"/v1/transfers/{written.id}/voiding",
        f"/v1/transfers/{written.id}/reversal",
    ]

    answers = [client.post(path, json={"reason": "mine"}, headers=VOLUNTEER) for path in paths]

    assert [answer.status_code for answer in answers] == [403] * 4
    assert len(transfers()) == 1


def pending_gift() -> Any:
    """Volunteer v-7, given 10 points, holds 6 of them pending as a gift to v-8 (``hold-1``)."""
    funded("volunteer:v-7", 10)
    return transfer(
        id="hold-1",
        kind="gift",
        debit="volunteer:v-7",
        credit="volunteer:v-8",
        amount="6",
        is_pending=True,
        reason=None,
    )


def test_staff_post_part_of_a_pending_transfer_then_reverse_what_it_moved(
    client: FlaskClient,
) -> None:
    pending = pending_gift()

    posted = client.post(f"/v1/transfers/{pending.id}/posting", json={"amount": "4"}, headers=STAFF)
    reversed_ = client.post(
        f"/v1/transfers/{pending.id}/reversal", json={"reason": "Given by mistake"}, headers=STAFF
    )

    assert posted.status_code == 200
    assert (posted.json["status"], posted.json["posted_amount"]) == ("posted", "4.00")
    assert posted.json["resolution"]["operator"] == "staff:s-1"
    assert reversed_.status_code == 201
    assert (reversed_.json["id"], reversed_.json["reverses"], reversed_.json["amount"]) == (
        "reversal:hold-1",
        "hold-1",
        "4.00",
    )
    assert (balance("volunteer:v-7"), balance("volunteer:v-8")) == (Decimal(10), Decimal(0))


@pytest.mark.parametrize(
    ("first", "again", "answer"),
    [
        ({}, {}, 200),
        ({"amount": "4.00"}, {"amount": "4"}, 200),
        ({"amount": "4.00", "reason": "Four"}, {"amount": "4.00"}, 200),
        ({"amount": "4.00"}, {}, "pending-transfer-already-posted"),
        ({}, {"amount": "4.00"}, "pending-transfer-already-posted"),
        ({"amount": "4.00"}, {"amount": "5.00"}, "pending-transfer-already-posted"),
        ({"reason": "Handed over"}, {"reason": "Other"}, "exists-with-different-reason"),
    ],
    ids=[
        "all again",
        "a part again",
        "again without the reason",
        "all after a part",
        "a part after all",
        "another part",
        "another reason",
    ],
)
def test_only_the_same_posting_again_is_answered_and_any_other_is_refused(
    client: FlaskClient, first: dict[str, str], again: dict[str, str], answer: int | str
) -> None:
    pending = pending_gift()
    path = f"/v1/transfers/{pending.id}/posting"
    posted = client.post(path, json=first, headers=STAFF)

    repeated = client.post(path, json=again, headers=STAFF)

    if answer == 200:
        assert (repeated.status_code, repeated.json) == (200, posted.json)
    else:
        assert repeated.status_code == 409
        assert repeated.json["type"].rsplit("/", 1)[-1] == answer
    assert balance("volunteer:v-8") == Decimal(posted.json["posted_amount"])


def test_staff_void_a_pending_transfer_and_it_cannot_be_posted_after(client: FlaskClient) -> None:
    pending = pending_gift()

    voided = client.post(
        f"/v1/transfers/{pending.id}/voiding", json={"reason": "No"}, headers=STAFF
    )
    posted = client.post(f"/v1/transfers/{pending.id}/posting", json={}, headers=STAFF)
    missing = client.post("/v1/transfers/nothing/voiding", json={"reason": "No"}, headers=STAFF)
    no_reason = client.post(f"/v1/transfers/{pending.id}/voiding", json={}, headers=STAFF)

    assert (voided.status_code, voided.json["status"]) == (200, "voided")
    assert (posted.status_code, posted.json["type"].rsplit("/", 1)[-1]) == (
        409,
        "pending-transfer-already-voided",
    )
    assert (missing.status_code, no_reason.status_code) == (404, 422)
    assert balance("volunteer:v-7") == Decimal(10)


def test_transfers_are_listed_newest_first_and_a_volunteer_sees_only_their_own(
    client: FlaskClient,
) -> None:
    rates(knife_sharpening=10)
    credit(request_id="req-1", volunteer_id="v-7", hours="1.00")
    credit(request_id="req-2", volunteer_id="v-8", hours="1.00")

    everyone = client.get("/v1/transfers?kind=earn", headers=STAFF)
    mine = client.get("/v1/transfers?holder=volunteer:v-8", headers=VOLUNTEER)
    by_request = client.get("/v1/transfers?request_id=req-2", headers=STAFF)

    assert everyone.status_code == 200
    assert json.loads(everyone.headers["X-Pagination"])["total"] == 2
    assert [t["id"] for t in mine.json] == ["earn:req-1"]
    assert [t["credit"] for t in by_request.json] == ["volunteer:v-8"]
    assert client.get("/v1/transfers?kind=bonus", headers=STAFF).status_code == 422


# Earning rates


def test_staff_set_a_rate_and_anyone_signed_in_reads_it(client: FlaskClient) -> None:
    response = client.put("/v1/rates/mediation", json={"points_per_hour": 12.5}, headers=STAFF)

    assert response.status_code == 200
    assert response.json["points_per_hour"] == "12.50"
    listed = client.get("/v1/rates", headers=bearer("resident", "r-1")).json
    assert [(rate["category"], rate["points_per_hour"]) for rate in listed] == [
        ("mediation", "12.50")
    ]


def test_a_rates_history_says_who_set_each_rate_newest_first(client: FlaskClient) -> None:
    client.put("/v1/rates/mediation", json={"points_per_hour": "12"}, headers=STAFF)
    client.put("/v1/rates/mediation", json={"points_per_hour": "12.50"}, headers=STAFF)

    response = client.get("/v1/rates/mediation/history", headers=bearer("resident", "r-1"))

    assert response.status_code == 200
    assert [(c["points_per_hour"], c["set_by"]) for c in response.json] == [
        ("12.50", "staff:s-1"),
        ("12.00", "staff:s-1"),
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
    history = client.get("/v1/rates/Not%20a%20code/history", headers=STAFF)
    assert (history.status_code, history.json["field"]) == (422, "category")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/catalogue/rice", {"available_from": "0001-01-01T00:00:00+14:00"}, "available_from"),
        ("/v1/catalogue/rice", {"available_until": "9999-12-31T23:59:59-14:00"}, "available_until"),
        ("/v1/catalogue/rice", {"name": "   "}, "name"),
        ("/v1/catalogue/rice", {"name": "Rice\u202e gk 5"}, "name"),
        ("/v1/catalogue/rice", {"is_active": "yes"}, "is_active"),
        ("/v1/catalogue/rice", {"stock": "5"}, "stock"),
        ("/v1/catalogue/rice", {"stock": True}, "stock"),
    ],
)
def test_unreadable_catalogue_input_is_a_422_naming_the_field(
    client: FlaskClient, path: str, body: dict[str, Any], field: str
) -> None:
    item = {"name": "Rice, 5 kg", "kind": "goods", "price": "8.00", **body}

    response = client.put(path, json=item, headers=STAFF)

    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == [field]
    assert client.get(path, headers=STAFF).status_code == 404


@pytest.mark.parametrize("reason", ["  ", "\x07bell", "by \u2066hand\u2069"])
def test_a_reason_that_cannot_be_read_is_refused(client: FlaskClient, reason: str) -> None:
    response = client.post("/v1/transfers", json=adjustment(reason=reason), headers=STAFF)

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["reason"]


def test_the_openapi_document_describes_the_ledger(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]

    assert {
        "/v1/accounts/{holder}",
        "/v1/accounts/{holder}/entries",
        "/v1/rates",
        "/v1/rates/{category}",
        "/v1/rates/{category}/history",
        "/v1/transfers",
        "/v1/transfers/{transfer_id}",
        "/v1/transfers/{transfer_id}/posting",
        "/v1/transfers/{transfer_id}/voiding",
        "/v1/transfers/{transfer_id}/reversal",
    } <= set(paths)


# Every error status each operation can answer; 422 wherever it takes a body or a query.
ERRORS_EACH_OPERATION_DOCUMENTS = {
    ("get", "/v1/accounts/{holder}"): {"401", "403", "404"},
    ("get", "/v1/accounts/{holder}/entries"): {"401", "403", "404", "422"},
    ("get", "/v1/transfers/{transfer_id}"): {"401", "403", "404"},
    ("get", "/v1/transfers"): {"401", "403", "422"},
    ("post", "/v1/transfers"): {"401", "403", "409", "422"},
    ("post", "/v1/transfers/{transfer_id}/posting"): {"401", "403", "404", "409", "422"},
    ("post", "/v1/transfers/{transfer_id}/voiding"): {"401", "403", "404", "409", "422"},
    ("post", "/v1/transfers/{transfer_id}/reversal"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/rates"): {"401"},
    ("put", "/v1/rates/{category}"): {"401", "403", "422"},
    ("get", "/v1/rates/{category}/history"): {"401", "422"},
    ("get", "/v1/catalogue"): {"401", "422"},
    ("get", "/v1/catalogue/{item_id}"): {"401", "404"},
    ("put", "/v1/catalogue/{item_id}"): {"401", "403", "422"},
    ("get", "/v1/redemptions"): {"401", "403", "422"},
    ("post", "/v1/redemptions"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/redemptions/{redemption_id}"): {"401", "403", "404"},
    ("post", "/v1/redemptions/{redemption_id}/fulfilment"): {"401", "403", "404", "409"},
    ("post", "/v1/redemptions/{redemption_id}/cancellation"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/accounts/{holder}/statement"): {"401", "403", "404", "422"},
    ("get", "/v1/accounts/{holder}/certificate"): {"401", "403", "404", "422"},
    ("get", "/v1/honour-roll"): {"401", "422"},
    ("post", "/v1/accounts/{holder}/donations"): {"401", "403", "404", "409", "422"},
    ("post", "/v1/accounts/{holder}/gifts"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/accounts/{holder}/family"): {"401", "403", "404", "422"},
    ("put", "/v1/accounts/{holder}/family/{relative}"): {"401", "403", "422"},
    ("delete", "/v1/accounts/{holder}/family/{relative}"): {"401", "403", "404"},
}


def test_every_operation_documents_the_errors_it_can_answer(client: FlaskClient) -> None:
    assert_errors_documented(client.get("/openapi.json").json, ERRORS_EACH_OPERATION_DOCUMENTS)
