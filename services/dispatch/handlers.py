"""dispatch's handlers: each event it subscribes to, translated into a call of its domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.dispatch import routing
from shared.consumers import Received


def on_request_submitted(
    session: Session,
    received: Received,
    *,
    request_id: str,
    category: str,
    priority: str,
    summary: str,
    resident_id: str,
    location: Mapping[str, str],
    submitted_at: datetime,
) -> None:
    routing.assign_request(
        session,
        request_id=request_id,
        category=category,
        priority=priority,
        summary=summary,
        resident_id=resident_id,
        location=location,
    )


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
    # The assignment's own record says who took part: the confirmation only closes it.
    participants: Sequence[Mapping[str, Any]] = (),
) -> None:
    routing.record_confirmation(session, request_id=request_id, at=confirmed_at)


def on_request_withdrawn(
    session: Session,
    received: Received,
    *,
    request_id: str,
    status: str,
    reason: str,
    withdrawn_by: str,
    withdrawn_at: datetime,
) -> None:
    routing.withdraw_assignment(
        session, request_id=request_id, reason=f"{status}: {reason}", at=withdrawn_at
    )


def on_request_reopened(
    session: Session,
    received: Received,
    *,
    request_id: str,
    assignment_id: str | None,
    reason: str,
    reopened_by: str,
    reopened_at: datetime,
) -> None:
    routing.reopen_assignment(session, request_id=request_id, at=reopened_at)
