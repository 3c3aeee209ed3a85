"""intake's handlers: each event it subscribes to, translated into a call of its domain."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.intake import requests, webhooks
from shared.consumers import Received


def on_request_assigned(
    session: Session,
    received: Received,
    *,
    request_id: str,
    assignment_id: str,
    assignee_type: str,
    assignee_id: str,
    assignee_name: str,
    assigned_at: datetime,
) -> None:
    assignee = requests.Assignee(type=assignee_type, id=assignee_id, name=assignee_name)
    requests.record_assignment(
        session,
        request_id=request_id,
        assignment_id=assignment_id,
        assignee=assignee,
        at=assigned_at,
    )


def on_request_unrouted(
    session: Session, received: Received, *, request_id: str, reason: str, unrouted_at: datetime
) -> None:
    requests.record_unrouted(session, request_id=request_id, reason=reason, at=unrouted_at)


def on_request_accepted(
    session: Session,
    received: Received,
    *,
    request_id: str,
    assignment_id: str,
    volunteer_id: str,
    accepted_by: str,
    accepted_at: datetime,
) -> None:
    requests.record_acceptance(
        session,
        request_id=request_id,
        assignment_id=assignment_id,
        volunteer_id=volunteer_id,
        accepted_by=accepted_by,
        at=accepted_at,
    )


def on_request_completed(
    session: Session,
    received: Received,
    *,
    request_id: str,
    assignment_id: str,
    volunteer_id: str,
    hours: Decimal,
    completed_by: str,
    completed_at: datetime,
    category: str | None = None,
    volunteer_name: str | None = None,
    team_id: str | None = None,
    community: str | None = None,
    # Kept for the confirmation to carry: points credits each participant.
    participants: list[dict[str, Any]] | None = None,
) -> None:
    requests.record_completion(
        session,
        request_id=request_id,
        assignment_id=assignment_id,
        volunteer_id=volunteer_id,
        hours=hours,
        completed_by=completed_by,
        at=completed_at,
        participants=participants or (),
    )


def on_earning_refused(
    session: Session,
    received: Received,
    *,
    request_id: str,
    volunteer_id: str,
    reason: str,
    refused_at: datetime,
) -> None:
    requests.record_earning_refused(session, request_id=request_id, reason=reason, at=refused_at)


def on_webhook_delivery_due(session: Session, received: Received, *, delivery_id: int) -> None:
    # Claimed here; sent by the worker's webhooks.Sender once this transaction commits.
    webhooks.claim_delivery(session, delivery_id=delivery_id)
