"""Small builders for points' tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from services.points import ledger
from services.points.config import runtime
from services.points.models import Account, Entry, Transfer
from shared.auth import issue_token


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


def credit(
    *,
    request_id: str | None = None,
    volunteer_id: str = "v-7",
    category: str = "knife_sharpening",
    hours: str = "1.50",
) -> Transfer:
    with runtime().db.transaction() as session:
        return ledger.credit_earned_points(
            session,
            request_id=request_id or uuid.uuid4().hex,
            volunteer_id=volunteer_id,
            category=category,
            hours=Decimal(hours),
        )


def balance(holder: str) -> Decimal | None:
    with runtime().db.read() as session:
        account = session.scalars(select(Account).filter_by(holder=holder)).first()
        return account.balance if account is not None else None


def entries_total(holder: str | None = None) -> Decimal:
    """The sum of all entries, or of one holder's."""
    query = select(func.coalesce(func.sum(Entry.amount), 0))
    if holder is not None:
        query = query.join(Account, Entry.account_id == Account.id).where(Account.holder == holder)
    with runtime().db.read() as session:
        return Decimal(session.scalar(query) or 0)


def transfers() -> list[Transfer]:
    with runtime().db.read() as session:
        return list(session.scalars(select(Transfer).order_by(Transfer.created_at)))


def bearer(role: str, subject: str = "v-7") -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}
