"""The catalogue: points redeemed for a haircut or rice and oil, stock and points reserved
together, handed over or cancelled; with too few points, no stock or over the limit, nothing
changes and the reason is plain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from services.points import catalogue
from services.points.config import runtime
from services.points.ledger import SINK_HOLDER, Refused, TransferExists
from services.points.models import GOODS, SERVICE, Redemption, Transfer
from services.points.tests.builders import (
    account,
    all_at_once,
    audit_findings,
    bearer,
    fire_due_timers,
    funded,
    refused,
    stored,
)
from shared import clock
from shared.errors import Invalid, NotFound

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


def item(item_id: str = "rice-5kg", **fields: Any) -> None:
    values: dict[str, Any] = {
        "name": "Rice, 5 kg",
        "kind": GOODS,
        "price": Decimal(20),
        "stock": 3,
        **fields,
    }
    with runtime().db.transaction() as session:
        catalogue.put_item(session, item_id=item_id, **values)


def redeem(redemption_id: str = "r-1", **fields: Any) -> Redemption:
    values: dict[str, Any] = {
        "item_id": "rice-5kg",
        "holder": "volunteer:v-7",
        "quantity": 1,
        "operator": "volunteer:v-7",
        **fields,
    }
    with runtime().db.transaction() as session:
        return catalogue.redeem(session, redemption_id=redemption_id, **values)


def fulfil(redemption_id: str = "r-1") -> Redemption:
    with runtime().db.transaction() as session:
        return catalogue.fulfil(session, redemption_id=redemption_id, operator="staff:desk")


def cancel(redemption_id: str = "r-1", reason: str = "Changed my mind") -> Redemption:
    with runtime().db.transaction() as session:
        return catalogue.cancel(session, redemption_id=redemption_id, reason=reason)


def stock(item_id: str = "rice-5kg") -> int | None:
    with runtime().db.read() as session:
        return catalogue.get_item(session, item_id).stock


def points_of(holder: str = "volunteer:v-7") -> tuple[Decimal, Decimal]:
    """(balance, available)."""
    found = account(holder)
    return found.balance, found.available


def counts() -> tuple[int, int]:
    """(redemptions, transfers)."""
    with runtime().db.read() as session:
        return (
            int(session.scalar(select(func.count()).select_from(Redemption)) or 0),
            int(session.scalar(select(func.count()).select_from(Transfer)) or 0),
        )


# Reserved, then handed over or cancelled


def test_a_redemption_reserves_the_stock_and_the_points_together() -> None:
    item()
    funded("volunteer:v-7", 50)

    reserved = redeem(quantity=2)

    assert (reserved.status, reserved.points, reserved.transfer_id) == (
        "reserved",
        Decimal(40),
        "redeem:r-1",
    )
    assert stock() == 1
    assert points_of() == (Decimal(50), Decimal(10))
    held = stored("redeem:r-1")
    assert (held.kind, held.status, held.debit, held.credit) == (
        "redeem",
        "pending",
        "volunteer:v-7",
        SINK_HOLDER,
    )


def test_the_handover_pays_the_points_held() -> None:
    item()
    funded("volunteer:v-7", 50)
    redeem(quantity=2)

    handed = fulfil()
    again = fulfil()

    assert handed.status == again.status == "fulfilled"
    assert points_of() == (Decimal(10), Decimal(10))
    assert account(SINK_HOLDER).balance == Decimal(40)
    assert stock() == 1
    error = refused(cancel)
    assert isinstance(error, Refused) and error.result == "redemption_fulfilled"
    assert audit_findings() == []


def test_a_cancelled_redemption_releases_the_points_and_puts_the_stock_back() -> None:
    item()
    funded("volunteer:v-7", 50)
    redeem(quantity=2)

    cancelled = cancel(reason="Out of rice this week")
    again = cancel(reason="Out of rice this week")

    assert cancelled.status == again.status == "cancelled"
    assert cancelled.reason == "Out of rice this week"
    assert points_of() == (Decimal(50), Decimal(50))
    assert stock() == 3
    error = refused(fulfil)
    assert isinstance(error, Refused) and error.result == "redemption_cancelled"
    assert audit_findings() == []


def test_a_reservation_not_collected_in_time_is_cancelled() -> None:
    item()
    funded("volunteer:v-7", 50)
    redeem()

    clock.advance(catalogue.HOLD)
    fire_due_timers()

    with runtime().db.read() as session:
        ended = catalogue.get_redemption(session, "r-1")
    assert (ended.status, ended.reason) == ("cancelled", "Not collected within 14 days")
    assert (stock(), points_of()) == (3, (Decimal(50), Decimal(50)))


def test_asking_again_with_the_same_id_finds_the_redemption_and_otherwise_is_refused() -> None:
    item()
    funded("volunteer:v-7", 50)
    first = redeem()

    again = redeem()
    error = refused(lambda: redeem(quantity=2))

    assert again.id == first.id
    assert isinstance(error, TransferExists) and error.result == "exists_with_different_quantity"
    assert (stock(), counts()) == (2, (1, 2))


# Refused, and nothing changes


def assert_nothing_changed(*, available: Decimal = Decimal(30), left: int | None = 3) -> None:
    assert points_of()[1] == available
    assert stock() == left
    assert counts() == (0, 1)  # the funding only


def test_too_few_points_are_refused_with_what_is_available() -> None:
    item()
    funded("volunteer:v-7", 30)

    error = refused(lambda: redeem(quantity=2))

    assert isinstance(error, Refused) and error.result == "exceeds_available"
    assert "volunteer:v-7 has 30.00 points available; 40.00 are needed" in error.detail
    assert_nothing_changed()


def test_more_than_is_in_stock_is_refused() -> None:
    item(stock=1)
    funded("volunteer:v-7", 30)

    error = refused(lambda: redeem(quantity=2))

    assert isinstance(error, Refused) and error.result == "out_of_stock"
    assert error.detail == "Rice, 5 kg: 1 left, 2 asked for"
    assert_nothing_changed(left=1)


def test_more_than_one_person_may_have_in_the_period_is_refused_until_the_period_passes() -> None:
    item(
        "haircut",
        name="Haircut at home",
        kind=SERVICE,
        price=Decimal(8),
        stock=None,
        limit_per_person=1,
        limit_period_days=30,
    )
    funded("volunteer:v-7", 30)
    redeem("r-1", item_id="haircut")
    fulfil("r-1")

    error = refused(lambda: redeem("r-2", item_id="haircut"))
    clock.advance(timedelta(days=30))
    later = redeem("r-3", item_id="haircut")

    assert isinstance(error, Refused) and error.result == "exceeds_limit"
    assert "at most 1 per person in 30 days; volunteer:v-7 has 1 already" in error.detail
    assert later.status == "reserved"


def test_a_cancelled_redemption_does_not_count_against_the_limit() -> None:
    item(limit_per_person=1)
    funded("volunteer:v-7", 50)
    redeem("r-1")
    cancel("r-1")

    assert redeem("r-2").status == "reserved"


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ({"available_from": T0 + timedelta(days=1)}, "can be had from 2026-12-02 09:00 UTC"),
        ({"available_until": T0}, "could be had until 2026-12-01 09:00 UTC"),
        ({"is_active": False}, "no longer in the catalogue"),
    ],
)
def test_an_item_not_to_be_had_now_is_refused(window: dict[str, Any], says: str) -> None:
    item(**window)
    funded("volunteer:v-7", 30)

    error = refused(redeem)

    assert isinstance(error, Refused) and error.result == "not_available"
    assert says in error.detail
    assert_nothing_changed()


@pytest.mark.parametrize(
    ("fields", "error_type"),
    [
        ({"item_id": "caviar"}, NotFound),
        ({"quantity": 0}, Invalid),
        ({"quantity": 101}, Invalid),
        ({"holder": "bank:pool"}, Invalid),
        ({"holder": "resident:r-1"}, Invalid),
    ],
)
def test_a_redemption_that_names_nothing_to_be_had_is_refused(
    fields: dict[str, Any], error_type: type[Exception]
) -> None:
    item()
    funded("volunteer:v-7", 30)

    assert isinstance(refused(lambda: redeem(**fields)), error_type)
    assert_nothing_changed()


# All at once


def test_many_members_at_once_never_take_more_than_is_in_stock() -> None:
    item(stock=5)
    for n in range(20):
        funded(f"volunteer:m-{n}", 20)

    outcomes = all_at_once(
        [
            (lambda n=n: redeem(f"r-{n}", holder=f"volunteer:m-{n}", operator=None))
            for n in range(20)
        ]
    )

    reserved = [o for o in outcomes if isinstance(o, Redemption)]
    refusals = [o for o in outcomes if isinstance(o, Refused)]
    assert (len(reserved), len(refusals)) == (5, 15), outcomes
    assert {r.result for r in refusals} == {"out_of_stock"}
    assert stock() == 0
    assert audit_findings() == []


def test_one_member_at_once_never_goes_past_the_limit() -> None:
    item(stock=None, limit_per_person=2)
    funded("volunteer:v-7", 500)

    outcomes = all_at_once([(lambda n=n: redeem(f"r-{n}")) for n in range(10)])

    assert sum(isinstance(o, Redemption) for o in outcomes) == 2
    assert {o.result for o in outcomes if isinstance(o, Refused)} == {"exceeds_limit"}
    assert points_of() == (Decimal(500), Decimal(460))


# Over HTTP


STAFF = bearer("staff", "desk")
VOLUNTEER = bearer("volunteer", "v-7")


def test_staff_keep_the_catalogue_and_everyone_signed_in_reads_it(client: FlaskClient) -> None:
    body = {"name": "Haircut at home", "kind": "service", "price": "8.00", "limit_per_person": 1}

    put = client.put("/v1/catalogue/haircut", json=body, headers=STAFF)
    listed = client.get("/v1/catalogue", headers=bearer("resident", "r-1"))
    refused_ = client.put("/v1/catalogue/haircut", json=body, headers=VOLUNTEER)

    assert put.status_code == 200
    assert (put.json["price"], put.json["stock"], put.json["limit_per_person"]) == ("8.00", None, 1)
    assert [i["id"] for i in listed.json] == ["haircut"]
    assert refused_.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Rice", "kind": "goods", "price": "0"},
        {"name": "Rice", "kind": "goods", "price": "2.005"},
        {"name": "Rice", "kind": "jewels", "price": "2"},
        {"name": "Rice", "kind": "goods", "price": "2", "stock": -1},
        {"name": "Rice", "kind": "goods", "price": "2", "limit_period_days": 30},
        {"name": "Rice", "kind": "goods", "price": "2", "available_from": "2026-12-01T09:00:00"},
        {"name": "", "kind": "goods", "price": "2"},
        {"name": "Rice", "kind": "goods", "price": "2", "colour": "white"},
    ],
)
def test_an_invalid_item_is_a_422_and_changes_nothing(
    client: FlaskClient, body: dict[str, Any]
) -> None:
    response = client.put("/v1/catalogue/rice", json=body, headers=STAFF)

    assert response.status_code == 422, response.json
    assert response.mimetype == PROBLEM
    assert client.get("/v1/catalogue", headers=STAFF).json == []


def test_a_volunteer_redeems_their_own_points_and_staff_hand_the_item_over(
    client: FlaskClient,
) -> None:
    item()
    funded("volunteer:v-7", 50)
    body = {"id": "r-1", "item_id": "rice-5kg", "holder": "volunteer:v-7", "quantity": 2}

    reserved = client.post("/v1/redemptions", json=body, headers=VOLUNTEER)
    handed = client.post("/v1/redemptions/r-1/fulfilment", headers=STAFF)
    mine = client.get("/v1/redemptions", headers=VOLUNTEER)

    assert reserved.status_code == 201
    assert (reserved.json["status"], reserved.json["points"]) == ("reserved", "40.00")
    assert reserved.json["item_name"] == "Rice, 5 kg"
    assert (handed.status_code, handed.json["status"]) == (200, "fulfilled")
    assert [r["id"] for r in mine.json] == ["r-1"]
    assert points_of() == (Decimal(10), Decimal(10))


def test_a_volunteer_cannot_spend_another_volunteers_points_nor_hand_anything_over(
    client: FlaskClient,
) -> None:
    item()
    funded("volunteer:v-8", 50)
    body = {"id": "r-1", "item_id": "rice-5kg", "holder": "volunteer:v-8"}

    theirs = client.post("/v1/redemptions", json=body, headers=VOLUNTEER)

    assert theirs.status_code == 404
    assert theirs.json["detail"] == "No account 'volunteer:v-8'"
    assert client.post("/v1/redemptions/r-1/fulfilment", headers=VOLUNTEER).status_code == 403
    assert counts() == (0, 1)


@pytest.mark.parametrize(
    ("points", "quantity", "problem"),
    [("30", 2, "exceeds-available"), ("100", 4, "out-of-stock")],
)
def test_too_few_points_or_no_stock_is_a_409_problem_saying_why(
    client: FlaskClient, points: str, quantity: int, problem: str
) -> None:
    item()
    funded("volunteer:v-7", points)
    body = {"id": "r-1", "item_id": "rice-5kg", "holder": "volunteer:v-7", "quantity": quantity}

    response = client.post("/v1/redemptions", json=body, headers=VOLUNTEER)

    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    assert response.json["type"].endswith(f"/{problem}")
    assert response.json["detail"]
    assert (stock(), counts()) == (3, (0, 1))


def test_staff_cancel_a_redemption_with_a_reason(client: FlaskClient) -> None:
    item()
    funded("volunteer:v-7", 50)
    redeem()

    without = client.post("/v1/redemptions/r-1/cancellation", json={}, headers=STAFF)
    cancelled = client.post(
        "/v1/redemptions/r-1/cancellation", json={"reason": "Out of rice"}, headers=STAFF
    )

    assert without.status_code == 422
    assert (cancelled.status_code, cancelled.json["status"]) == (200, "cancelled")
    assert stock() == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [("posting", {"amount": "1.00"}), ("posting", {}), ("voiding", {"reason": "by hand"})],
    ids=["post a part", "post all", "void"],
)
def test_a_redemptions_transfer_is_resolved_only_through_the_redemption(
    client: FlaskClient, path: str, body: dict[str, Any]
) -> None:
    item()
    funded("volunteer:v-7", 50)
    redeem()

    by_hand = client.post(f"/v1/transfers/redeem:r-1/{path}", json=body, headers=STAFF)
    handed = client.post("/v1/redemptions/r-1/fulfilment", headers=STAFF)

    assert by_hand.status_code == 409
    assert by_hand.json["type"].endswith("/owned-by-redemption")
    assert "/v1/redemptions/r-1/fulfilment" in by_hand.json["detail"]
    assert (handed.status_code, handed.json["status"]) == (200, "fulfilled")
    # The whole price was taken, once.
    assert points_of() == (Decimal(30), Decimal(30))


def test_another_members_redemption_id_is_taken_and_nothing_of_it_is_told(
    client: FlaskClient,
) -> None:
    item()
    item("oil-1l", name="Cooking oil, 1 l")
    funded("volunteer:v-7", 50)
    funded("volunteer:v-8", 50)
    redeem("r-1", holder="volunteer:v-8", operator="volunteer:v-8")
    body = {"id": "r-1", "item_id": "oil-1l", "holder": "volunteer:v-7"}

    response = client.post("/v1/redemptions", json=body, headers=VOLUNTEER)

    assert response.status_code == 409
    assert response.json["type"].endswith("/id-taken")
    assert response.json["detail"] == "Id 'r-1' is taken: redeem with a new one"
    assert "v-8" not in response.text and "rice" not in response.text.lower()
