"""Small builders for intake's tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.intake import directory, requests
from services.intake.models import Resident, ServiceRequest
from shared.auth import Principal

HOTLINE = Principal(subject="client:city-hotline", role="system")


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
    directory.add_category(
        session, code=code, name=fields.pop("name", code.replace("_", " ")), **fields
    )


def a_request(
    session: Session,
    *,
    resident: Resident | None = None,
    category: str = "knife_sharpening",
    **fields: Any,
) -> ServiceRequest:
    resident = resident or a_resident(session)
    if directory.list_categories(session) == [] or all(
        c.code != category for c in directory.list_categories(session)
    ):
        a_category(session, category)
    return requests.submit_request(
        session,
        submitted_by=fields.pop("submitted_by", HOTLINE),
        category=category,
        summary=fields.pop("summary", "Two kitchen knives"),
        resident_id=resident.id,
        **fields,
    )
