"""The registers intake keeps: the grid, residents, the service catalogue and API clients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.intake.models import ApiClient, Category, Household, Resident
from services.intake.policy import no_resident
from shared.auth import Principal, hash_api_key, new_api_key
from shared.clock import utcnow
from shared.errors import Conflict, NotFound
from shared.events import PRIORITIES


def add_household(
    session: Session, *, community: str, building: str, unit: str, number: str
) -> Household:
    """Put a household on the grid (or return the one already there)."""
    existing = session.scalars(
        select(Household).filter_by(
            community=community, building=building, unit=unit, number=number
        )
    ).first()
    if existing is not None:
        return existing
    household = Household(community=community, building=building, unit=unit, number=number)
    session.add(household)
    session.flush()
    return household


def find_household(
    session: Session, *, community: str, building: str, unit: str, number: str
) -> Household:
    household = session.scalars(
        select(Household).filter_by(
            community=community, building=building, unit=unit, number=number
        )
    ).first()
    if household is None:
        raise NotFound(
            f"No household {community}/{building}-{unit}-{number} on the grid", field="location"
        )
    return household


def register_resident(
    session: Session,
    *,
    name: str,
    household: Household,
    phone: str | None = None,
    is_elderly: bool = False,
    lives_alone: bool = False,
    resident_id: str | None = None,
) -> Resident:
    resident_id = resident_id or uuid.uuid4().hex
    if session.get(Resident, resident_id) is not None:
        raise Conflict(f"Resident {resident_id} already exists")
    resident = Resident(
        id=resident_id,
        name=name,
        household=household,
        phone=phone,
        is_elderly=is_elderly,
        lives_alone=lives_alone,
    )
    session.add(resident)
    session.flush()
    return resident


def register_resident_at(
    session: Session,
    *,
    community: str,
    building: str,
    unit: str,
    household: str,
    name: str,
    phone: str | None = None,
    is_elderly: bool = False,
    lives_alone: bool = False,
) -> Resident:
    """Register a resident at a household already on the grid."""
    home = find_household(
        session, community=community, building=building, unit=unit, number=household
    )
    return register_resident(
        session,
        name=name,
        household=home,
        phone=phone,
        is_elderly=is_elderly,
        lives_alone=lives_alone,
    )


def get_resident(session: Session, resident_id: str) -> Resident:
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise no_resident(resident_id)
    return resident


def add_category(
    session: Session,
    *,
    code: str,
    name: str,
    description: str = "",
    default_priority: str = "normal",
) -> Category:
    if default_priority not in PRIORITIES:
        raise ValueError(f"unknown priority {default_priority!r}")
    if session.get(Category, code) is not None:
        raise Conflict(f"Category {code} already exists", field="code")
    category = Category(
        code=code,
        name=name,
        description=description,
        default_priority=default_priority,
        is_active=True,
    )
    session.add(category)
    session.flush()
    return category


def list_categories(session: Session, *, include_inactive: bool = False) -> list[Category]:
    query = select(Category).order_by(Category.code)
    if not include_inactive:
        query = query.where(Category.is_active.is_(True))
    return list(session.scalars(query))


@dataclass(frozen=True)
class Home:
    """A resident's household, as the grid names it."""

    community: str
    building: str
    unit: str
    number: str


_categories = Category.__table__
_residents = Resident.__table__
_households = Household.__table__
_active_priority = select(_categories.c.default_priority).where(
    _categories.c.code == bindparam("category"), _categories.c.is_active.is_(True)
)
# Both registers a new request is checked against, read in one statement: every request
# through the door pays for this, and a round trip each was a third of its statements.
_priority_and_home = (
    select(
        _active_priority.scalar_subquery().label("default_priority"),
        _households.c.community,
        _households.c.building,
        _households.c.unit,
        _households.c.number,
    )
    .select_from(_residents.join(_households))
    .where(_residents.c.id == bindparam("resident_id"))
)


def find_category_and_home(
    session: Session, *, category: str, resident_id: str
) -> tuple[str, Home]:
    """The default priority of an active category and the resident's home; NotFound for
    either, the category first."""
    found = session.execute(
        _priority_and_home, {"category": category, "resident_id": resident_id}
    ).first()
    if found is None:
        if session.execute(_active_priority, {"category": category}).first() is None:
            raise _no_category(category)
        raise no_resident(resident_id)
    if found.default_priority is None:
        raise _no_category(category)
    return found.default_priority, Home(found.community, found.building, found.unit, found.number)


def _no_category(code: str) -> NotFound:
    return NotFound(f"No active service category {code!r} in the catalogue", field="category")


def create_api_client(
    session: Session, *, name: str, role: str = "system"
) -> tuple[ApiClient, str]:
    """Register a client; the key is returned once and only its hash is kept."""
    if role not in ("system", "staff"):
        raise ValueError("API clients are systems or staff consoles")
    key = new_api_key()
    client = ApiClient(name=name, role=role, key_hash=hash_api_key(key), created_at=utcnow())
    session.add(client)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"API client {name!r} already exists") from None
    return client, key


def authenticate_api_key(session: Session, key: str) -> Principal | None:
    client = session.scalars(select(ApiClient).filter_by(key_hash=hash_api_key(key))).first()
    if client is None or client.revoked_at is not None:
        return None
    return Principal(subject=f"client:{client.name}", role=client.role, is_system=True)
