"""points' handlers: each event it subscribes to, translated into a call of its domain."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from services.points import ledger
from shared.consumers import Received


def on_request_confirmed(
    session: Session,
    received: Received,
    *,
    request_id: str,
    category: str,
    resident_id: str,
    volunteer_id: str,
    hours: Decimal,
    confirmed_by: str,
    accepted_by: str | None,
    completed_by: str | None,
    confirmed_at: datetime,
) -> None:
    ledger.credit_confirmed_service(
        session,
        request_id=request_id,
        volunteer_id=volunteer_id,
        category=category,
        hours=hours,
        parties=ledger.Parties(
            confirmed_by=confirmed_by, accepted_by=accepted_by, completed_by=completed_by
        ),
    )
