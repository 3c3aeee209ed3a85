"""Races on the thread's busiest paths, on PostgreSQL: the cheaper paths keep their guarantees
(one assignment per request, one credit per request, no balance update lost)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import dramatiq
import pytest
from sqlalchemy import func, select

from services.dispatch import routing
from services.dispatch.actors import CONSUMERS as DISPATCH
from services.dispatch.config import runtime as dispatch_runtime
from services.dispatch.models import Assignment
from services.points import ledger
from services.points.actors import CONSUMERS as POINTS
from services.points.config import runtime as points_runtime
from services.points.models import Account, Transfer
from shared import consumers, events
from tests.support import deliver_to, message_for, staged_messages

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def at_once(consumers_: consumers.Consumers, messages: list[dramatiq.Message]) -> list[object]:
    """Deliver each message in a thread of its own, all at once; what each returned or raised."""
    start = threading.Barrier(len(messages))
    outcomes: list[object] = []

    def run(message: dramatiq.Message) -> None:
        start.wait(timeout=10)
        try:
            outcomes.append(deliver_to(consumers_, message))
        except Exception as error:
            outcomes.append(error)

    threads = [threading.Thread(target=run, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == len(messages), "a delivery did not finish"
    return outcomes


def submitted(request_id: str) -> Callable[[], dramatiq.Message]:
    return lambda: message_for(
        events.REQUEST_SUBMITTED,
        {
            "request_id": request_id,
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


def confirmed(request_id: str, volunteer_id: str = "v1") -> dramatiq.Message:
    return message_for(
        events.REQUEST_CONFIRMED,
        {
            "request_id": request_id,
            "category": "knife_sharpening",
            "resident_id": "r-501",
            "volunteer_id": volunteer_id,
            "hours": Decimal("1.5"),
            "confirmed_by": "resident:r-501",
            "accepted_by": f"volunteer:{volunteer_id}",
            "completed_by": f"volunteer:{volunteer_id}",
            "confirmed_at": NOW,
        },
        to="points",
    )


def test_one_request_submitted_in_several_messages_at_once_is_assigned_once() -> None:
    with dispatch_runtime().db.transaction() as session:
        routing.register_volunteer(session, name="Lao Zhang", volunteer_id="v1")
        routing.add_routing_rule(session, category="knife_sharpening", volunteer_id="v1")
    message = submitted(uuid.uuid4().hex)

    outcomes = at_once(DISPATCH, [message() for _ in range(4)])

    assert outcomes == [True] * 4
    with dispatch_runtime().db.read() as session:
        assert session.scalar(select(func.count()).select_from(Assignment)) == 1
    assert len(staged_messages(dispatch_runtime(), events.REQUEST_ASSIGNED)) == 1


@pytest.fixture
def bank_with_accounts() -> None:
    """A rate, and the accounts a credit moves points between, already open."""
    with points_runtime().db.transaction() as session:
        ledger.set_rate(session, category="knife_sharpening", points_per_hour=Decimal("10"))
        ledger.open_account(session, holder=ledger.ISSUANCE_HOLDER, kind="issuance")
        ledger.open_account(session, holder=ledger.volunteer_holder("v1"))


def balance_of(holder: str) -> Decimal:
    with points_runtime().db.read() as session:
        return session.scalars(select(Account.balance).filter_by(holder=holder)).one()


@pytest.mark.usefixtures("bank_with_accounts")
def test_one_request_confirmed_in_several_messages_at_once_is_credited_once() -> None:
    request_id = uuid.uuid4().hex

    outcomes = at_once(POINTS, [confirmed(request_id) for _ in range(4)])

    assert outcomes == [True] * 4
    with points_runtime().db.read() as session:
        assert session.scalar(select(func.count()).select_from(Transfer)) == 1
    assert balance_of("volunteer:v1") == Decimal("15.00")
    assert balance_of(ledger.ISSUANCE_HOLDER) == Decimal("-15.00")


@pytest.mark.usefixtures("bank_with_accounts")
def test_credits_of_many_requests_at_once_lose_no_balance_update() -> None:
    outcomes = at_once(POINTS, [confirmed(uuid.uuid4().hex) for _ in range(6)])

    assert outcomes == [True] * 6
    assert balance_of("volunteer:v1") == Decimal("90.00")
    assert balance_of(ledger.ISSUANCE_HOLDER) == Decimal("-90.00")
