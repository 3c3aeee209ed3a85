"""Small builders for points' tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from services.points import audit, earning, ledger
from services.points.config import runtime
from services.points.ledger import ISSUANCE_HOLDER, TransferOrder
from services.points.models import ADJUST, Account, Entry, Transfer, timers
from shared.auth import issue_token
from shared.errors import DomainError
from shared.scheduler import Firing, Scheduler

STAFF = "staff:duty-officer"


def rates(**points_per_hour: str | int) -> None:
    """Set earning rates, e.g. ``rates(knife_sharpening=10)``."""
    with runtime().db.transaction() as session:
        for category, points in points_per_hour.items():
            ledger.set_rate(session, category=category, points_per_hour=Decimal(points))


def confirmed(**fields: Any) -> dict[str, Any]:
    """A ``request.confirmed`` payload, as intake publishes it."""
    return {
        "request_id": uuid.uuid4().hex,
        "category": "knife_sharpening",
        "resident_id": "r-501",
        "volunteer_id": "v-7",
        "hours": "1.50",
        "confirmed_by": "resident:r-501",
        "accepted_by": "volunteer:v-7",
        "completed_by": "volunteer:v-7",
        "confirmed_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def completed(**fields: Any) -> dict[str, Any]:
    """A ``request.completed`` payload, as dispatch publishes it."""
    return {
        "request_id": uuid.uuid4().hex,
        "assignment_id": uuid.uuid4().hex,
        "volunteer_id": "v-7",
        "category": "knife_sharpening",
        "hours": "1.50",
        "completed_by": "volunteer:v-7",
        "completed_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def credit(
    *,
    request_id: str | None = None,
    volunteer_id: str = "v-7",
    category: str = "knife_sharpening",
    hours: str = "1.50",
) -> Transfer:
    """Credit confirmed hours at once, as a confirmation that finds no pending earning does."""
    with runtime().db.transaction() as session:
        return earning.credit_earned_points(
            session,
            request_id=request_id or uuid.uuid4().hex,
            volunteer_id=volunteer_id,
            category=category,
            hours=Decimal(hours),
        )


def order(**fields: Any) -> TransferOrder:
    """A transfer order: by default staff adjusting 10 points into volunteer v-7's account."""
    values: dict[str, Any] = {
        "id": f"t-{uuid.uuid4().hex[:12]}",
        "kind": ADJUST,
        "debit": ISSUANCE_HOLDER,
        "credit": "volunteer:v-7",
        "amount": Decimal("10.00"),
        "operator": STAFF,
        "reason": "Opening balance",
        **fields,
    }
    values["amount"] = Decimal(values["amount"])
    return TransferOrder(**values)


def transfer(**fields: Any) -> Transfer:
    """Write a transfer (see ``order``) in a transaction of its own."""
    with runtime().db.transaction() as session:
        return ledger.create_transfer(session, order=order(**fields))


def funded(holder: str, amount: str | int) -> Transfer:
    """Give ``holder`` points from the issuance account."""
    return transfer(credit=holder, amount=Decimal(amount), reason=f"Funds {holder} for a test")


def balance(holder: str) -> Decimal | None:
    with runtime().db.read() as session:
        account = session.scalars(select(Account).filter_by(holder=holder)).first()
        return account.balance if account is not None else None


def account(holder: str) -> Account:
    with runtime().db.read() as session:
        return ledger.get_account(session, holder)


def entries_total(holder: str | None = None) -> Decimal:
    """The sum of all entries, or of one holder's."""
    query = select(func.coalesce(func.sum(Entry.amount), 0))
    if holder is not None:
        query = query.join(Account, Entry.account_id == Account.id).where(Account.holder == holder)
    with runtime().db.read() as session:
        return Decimal(session.scalar(query) or 0).quantize(Decimal("0.01"))


def transfers() -> list[Transfer]:
    with runtime().db.read() as session:
        return list(session.scalars(select(Transfer).order_by(Transfer.created_at, Transfer.id)))


def stored(transfer_id: str) -> Transfer:
    with runtime().db.read() as session:
        return ledger.get_transfer(session, transfer_id)


def audit_findings() -> list[audit.Finding]:
    with runtime().db.read() as session:
        return audit.audit_ledger(session)


def fire_due_timers() -> list[Firing]:
    """What points' scheduler would fire now (the tests hold the clock)."""
    return Scheduler(service="points", db=runtime().db, timers=timers).fire_due()


def refused(call: Callable[[], Any]) -> DomainError:
    """What ``call`` was refused with."""
    with pytest.raises(DomainError) as raised:
        call()
    return raised.value


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in a thread of its own, all released together; what each returned or
    raised."""
    start = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        start.wait(timeout=30)
        try:
            outcomes[index] = call()
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a call did not finish"
    return outcomes


def bearer(role: str, subject: str = "v-7") -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}
