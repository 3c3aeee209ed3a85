"""Members give their own points: donations to the community pool, gifts to recorded family
within limits, and the pool paying staff-named community work; what cannot be given changes
nothing and says why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.points import catalogue, giving
from services.points.config import runtime
from services.points.giving import GivingPolicy
from services.points.ledger import POOL_HOLDER, Refused, TransferExists
from services.points.models import GIFT, GOODS, FamilyLink, Transfer
from services.points.tests.builders import (
    account,
    all_at_once,
    audit_findings,
    balance,
    bearer,
    funded,
    refused,
    transfer,
    transfers,
)
from shared import clock
from shared.errors import Invalid, NotFound

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = GivingPolicy(max_gift=Decimal(50), max_gifts_per_period=Decimal(80))
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


def donate(donation_id: str = "d-1", holder: str = "volunteer:v-7", **fields: Any) -> Transfer:
    values: dict[str, Any] = {"amount": Decimal(5), "operator": holder, **fields}
    with runtime().db.transaction() as session:
        return giving.donate(session, donation_id=donation_id, holder=holder, **values)


def give(
    gift_id: str = "g-1",
    holder: str = "volunteer:v-7",
    relative: str = "household:h-501",
    **fields: Any,
) -> Transfer:
    values: dict[str, Any] = {"amount": Decimal(10), "operator": holder, "policy": POLICY, **fields}
    with runtime().db.transaction() as session:
        return giving.give(session, gift_id=gift_id, holder=holder, relative=relative, **values)


def family(
    holder: str = "volunteer:v-7", relative: str = "household:h-501", relation: str = "mother"
) -> FamilyLink:
    with runtime().db.transaction() as session:
        return giving.record_relative(
            session, holder=holder, relative=relative, relation=relation, recorded_by="staff:s-1"
        )


def family_of(holder: str = "volunteer:v-7") -> list[tuple[str, str]]:
    with runtime().db.read() as session:
        return [
            (link.relative, link.relation) for link in giving.list_family(session, holder=holder)
        ]


# Donations


def test_a_volunteer_donates_points_to_the_community_pool() -> None:
    funded("volunteer:v-7", 20)

    donated = donate(amount=Decimal("7.50"))

    assert (donated.id, donated.kind, donated.debit, donated.credit) == (
        "donate:d-1",
        "donate",
        "volunteer:v-7",
        POOL_HOLDER,
    )
    assert donated.memo == "Donated to the community pool"
    assert (balance("volunteer:v-7"), balance(POOL_HOLDER)) == (Decimal("12.50"), Decimal("7.50"))
    assert audit_findings() == []


def test_a_donation_asked_for_again_is_the_same_one_and_with_other_fields_is_refused() -> None:
    funded("volunteer:v-7", 20)
    first = donate()

    again = donate()
    error = refused(lambda: donate(amount=Decimal(6)))

    assert again.id == first.id and len(transfers()) == 2
    assert isinstance(error, TransferExists) and error.result == "exists_with_different_amount"
    assert balance(POOL_HOLDER) == Decimal(5)


def test_an_id_another_member_gave_with_is_refused_without_naming_them() -> None:
    funded("volunteer:v-7", 20)
    funded("volunteer:v-8", 20)
    donate("d-1", holder="volunteer:v-8")

    error = refused(lambda: donate("d-1", holder="volunteer:v-7"))

    assert isinstance(error, Refused) and error.result == "id_taken"
    assert "v-8" not in error.detail
    assert balance("volunteer:v-7") == Decimal(20)


def test_points_a_redemption_holds_cannot_be_donated_and_nothing_changes() -> None:
    funded("volunteer:v-7", 20)
    with runtime().db.transaction() as session:
        catalogue.put_item(session, item_id="rice", name="Rice", kind=GOODS, price=Decimal(15))
        catalogue.redeem(session, redemption_id="r-1", item_id="rice", holder="volunteer:v-7")

    error = refused(lambda: donate(amount=Decimal(6)))

    assert isinstance(error, Refused) and error.result == "exceeds_available"
    assert "has 5.00 points available" in error.detail
    assert balance(POOL_HOLDER) is None


@pytest.mark.parametrize(
    ("holder", "fields", "field"),
    [
        (POOL_HOLDER, {}, "holder"),
        ("resident:r-1", {}, "holder"),
        ("volunteer:v-7", {"amount": Decimal(0)}, "amount"),
        ("volunteer:v-7", {"amount": Decimal("0.001")}, "amount"),
    ],
)
def test_a_donation_that_is_not_one_is_refused(
    holder: str, fields: dict[str, Any], field: str
) -> None:
    funded("volunteer:v-7", 20)

    error = refused(lambda: donate(holder=holder, **fields))

    assert isinstance(error, Invalid) and error.extra["field"] == field


# Gifts


def test_a_volunteer_gives_points_to_family_the_office_recorded() -> None:
    funded("volunteer:v-7", 30)
    family()

    gift = give(amount=Decimal(12), memo="For the new year")

    assert (gift.id, gift.kind, gift.credit, gift.memo) == (
        "gift:g-1",
        GIFT,
        "household:h-501",
        "For the new year",
    )
    assert (balance("volunteer:v-7"), balance("household:h-501")) == (Decimal(18), Decimal(12))


def test_a_gift_to_someone_not_recorded_as_family_is_refused_and_nothing_changes() -> None:
    funded("volunteer:v-7", 30)
    family(relative="volunteer:v-8")

    error = refused(lambda: give(relative="volunteer:v-9"))

    assert isinstance(error, Refused) and error.result == "not_family"
    assert error.extra["field"] == "to"
    assert balance("volunteer:v-9") is None and balance("volunteer:v-7") == Decimal(30)


def test_a_gift_over_the_limit_of_one_gift_is_invalid() -> None:
    funded("volunteer:v-7", 100)
    family()

    error = refused(lambda: give(amount=Decimal("50.01")))

    assert isinstance(error, Invalid) and "at most 50" in error.detail


def test_gifts_past_the_limit_of_a_period_are_refused_until_the_period_has_passed() -> None:
    funded("volunteer:v-7", 200)
    family()
    give("g-1", amount=Decimal(50))
    clock.advance(timedelta(days=10))
    give("g-2", amount=Decimal(30))

    error = refused(lambda: give("g-3", amount=Decimal("0.01")))
    clock.advance(timedelta(days=20, seconds=1))
    third = give("g-3", amount=Decimal(40))

    assert isinstance(error, Refused) and error.result == "exceeds_gift_limit"
    assert "gave 80.00 points in the last 30 days" in error.detail
    assert third.amount == Decimal(40)
    assert balance("household:h-501") == Decimal(120)


def test_a_gift_cannot_spend_what_the_giver_has_not() -> None:
    funded("volunteer:v-7", 5)
    family()

    error = refused(lambda: give(amount=Decimal(6)))

    assert isinstance(error, Refused) and error.result == "exceeds_available"


@pytest.mark.postgres
def test_gifts_given_all_at_once_never_pass_the_limit_together() -> None:
    funded("volunteer:v-7", 500)
    family()

    outcomes = all_at_once(
        [lambda number=number: give(f"g-{number}", amount=Decimal(20)) for number in range(10)]
    )

    given = [outcome for outcome in outcomes if isinstance(outcome, Transfer)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, Refused)]
    assert len(given) == 4 and len(refusals) == 6
    assert {refusal.result for refusal in refusals} == {"exceeds_gift_limit"}
    assert balance("household:h-501") == Decimal(80)
    assert audit_findings() == []


# The family register


def test_staff_record_family_say_anew_how_they_are_related_and_forget_them() -> None:
    family(relative="household:h-501", relation="mother")
    family(relative="volunteer:v-8", relation="son")
    family(relative="household:h-501", relation="grandmother")

    listed = family_of()
    with runtime().db.transaction() as session:
        giving.forget_relative(session, holder="volunteer:v-7", relative="volunteer:v-8")

    assert listed == [("household:h-501", "grandmother"), ("volunteer:v-8", "son")]
    assert family_of() == [("household:h-501", "grandmother")]
    assert family_of("volunteer:v-8") == []


@pytest.mark.parametrize(
    ("holder", "relative", "relation", "field"),
    [
        ("volunteer:v-7", "volunteer:v-7", "self", "relative"),
        ("volunteer:v-7", POOL_HOLDER, "pool", "relative"),
        ("bank:issuance", "volunteer:v-7", "bank", "holder"),
        ("volunteer:v-7", "volunteer:v-8", "   ", "relation"),
        ("volunteer:v-7", "volunteer:v-8", "x" * 51, "relation"),
    ],
)
def test_family_that_is_none_is_refused(
    holder: str, relative: str, relation: str, field: str
) -> None:
    error = refused(lambda: family(holder, relative, relation))

    assert isinstance(error, Invalid) and error.extra["field"] == field


def test_forgetting_family_never_recorded_is_not_found() -> None:
    with runtime().db.transaction() as session:
        error = refused(
            lambda: giving.forget_relative(
                session, holder="volunteer:v-7", relative="volunteer:v-8"
            )
        )

    assert isinstance(error, NotFound)


# The pool pays for community-wide work


def test_the_pool_pays_a_volunteer_for_community_work_staff_name() -> None:
    funded("volunteer:v-7", 20)
    donate(amount=Decimal(15))

    paid = transfer(
        id="pool:square-clean-up",
        kind=GIFT,
        debit=POOL_HOLDER,
        credit="volunteer:v-9",
        amount="12",
        reason="Cleaning the leisure square after the festival",
    )

    assert (paid.debit, paid.credit, paid.reason) == (
        POOL_HOLDER,
        "volunteer:v-9",
        "Cleaning the leisure square after the festival",
    )
    assert (balance(POOL_HOLDER), balance("volunteer:v-9")) == (Decimal(3), Decimal(12))


def test_the_pool_pays_nothing_without_a_reason_nor_more_than_it_holds() -> None:
    funded("volunteer:v-7", 20)
    donate(amount=Decimal(5))
    pays: Callable[..., Transfer] = lambda **fields: transfer(  # noqa: E731
        kind=GIFT, debit=POOL_HOLDER, credit="volunteer:v-9", **fields
    )

    unexplained = refused(lambda: pays(amount="1", reason=None))
    too_much = refused(lambda: pays(amount="6", reason="Snow clearing"))

    assert isinstance(unexplained, Invalid) and unexplained.extra["field"] == "reason"
    assert isinstance(too_much, Refused) and too_much.result == "exceeds_available"
    assert balance(POOL_HOLDER) == Decimal(5)


# Over HTTP


VOLUNTEER = bearer("volunteer", "v-7")
STAFF = bearer("staff", "s-1")


def test_a_volunteer_donates_their_own_points_over_http(client: FlaskClient) -> None:
    funded("volunteer:v-7", 20)

    response = client.post(
        "/v1/accounts/volunteer:v-7/donations",
        json={"id": "d-1", "amount": "4.00", "memo": "给社区"},
        headers=VOLUNTEER,
    )

    assert response.status_code == 201
    body = response.json
    assert (body["id"], body["kind"], body["amount"], body["memo"]) == (
        "donate:d-1",
        "donate",
        "4.00",
        "给社区",
    )
    assert body["operator"] == "volunteer:v-7"
    assert account("volunteer:v-7").available == Decimal(16)


def test_a_volunteer_cannot_give_away_another_volunteers_points(client: FlaskClient) -> None:
    funded("volunteer:v-8", 20)
    family("volunteer:v-8", "volunteer:v-7")

    donation = client.post(
        "/v1/accounts/volunteer:v-8/donations", json={"id": "d-1", "amount": "4"}, headers=VOLUNTEER
    )
    gift = client.post(
        "/v1/accounts/volunteer:v-8/gifts",
        json={"id": "g-1", "to": "volunteer:v-7", "amount": "4"},
        headers=VOLUNTEER,
    )

    assert (donation.status_code, gift.status_code) == (404, 404)
    assert donation.json["detail"] == gift.json["detail"] == "No account 'volunteer:v-8'"
    assert balance("volunteer:v-8") == Decimal(20)


def test_staff_give_a_members_points_at_the_desk_on_their_word(client: FlaskClient) -> None:
    funded("household:h-501", 20)
    family("household:h-501", "volunteer:v-7", relation="daughter")

    response = client.post(
        "/v1/accounts/household:h-501/gifts",
        json={"id": "g-1", "to": "volunteer:v-7", "amount": "3"},
        headers=STAFF,
    )

    assert response.status_code == 201
    assert response.json["operator"] == "staff:s-1"
    assert balance("volunteer:v-7") == Decimal(3)


def test_a_gift_to_someone_who_is_not_family_is_a_409_problem_naming_the_field(
    client: FlaskClient,
) -> None:
    funded("volunteer:v-7", 20)

    response = client.post(
        "/v1/accounts/volunteer:v-7/gifts",
        json={"id": "g-1", "to": "volunteer:v-9", "amount": "3"},
        headers=VOLUNTEER,
    )

    assert response.status_code == 409
    assert response.mimetype == PROBLEM
    assert response.json["field"] == "to"
    assert response.json["type"].endswith("/not-family")
    assert balance("volunteer:v-7") == Decimal(20)


def test_residents_neither_donate_nor_give(client: FlaskClient) -> None:
    resident = bearer("resident", "r-1")

    response = client.post(
        "/v1/accounts/volunteer:v-7/donations", json={"id": "d-1", "amount": "1"}, headers=resident
    )

    assert response.status_code == 403


def test_staff_keep_the_family_register_and_a_volunteer_reads_their_own(
    client: FlaskClient,
) -> None:
    recorded = client.put(
        "/v1/accounts/volunteer:v-7/family/household:h-501",
        json={"relation": "母亲"},
        headers=STAFF,
    )
    by_volunteer = client.put(
        "/v1/accounts/volunteer:v-7/family/volunteer:v-9",
        json={"relation": "friend"},
        headers=VOLUNTEER,
    )
    listed = client.get("/v1/accounts/volunteer:v-7/family", headers=VOLUNTEER)
    forgotten = client.delete("/v1/accounts/volunteer:v-7/family/household:h-501", headers=STAFF)
    again = client.delete("/v1/accounts/volunteer:v-7/family/household:h-501", headers=STAFF)

    assert recorded.status_code == 200
    assert (recorded.json["relation"], recorded.json["recorded_by"]) == ("母亲", "staff:s-1")
    assert by_volunteer.status_code == 403
    assert [link["relative"] for link in listed.json] == ["household:h-501"]
    assert (forgotten.status_code, again.status_code) == (200, 404)
    assert forgotten.json["relation"] == "母亲"
    assert family_of() == []


@pytest.mark.parametrize("relation", ["   ", "mo\x07ther", "mother\u202e", "mo\nther"])
def test_a_relation_that_cannot_be_read_is_a_422_and_nothing_is_recorded(
    client: FlaskClient, relation: str
) -> None:
    response = client.put(
        "/v1/accounts/volunteer:v-7/family/household:h-501",
        json={"relation": relation},
        headers=STAFF,
    )

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["relation"]
    assert family_of() == []


def test_the_pool_pays_out_over_http_only_with_a_reason(client: FlaskClient) -> None:
    funded("volunteer:v-7", 20)
    donate(amount=Decimal(10))
    body = {"id": "pool-1", "kind": "gift", "debit": POOL_HOLDER, "credit": "volunteer:v-9"}

    unexplained = client.post("/v1/transfers", json={**body, "amount": "2"}, headers=STAFF)
    paid = client.post(
        "/v1/transfers",
        json={**body, "amount": "2", "reason": "Snow clearing on the main path"},
        headers=STAFF,
    )
    by_volunteer = client.post(
        "/v1/transfers",
        json={**body, "id": "pool-2", "amount": "2", "reason": "Me"},
        headers=VOLUNTEER,
    )

    assert unexplained.status_code == 422 and unexplained.json["field"] == "reason"
    assert paid.status_code == 201 and paid.json["debit"] == POOL_HOLDER
    assert by_volunteer.status_code == 403
    assert balance(POOL_HOLDER) == Decimal(8)
