"""The registers intake keeps: the grid and its responsible people, residents and the health
register. API clients are clients.py's."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

# API clients are clients.py's; callers that know them from here still find them.
from services.intake.clients import authenticate_api_key as authenticate_api_key
from services.intake.clients import create_api_client as create_api_client
from services.intake.models import (
    NODE_KINDS,
    Category,
    GridNode,
    HealthNote,
    Resident,
    ServiceRequest,
)
from services.intake.policy import HEALTH, no_resident
from shared.auth import Principal
from shared.clock import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.paging import fetch_page
from shared.policy import STAFF

LANGUAGES = ("zh-CN", "en")
RESIDENT_FLAGS = ("is_elderly", "lives_alone", "is_disabled", "has_reduced_mobility")
LEVELS = ("community", "building", "unit", "household")


@dataclass(frozen=True)
class Place:
    """A node of the grid by its path, as deep as it is given: a filter by it takes in
    everything beneath it."""

    community: str | None = None
    building: str | None = None
    unit: str | None = None
    household: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Place:
        return cls(**{level: values.get(level) for level in LEVELS})

    @property
    def parts(self) -> tuple[str, ...]:
        """The levels given, from the community down; a level without the one above it is
        not a place on the grid."""
        given = [getattr(self, level) for level in LEVELS]
        depth = len(given) - next(
            (index for index, value in enumerate(reversed(given)) if value), len(given)
        )
        for level, value in zip(LEVELS[:depth], given[:depth], strict=True):
            if not value:
                raise Invalid(
                    f"A place on the grid names its {level} before the levels below it",
                    field=level,
                )
        return tuple(value for value in given[:depth] if value)

    @property
    def is_given(self) -> bool:
        return any(getattr(self, level) for level in LEVELS)

    def conditions(self, columns: Mapping[str, Any]) -> list[ColumnElement[bool]]:
        """SQL conditions keeping rows at or beneath this place (``columns`` by level)."""
        return [columns[level] == value for level, value in zip(LEVELS, self.parts, strict=False)]


def _node_columns() -> dict[str, Any]:
    return {level: getattr(GridNode, level) for level in LEVELS}


def _path(parts: tuple[str, ...]) -> dict[str, str]:
    return {
        level: (parts[index] if index < len(parts) else "") for index, level in enumerate(LEVELS)
    }


def _find(session: Session, parts: tuple[str, ...]) -> GridNode | None:
    return session.scalars(select(GridNode).filter_by(**_path(parts))).first()


def _check_level_name(level: str, name: str) -> None:
    """Invalid unless ``name`` may name a level of a place: a path joins the levels with "/",
    so a name holding one would be another place's path ("3/4": unit 4 of building 3); a
    blank or unreadable one names nothing anyone can find."""
    if "/" in name or not name.strip() or not name.isprintable():
        raise Invalid(
            f"A {level} is named by printable text, not blank, without '/': got {name!r}",
            field=level,
        )


def ensure_node(session: Session, place: Place) -> GridNode:
    """The node at ``place``, put on the grid with every level above it that is missing."""
    parts = place.parts
    if not parts:
        raise Invalid("A place on the grid names at least its community", field="community")
    for level, name in zip(LEVELS, parts, strict=False):
        _check_level_name(level, name)
    parent: GridNode | None = None
    for depth in range(1, len(parts) + 1):
        node = _find(session, parts[:depth])
        if node is None:
            node = GridNode(
                kind=NODE_KINDS[depth - 1],
                parent_id=parent.id if parent is not None else None,
                name="",
                **_path(parts[:depth]),
            )
            try:
                with session.begin_nested():
                    session.add(node)
            except IntegrityError:
                # Another transaction put the same node on the grid a moment ago.
                node = _find(session, parts[:depth])
                if node is None:
                    raise
        parent = node
    assert parent is not None
    return parent


def add_household(
    session: Session, *, community: str, building: str, unit: str, number: str
) -> GridNode:
    """Put a household on the grid, with the levels above it (or return the one there)."""
    return ensure_node(session, Place(community, building, unit, number))


def find_node(session: Session, place: Place) -> GridNode:
    node = _find(session, place.parts)
    if node is None:
        raise NotFound(f"No {'/'.join(place.parts)} on the grid", field="location")
    return node


def find_household(
    session: Session, *, community: str, building: str, unit: str, number: str
) -> GridNode:
    return find_node(session, Place(community, building, unit, number))


def get_node(session: Session, node_id: int | str, *, for_update: bool = False) -> GridNode:
    """The node; ``for_update`` locks its row until commit."""
    is_id = re.fullmatch(r"[0-9]{1,9}", str(node_id)) is not None
    node = (
        session.get(GridNode, int(node_id), with_for_update=for_update or None) if is_id else None
    )
    if node is None:
        raise NotFound(f"No grid node {node_id}")
    return node


def update_node(session: Session, *, node_id: int | str, **changes: Any) -> GridNode:
    """Rename a node or name the person responsible for it."""
    node = get_node(session, node_id, for_update=True)
    if "name" in changes:
        node.name = changes["name"]
    if "responsible" in changes:
        person = changes["responsible"] or {}
        if not person.get("name"):
            person = {}
        resident_id = person.get("resident_id")
        if resident_id is not None and session.get(Resident, resident_id) is None:
            raise no_resident(resident_id)
        node.responsible_name = person.get("name")
        node.responsible_phone = person.get("phone")
        node.responsible_resident_id = resident_id
    session.flush()
    return node


def list_nodes(
    session: Session,
    *,
    under: Place,
    kind: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[GridNode], int]:
    """Nodes at or beneath ``under``, by path."""
    query = select(GridNode).where(*under.conditions(_node_columns()))
    if kind is not None:
        query = query.where(GridNode.kind == kind)
    query = query.order_by(
        GridNode.community, GridNode.building, GridNode.unit, GridNode.household, GridNode.id
    )
    return fetch_page(session, query, offset=offset, limit=limit)


# A free-text address of a household: ``3-2-501``, ``Building 3, Unit 2, Household 501``,
# ``3栋2单元501`` (after NFKC, so full-width digits and dashes read as ASCII).
_PART = r"([0-9A-Za-z]{1,32})"
_ADDRESSES = (
    re.compile(rf"^\s*{_PART}\s*-\s*{_PART}\s*-\s*{_PART}\s*$"),
    re.compile(
        rf"^\s*(?:building|bldg\.?)\s*{_PART}\s*[,;]?\s*unit\s*{_PART}\s*[,;]?\s*"
        rf"(?:household|room|flat|apartment|apt\.?|no\.?)\s*{_PART}\s*$",
        re.IGNORECASE,
    ),
    re.compile(rf"^\s*{_PART}\s*(?:栋|幢|号楼)\s*{_PART}\s*单元\s*{_PART}\s*(?:室|号|户)?\s*$"),
)


def parse_address(text: str) -> tuple[str, str, str] | None:
    """Building, unit and household named by a typed address, or None when it names none."""
    normal = unicodedata.normalize("NFKC", text)
    for pattern in _ADDRESSES:
        found = pattern.match(normal)
        if found is not None:
            building, unit, household = found.groups()
            return building, unit, household
    return None


def match_address(session: Session, text: str, *, community: str | None = None) -> GridNode | None:
    """The one household of the grid a typed address names (in ``community`` if given), or
    None: unreadable, not on the grid, or in more than one community."""
    parsed = parse_address(text)
    if parsed is None:
        return None
    building, unit, household = parsed
    query = select(GridNode).where(
        GridNode.kind == "household",
        GridNode.building == building,
        GridNode.unit == unit,
        GridNode.household == household,
    )
    if community is not None:
        query = query.where(GridNode.community == community)
    found = list(session.scalars(query.limit(2)))
    return found[0] if len(found) == 1 else None


def register_resident(
    session: Session,
    *,
    name: str,
    household: GridNode,
    phone: str | None = None,
    language: str = "zh-CN",
    resident_id: str | None = None,
    **flags: bool,
) -> Resident:
    """Register a resident at a household of the grid."""
    unknown = set(flags) - set(RESIDENT_FLAGS)
    if unknown:
        raise TypeError(f"unknown resident flags {sorted(unknown)}")
    if household.kind != "household":
        raise Invalid(f"{household.path} is a {household.kind}, not a household", field="location")
    if language not in LANGUAGES:
        raise Invalid(f"Unknown language {language!r}", field="language")
    resident_id = resident_id or uuid.uuid4().hex
    if session.get(Resident, resident_id) is not None:
        raise Conflict(f"Resident {resident_id} already exists")
    resident = Resident(
        id=resident_id,
        name=name,
        household=household,
        phone=phone,
        language=language,
        **{flag: bool(flags.get(flag, False)) for flag in RESIDENT_FLAGS},
    )
    session.add(resident)
    session.flush()
    return resident


def register_resident_at(
    session: Session, *, community: str, building: str, unit: str, household: str, **fields: Any
) -> Resident:
    """Register a resident at a household already on the grid."""
    home = find_household(
        session, community=community, building=building, unit=unit, number=household
    )
    return register_resident(session, household=home, **fields)


def get_resident(session: Session, resident_id: str, *, for_update: bool = False) -> Resident:
    """The resident; ``for_update`` locks their row (not their household's) until commit."""
    # Only the resident's row: its eagerly joined household cannot be locked across the join.
    lock = {"of": Resident} if for_update else None
    resident = session.get(Resident, resident_id, with_for_update=lock)
    if resident is None:
        raise no_resident(resident_id)
    return resident


def update_resident(session: Session, *, resident_id: str, **changes: Any) -> Resident:
    """Change a resident's contact, language or flags, or move them to another household."""
    # Only the resident's row: its eagerly joined household cannot be locked across the join.
    resident = session.get(Resident, resident_id, with_for_update={"of": Resident})
    if resident is None:
        raise no_resident(resident_id)
    location = changes.pop("location", None)
    if location is not None:
        resident.household = find_node(session, Place.of(location))
        if resident.household.kind != "household":
            raise Invalid("A resident lives at a household", field="location")
    if changes.get("language", resident.language) not in LANGUAGES:
        raise Invalid(f"Unknown language {changes['language']!r}", field="language")
    for name, value in changes.items():
        setattr(resident, name, value)
    session.flush()
    return resident


@dataclass(frozen=True)
class ResidentFilter:
    place: Place = field(default_factory=Place)
    is_elderly: bool | None = None
    lives_alone: bool | None = None
    is_disabled: bool | None = None
    has_reduced_mobility: bool | None = None
    name: str | None = None


def list_residents(
    session: Session, *, where: ResidentFilter, offset: int = 0, limit: int = 50
) -> tuple[list[Resident], int]:
    """Residents at or beneath a place of the grid, with the flags asked for, by home."""
    query = (
        select(Resident)
        .join(Resident.household)
        .where(*where.place.conditions(_node_columns()))
        .order_by(
            GridNode.community, GridNode.building, GridNode.unit, GridNode.household, Resident.id
        )
    )
    for flag in fields(where):
        value = getattr(where, flag.name)
        if flag.name in RESIDENT_FLAGS and value is not None:
            query = query.where(getattr(Resident, flag.name).is_(value))
    if where.name:
        query = query.where(Resident.name.contains(where.name, autoescape=True))
    return fetch_page(session, query, offset=offset, limit=limit)


def proxy_relation(session: Session, *, request: ServiceRequest, resident_id: str) -> str | None:
    """How ``resident_id`` stands to the resident of ``request`` when confirming for them: a
    member of their household, or the person responsible for their household, unit, building
    or community (the nearest gives the title); None when neither."""
    if request.resident_id is None or request.community is None:
        return None
    home = session.get(Resident, request.resident_id)
    caller = session.get(Resident, resident_id)
    if home is not None and caller is not None and caller.household_id == home.household_id:
        return "household member"
    place = (request.community, request.building, request.unit, request.household)
    for depth, title in (
        (4, "responsible for the household"),
        (3, "unit leader"),
        (2, "building leader"),
        (1, "duty officer"),
    ):
        node = _find(session, tuple(part or "" for part in place[:depth]))
        if node is not None and node.responsible_resident_id == resident_id:
            return title
    return None


def _check_health_role(reader: Principal, *, or_staff: bool = False) -> None:
    # The policy says who may call these operations; the rule is kept here too, so that no
    # other caller of the domain reads the register by mistake.
    if reader.role != HEALTH and not (or_staff and reader.role == STAFF):
        raise Forbidden("Only the health role may read the health register")


def add_health_note(
    session: Session, *, resident_id: str, note: str, written_by: Principal
) -> HealthNote:
    """Add a note to a resident's health record: staff may write one (from a visit, say),
    but only the health role reads the record."""
    _check_health_role(written_by, or_staff=True)
    get_resident(session, resident_id)
    entry = HealthNote(
        resident_id=resident_id,
        note=note,
        # Not an address other services know: the health role stays within intake.
        written_by=f"{written_by.role}:{written_by.subject}",
        written_at=utcnow(),
    )
    session.add(entry)
    session.flush()
    return entry


def health_notes(session: Session, *, resident_id: str, reader: Principal) -> list[HealthNote]:
    """A resident's health record, oldest note first."""
    _check_health_role(reader)
    get_resident(session, resident_id)
    return list(
        session.scalars(
            select(HealthNote).filter_by(resident_id=resident_id).order_by(HealthNote.id)
        )
    )


@dataclass(frozen=True)
class Home:
    """A resident's household, as the grid names it."""

    community: str
    building: str
    unit: str
    number: str


_categories = Category.__table__
_residents = Resident.__table__
_nodes = GridNode.__table__
_active_category = and_(
    _categories.c.code == bindparam("category"), _categories.c.is_active.is_(True)
)
CATEGORY_COLUMNS = (
    _categories.c.default_priority,
    _categories.c.deadlines,
    _categories.c.questions,
    _categories.c.notice,
)


def _no_category(code: str) -> NotFound:
    return NotFound(f"No active service category {code!r} in the catalogue", field="category")


def active_category(session: Session, code: str) -> Mapping[str, Any]:
    """What a new request of an active category is checked against; NotFound for another."""
    found = session.execute(select(*CATEGORY_COLUMNS).where(_active_category), {"category": code})
    row = found.first()
    if row is None:
        raise _no_category(code)
    return dict(row._mapping)
