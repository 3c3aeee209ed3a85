"""How many SQL statements the thread's busiest paths take: a POST through intake's door, and
each consumer it sets going. A count is deterministic where a time is not, so these budgets
keep what was cut from coming back unnoticed.

Only each path's own statements are counted: a transaction's BEGIN (shared/database.py), the
inbox claim and the outbox rows with what announces them (shared/messaging.py) are budgeted
where they are written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from services.dispatch import routing
from services.dispatch.actors import CONSUMERS as DISPATCH
from services.dispatch.config import runtime as dispatch_runtime
from services.intake import directory
from services.intake.actors import CONSUMERS as INTAKE
from services.intake.app import create_app
from services.intake.config import runtime as intake_runtime
from services.intake.tests.builders import a_category, a_request, a_resident, request_body
from services.notify import delivery
from services.notify.actors import CONSUMERS as NOTIFY
from services.notify.config import runtime as notify_runtime
from services.points import ledger
from services.points.actors import CONSUMERS as POINTS
from services.points.config import runtime as points_runtime
from shared import events, notifications
from shared.runtime import ServiceRuntime
from tests.support import deliver_to, message_for

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
_NOT_THE_PATHS_OWN = re.compile(
    r"\s*(BEGIN\b|INSERT INTO inbox\b|INSERT INTO outbox\b|SELECT pg_notify\b)", re.IGNORECASE
)


@contextmanager
def statements_of(runtime: ServiceRuntime) -> Iterator[list[str]]:
    """Every statement sent to the service's database inside the block, as its SQL text."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    engines = {runtime.db.engine, runtime.db.readers.kw["bind"]}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def own(sent: list[str]) -> list[str]:
    return [
        " ".join(statement.split()) for statement in sent if not _NOT_THE_PATHS_OWN.match(statement)
    ]


def assert_within(sent: list[str], budget: int) -> None:
    counted = own(sent)
    assert len(counted) <= budget, "\n".join([f"{len(counted)} statements:", *counted])


# intake's door


@pytest.fixture
def door() -> tuple[Any, str, str]:
    """A client of intake, an API key (already known to its cache) and a resident."""
    with intake_runtime().db.transaction() as session:
        a_category(session)
        resident_id = a_resident(session).id
        _, key = directory.create_api_client(session, name="city-hotline")
    client = create_app().test_client()
    # The first use of a key reads it; later ones find it in the process's cache.
    assert post(client, key, resident_id).status_code == 201
    return client, key, resident_id


def post(client: Any, key: str, resident_id: str, idempotency_key: str | None = None) -> Any:
    headers = {"X-API-Key": key}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return client.post("/v1/requests", json=request_body(resident_id), headers=headers)


def test_a_post_with_an_idempotency_key_takes_four_statements_of_its_own(door) -> None:
    client, key, resident_id = door
    with statements_of(intake_runtime()) as sent:
        response = post(client, key, resident_id, idempotency_key=uuid.uuid4().hex)
    assert response.status_code == 201
    # The category and the resident's home in one read; the request, its first timeline
    # entry and the key's answer in one INSERT each.
    assert_within(sent, 4)


def test_a_post_without_an_idempotency_key_takes_three_statements_of_its_own(door) -> None:
    client, key, resident_id = door
    with statements_of(intake_runtime()) as sent:
        response = post(client, key, resident_id)
    assert response.status_code == 201
    assert_within(sent, 3)


def test_a_post_reads_the_catalogue_and_the_grid_once_and_writes_no_row_twice(door) -> None:
    client, key, resident_id = door
    with statements_of(intake_runtime()) as sent:
        post(client, key, resident_id, idempotency_key=uuid.uuid4().hex)
    counted = own(sent)
    assert [s.split(" (")[0] for s in counted if s.startswith("INSERT")] == [
        "INSERT INTO requests",
        "INSERT INTO request_timeline",
        "INSERT INTO idempotency_keys",
    ]
    assert not any(s.startswith("UPDATE") for s in counted)


# The consumers on the thread's path


def test_routing_a_submitted_request_takes_two_statements_of_its_own() -> None:
    with dispatch_runtime().db.transaction() as session:
        routing.register_volunteer(session, name="Lao Zhang", volunteer_id="v1")
        routing.add_routing_rule(session, category="knife_sharpening", volunteer_id="v1")
    message = message_for(
        events.REQUEST_SUBMITTED,
        {
            "request_id": uuid.uuid4().hex,
            "category": "knife_sharpening",
            "priority": "normal",
            "summary": "Two kitchen knives",
            "resident_id": "r-501",
            "location": {
                "community": "changshan-garden",
                "building": "3",
                "unit": "2",
                "household": "501",
            },
            "submitted_at": NOW,
        },
    )
    with statements_of(dispatch_runtime()) as sent:
        assert deliver_to(DISPATCH, message)
    # The route, and the assignment inserted unless the request has one already.
    assert_within(sent, 2)


@pytest.mark.parametrize(
    ("event", "news"),
    [
        (
            events.REQUEST_ASSIGNED,
            {
                "assignment_id": "a1",
                "assignee_type": "volunteer",
                "assignee_id": "v1",
                "assignee_name": "Lao Zhang",
                "assigned_at": NOW,
            },
        ),
        (
            events.REQUEST_ACCEPTED,
            {
                "assignment_id": "a1",
                "volunteer_id": "v1",
                "accepted_by": "volunteer:v1",
                "accepted_at": NOW,
            },
        ),
        (
            events.REQUEST_COMPLETED,
            {
                "assignment_id": "a1",
                "volunteer_id": "v1",
                "hours": Decimal("1.5"),
                "completed_by": "volunteer:v1",
                "completed_at": NOW,
            },
        ),
    ],
)
def test_following_dispatchs_news_takes_three_statements_of_its_own(
    event: events.Event, news: dict[str, Any]
) -> None:
    with intake_runtime().db.transaction() as session:
        request_id = a_request(session).id
    with statements_of(intake_runtime()) as sent:
        assert deliver_to(
            INTAKE, message_for(event, {"request_id": request_id, **news}, to="intake")
        )
    # The request read and locked (not its timeline), updated, and one timeline entry.
    assert_within(sent, 3)


def test_a_notification_takes_three_statements_of_its_own() -> None:
    with notify_runtime().db.transaction() as session:
        delivery.ensure_default_templates(session)
    message = message_for(
        events.NOTIFICATION_REQUESTED,
        {
            "recipient": "resident:r-501",
            "template": notifications.REQUEST_ACCEPTED.key,
            "channel": "inbox",
            "data": {
                "request_id": "r1",
                "volunteer_name": "Lao Zhang",
                "category": "knife_sharpening",
                "summary": "Two kitchen knives",
            },
        },
    )
    with statements_of(notify_runtime()) as sent:
        assert deliver_to(NOTIFY, message)
    # The template and whether the message was delivered in one read, then the inbox message
    # and the delivery log.
    assert_within(sent, 3)


def test_crediting_confirmed_hours_takes_six_statements_of_its_own() -> None:
    with points_runtime().db.transaction() as session:
        ledger.set_rate(session, category="knife_sharpening", points_per_hour=Decimal("10"))
        ledger.open_account(session, holder=ledger.ISSUANCE_HOLDER, kind="issuance")
        ledger.open_account(session, holder=ledger.volunteer_holder("v1"))
    message = message_for(
        events.REQUEST_CONFIRMED,
        {
            "request_id": uuid.uuid4().hex,
            "category": "knife_sharpening",
            "resident_id": "r-501",
            "volunteer_id": "v1",
            "hours": Decimal("1.5"),
            "confirmed_by": "resident:r-501",
            "accepted_by": "volunteer:v1",
            "completed_by": "volunteer:v1",
            "confirmed_at": NOW,
        },
        to="points",
    )
    with statements_of(points_runtime()) as sent:
        assert deliver_to(POINTS, message)
    # Both accounts locked in one read, the transfer looked for, the rate; the transfer, its
    # two entries in one INSERT, and both balances in one UPDATE.
    assert_within(sent, 6)
