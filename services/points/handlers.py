"""points' handlers: each event it subscribes to, translated into a call of its domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.points import earning
from services.points.config import earning_policy
from shared.consumers import Received


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
    participants: Sequence[Mapping[str, Any]] = (),
) -> None:
    earning.open_pending_earn(
        session,
        request_id=request_id,
        volunteer_id=volunteer_id,
        category=category,
        hours=hours,
        completed_by=completed_by,
        policy=earning_policy(),
        volunteer_name=volunteer_name,
        team_id=team_id,
        community=community,
        participants=_participants(participants),
    )


def _participants(named: Sequence[Mapping[str, Any]]) -> list[earning.Participant]:
    return [
        earning.Participant(
            volunteer_id=person["volunteer_id"],
            hours=person["hours"],
            name=person.get("volunteer_name"),
        )
        for person in named
    ]


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
    participants: Sequence[Mapping[str, Any]] = (),
) -> None:
    earning.credit_confirmed_service(
        session,
        request_id=request_id,
        volunteer_id=volunteer_id,
        category=category,
        hours=hours,
        parties=earning.Parties(
            confirmed_by=confirmed_by, accepted_by=accepted_by, completed_by=completed_by
        ),
        participants=_participants(participants),
        policy=earning_policy(),
    )
