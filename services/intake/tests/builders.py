"""Small builders for intake's tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.intake import catalogue, directory, requests
from services.intake.models import Category, Resident, ServiceRequest
from shared.auth import Principal

HOTLINE = Principal(subject="client:city-hotline", role="system")
DUTY_OFFICER = Principal(subject="duty-officer", role="staff")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def a_resident(
    session: Session,
    *,
    building: str = "3",
    unit: str = "2",
    number: str = "501",
    community: str = "changshan-garden",
    **fields: Any,
) -> Resident:
    household = directory.add_household(
        session, community=community, building=building, unit=unit, number=number
    )
    return directory.register_resident(
        session, name=fields.pop("name", "Li Shufen"), household=household, **fields
    )


def a_category(session: Session, code: str = "knife_sharpening", **fields: Any) -> None:
    name = fields.pop("name", code.replace("_", " "))
    catalogue.add_category(session, code=code, names={"en": name, "zh-CN": name}, **fields)


def a_request(
    session: Session,
    *,
    resident: Resident | None = None,
    category: str = "knife_sharpening",
    **fields: Any,
) -> ServiceRequest:
    resident = resident or a_resident(session)
    if session.get(Category, category) is None:
        a_category(session, category)
    return requests.submit_request(
        session,
        submitted_by=fields.pop("submitted_by", HOTLINE),
        category=category,
        summary=fields.pop("summary", "Two kitchen knives"),
        resident_id=resident.id,
        **fields,
    )


def resident_of(request: ServiceRequest) -> Principal:
    return Principal(subject=request.resident_id, role="resident")


def walk_to_completed(
    session: Session,
    request: ServiceRequest,
    hours: str = "1.5",
    *,
    accepted_by: str = "volunteer:v1",
    completed_by: str = "volunteer:v1",
) -> None:
    """Dispatch's news for one assignment, a1 to volunteer v1, up to completion."""
    base = {"request_id": request.id, "assignment_id": "a1"}
    requests.record_assignment(
        session,
        **base,
        assignee=requests.Assignee(type="volunteer", id="v1", name="Lao Zhang"),
        at=NOW,
    )
    requests.record_acceptance(session, **base, volunteer_id="v1", accepted_by=accepted_by, at=NOW)
    requests.record_completion(
        session,
        **base,
        volunteer_id="v1",
        hours=Decimal(hours),
        completed_by=completed_by,
        at=NOW,
    )


def request_body(resident_id: str, **changes: Any) -> dict[str, Any]:
    """A valid body for POST /v1/requests, with ``changes`` applied."""
    return {
        "category": "knife_sharpening",
        "summary": "Two kitchen knives",
        "resident_id": resident_id,
        "location": {
            "community": "changshan-garden",
            "building": "3",
            "unit": "2",
            "household": "501",
        },
        **changes,
    }


def post(client, key, payload, idempotency_key=None):
    """POST a request through intake's door as another system would."""
    headers = {"X-API-Key": key}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return client.post("/v1/requests", json=payload, headers=headers)
