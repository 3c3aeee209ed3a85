"""The kinds of notification: their fields, sample data, and the checks where they are
published and where they are consumed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from shared.database import Database
from shared.events import NOTIFICATION_REQUESTED, ContractError
from shared.messaging import Messaging
from shared.notifications import (
    ASSIGNMENT_CREATED,
    KINDS,
    POINTS_CREDITED,
    REQUEST_ACCEPTED,
    NotificationError,
    NotificationKind,
    kind_of,
)

RESIDENT = "resident:r-501"
ACCEPTED = {
    "request_id": "req-778",
    "volunteer_name": "Wang Jun",
    "category": "knife_sharpening",
    "summary": "Two knives",
}
CREDITED: dict[str, Any] = {
    "request_id": "req-778",
    "points": Decimal("15"),
    "balance": Decimal("135.5"),
    "hours": "1.50",
    "category": "knife_sharpening",
}
WITHOUT_SUMMARY = {name: value for name, value in ACCEPTED.items() if name != "summary"}


def requested(template: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"recipient": RESIDENT, "template": template, "data": data}


# Sample data


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_a_sample_carries_every_field_of_its_kind_and_passes_its_strict_check(
    kind: NotificationKind,
) -> None:
    sample = kind.sample()

    assert set(sample) == kind.fields
    assert kind.check(sample, strict=True) == sample


def test_a_sample_holds_decimals_as_the_strings_notify_receives() -> None:
    sample = POINTS_CREDITED.sample()

    for name in ("points", "balance", "hours"):
        assert isinstance(sample[name], str)
        assert Decimal(sample[name]).is_finite()
    assert isinstance(sample["category"], str)


def test_a_sample_fills_the_fields_of_a_nested_location() -> None:
    location = ASSIGNMENT_CREATED.sample()["location"]

    assert set(location) == {"community", "building", "unit", "household"}
    assert all(isinstance(value, str) and value for value in location.values())


# Checking data against a kind


def test_check_gives_the_data_in_its_json_ready_form() -> None:
    assert POINTS_CREDITED.check(CREDITED) == {
        "request_id": "req-778",
        "points": "15",
        "balance": "135.5",
        "hours": "1.50",
        "category": "knife_sharpening",
    }


def test_a_field_the_kind_does_not_declare_is_refused_when_strict() -> None:
    with pytest.raises(NotificationError) as refused:
        REQUEST_ACCEPTED.check({**ACCEPTED, "volunteer_phone": "555-0101"}, strict=True)

    assert refused.value.kind == "request.accepted"
    assert refused.value.messages == {"volunteer_phone": ["Unknown field."]}


def test_a_field_the_kind_does_not_declare_is_dropped_when_tolerant() -> None:
    checked = REQUEST_ACCEPTED.check({**ACCEPTED, "volunteer_phone": "555-0101"}, strict=False)

    assert checked == ACCEPTED


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "tolerant"])
def test_a_missing_field_is_refused_either_way(strict: bool) -> None:
    with pytest.raises(NotificationError) as refused:
        REQUEST_ACCEPTED.check(WITHOUT_SUMMARY, strict=strict)

    assert refused.value.messages == {"summary": ["Missing data for required field."]}


@pytest.mark.parametrize("points", ["lots", "NaN", None], ids=["a word", "nan", "null"])
def test_a_value_of_the_wrong_type_is_refused(points: Any) -> None:
    with pytest.raises(NotificationError) as refused:
        POINTS_CREDITED.check({**CREDITED, "points": points})

    assert set(refused.value.messages) == {"points"}


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(NotificationError, match=r"request\.declined") as refused:
        kind_of("request.declined")

    assert all(key in str(refused.value) for key in KINDS)


# Where a notification is published


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[tuple[Database, Messaging]]:
    metadata = MetaData()
    messaging = Messaging(metadata)
    db = Database(f"sqlite:///{tmp_path}/publisher.db")
    metadata.create_all(db.engine)
    yield db, messaging
    db.dispose()


def staged(db: Database, messaging: Messaging) -> list[dict[str, Any]]:
    with db.read() as session:
        return [dict(row.payload) for row in session.execute(select(messaging.outbox))]


def test_notify_stages_a_notification_of_its_kind_in_the_outbox(
    outbox: tuple[Database, Messaging],
) -> None:
    db, messaging = outbox

    with db.transaction() as session:
        messaging.notify(session, POINTS_CREDITED, recipient="volunteer:v-17", **CREDITED)

    assert staged(db, messaging) == [
        {
            "recipient": "volunteer:v-17",
            "template": "points.credited",
            "channel": "inbox",
            "data": POINTS_CREDITED.check(CREDITED),
        }
    ]


@pytest.mark.parametrize(
    ("kind", "fields", "wrong"),
    [
        (REQUEST_ACCEPTED, {**ACCEPTED, "volunteer_phone": "555-0101"}, "volunteer_phone"),
        (REQUEST_ACCEPTED, WITHOUT_SUMMARY, "summary"),
        (POINTS_CREDITED, {**CREDITED, "points": "lots"}, "points"),
    ],
    ids=["a field the kind lacks", "a missing field", "a field of the wrong type"],
)
def test_notify_with_data_that_does_not_fit_its_kind_fails_where_it_publishes(
    outbox: tuple[Database, Messaging], kind: NotificationKind, fields: dict[str, Any], wrong: str
) -> None:
    db, messaging = outbox

    with pytest.raises(ContractError) as refused, db.transaction() as session:
        messaging.notify(session, kind, recipient=RESIDENT, **fields)

    assert refused.value.event == "notification.requested"
    assert set(refused.value.messages["data"]) == {wrong}
    assert staged(db, messaging) == []


@pytest.mark.parametrize(
    ("data", "wrong"),
    [
        ({**ACCEPTED, "volunteer_phone": "555-0101"}, "volunteer_phone"),
        (WITHOUT_SUMMARY, "summary"),
        ({**ACCEPTED, "summary": 42}, "summary"),
    ],
    ids=["a field the kind lacks", "a missing field", "a field of the wrong type"],
)
def test_an_outgoing_notification_whose_data_does_not_fit_its_kind_is_refused(
    data: dict[str, Any], wrong: str
) -> None:
    with pytest.raises(ContractError) as refused:
        NOTIFICATION_REQUESTED.validate_outgoing(requested("request.accepted", data))

    assert set(refused.value.messages["data"]) == {wrong}


def test_an_outgoing_notification_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ContractError) as refused:
        NOTIFICATION_REQUESTED.validate_outgoing(requested("request.declined", ACCEPTED))

    assert set(refused.value.messages) == {"template"}


# Where a notification is consumed


def test_an_incoming_notification_ignores_data_fields_a_newer_publisher_added() -> None:
    read = NOTIFICATION_REQUESTED.read_incoming(
        requested("request.accepted", {**ACCEPTED, "volunteer_phone": "555-0101"})
    )

    assert read["data"] == ACCEPTED


def test_an_incoming_notification_missing_a_field_of_its_kind_is_refused() -> None:
    with pytest.raises(ContractError) as refused:
        NOTIFICATION_REQUESTED.read_incoming(requested("request.accepted", WITHOUT_SUMMARY))

    assert refused.value.messages == {"data": {"summary": ["Missing data for required field."]}}
