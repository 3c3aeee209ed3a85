"""Small builders for dispatch's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from services.dispatch import routing
from services.dispatch.config import runtime
from services.dispatch.models import Assignment, RoutingRule, Volunteer
from shared import events
from shared.auth import issue_token


def volunteer(
    name: str = "Lao Zhang",
    *,
    routed_for: str | None = None,
    precedence: int = 100,
    is_active: bool = True,
) -> Volunteer:
    """A volunteer, with a routing rule for ``routed_for`` when given."""
    with runtime().db.transaction() as session:
        person = routing.register_volunteer(session, name=name)
        if routed_for is not None:
            routing.add_routing_rule(
                session, category=routed_for, volunteer_id=person.id, precedence=precedence
            )
        person.is_active = is_active
        return person


def submitted(**overrides: Any) -> dict[str, Any]:
    """A request.submitted payload as intake publishes it."""
    payload: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "category": "knife_sharpening",
        "priority": "normal",
        "summary": "Two kitchen knives and a pair of scissors",
        "resident_id": uuid.uuid4().hex,
        "location": {
            "community": "changshan-garden",
            "building": "3",
            "unit": "2",
            "household": "501",
        },
        "submitted_at": datetime.now(UTC),
    }
    payload.update(overrides)
    return payload


def received(**overrides: Any) -> dict[str, Any]:
    """A request.submitted payload as a consumer reads it off the wire."""
    wire = events.REQUEST_SUBMITTED.validate_outgoing(submitted(**overrides))
    return events.REQUEST_SUBMITTED.read_incoming(wire)


def submission(**overrides: Any) -> dict[str, Any]:
    """What routing needs of a submitted request: the fields of the event but its time."""
    payload = received(**overrides)
    del payload["submitted_at"]
    return payload


def assigned(**overrides: Any) -> Assignment:
    """Route a submitted request (a rule for its category must exist) and return its assignment."""
    payload = submission(**overrides)
    with runtime().db.transaction() as session:
        routing.assign_request(session, **payload)
    return assignment_for(payload["request_id"])


def assignment_for(request_id: str) -> Assignment:
    found = assignments(request_id=request_id)
    assert len(found) == 1, f"expected one assignment for {request_id}, found {len(found)}"
    return found[0]


def assignments(**where: Any) -> list[Assignment]:
    with runtime().db.read() as session:
        return list(session.scalars(select(Assignment).filter_by(**where)))


def rules() -> list[RoutingRule]:
    with runtime().db.read() as session:
        return list(session.scalars(select(RoutingRule)))


def bearer(subject: str, role: str) -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}


def staff() -> dict[str, str]:
    return bearer("staff-1", "staff")
