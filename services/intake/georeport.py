"""The neighbourhood as an Open311 GeoReport v2 server shows it: the public catalogue, requests
posted by other systems with no more than the specification requires, and each request's
public record (open or closed, its finer state, who answers, where, and by when).

Private categories (health, legal, mediation) are not part of it: they are neither listed,
nor taken, nor shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from services.intake import catalogue, directory, listing, requests
from services.intake.models import Category, GridNode, ServiceRequest
from services.intake.policy import no_request
from shared.auth import Principal
from shared.clock import utcnow
from shared.errors import Invalid, NotFound

# The sensitivity of a category anyone may see.
NOT_PRIVATE = "none"
# The longest span one read covers and the most requests it returns: the specification's
# response volume for GET requests.
WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
# Ends of a span are given to the second or finer; the lists take the end as exclusive.
_JUST_AFTER = timedelta(microseconds=1)
# A question's type as the specification names it.
DATATYPES = {
    "string": "string",
    "number": "number",
    "datetime": "datetime",
    "text": "text",
    "single_choice": "singlevaluelist",
    "multi_choice": "multivaluelist",
}
# Who answers a request a volunteer took on: the public record names the volunteers, never
# the person.
VOLUNTEERS = "Red-vest volunteers"
# Coordinates no household of the grid matches (the grid has none), kept as the address for
# staff to place, as an RFC 5870 URI.
_GEO = re.compile(r"^geo:(-?[0-9]{1,3}(?:\.[0-9]+)?),(-?[0-9]{1,3}(?:\.[0-9]+)?)$")
# The public word for each state, after the state itself, which status_notes leads with.
_STATE_NOTES = {
    requests.SUBMITTED: "received, not yet taken up",
    requests.NEEDS_TRIAGE: "staff are finding who can help",
    requests.TRIAGED: "checked by staff, waiting to be assigned",
    requests.ASSIGNED: "handed to whoever will do it",
    requests.ACCEPTED: "taken on",
    requests.IN_SERVICE: "the work has started",
    requests.COMPLETED: "the work is done, waiting for the resident's confirmation",
    requests.CONFIRMED: "the resident confirmed the work was done",
    requests.CLOSED: "finished without the resident's confirmation",
    requests.CANCELLED: "no longer needed",
    requests.REJECTED: "not a service the neighbourhood gives",
    requests.REOPENED: "the need came back: the same team takes it up again",
    requests.ESCALATED: "raised to those responsible for the place",
}
_MAX_NUMBER = Decimal(10) ** 15


def no_service(code: str) -> NotFound:
    """The answer for a service that does not exist, or is private or withdrawn."""
    return NotFound(f"No service {code!r}", field="service_code")


def public_services(session: Session) -> list[Category]:
    """The services other systems may ask for: active and not private, by group and code."""
    return catalogue.list_categories(
        session, where=catalogue.CategoryFilter(sensitivity=NOT_PRIVATE)
    )


def public_service(session: Session, code: str) -> Category:
    """One service of the public catalogue; NotFound for any other."""
    category = session.get(Category, code)
    if category is None or not category.is_active or category.sensitivity != NOT_PRIVATE:
        raise no_service(code)
    return category


def catalogue_changed_at(session: Session) -> datetime | None:
    """When the catalogue last changed: clients refresh what they keep of it after that."""
    return session.scalar(select(func.max(Category.updated_at)))


@dataclass(frozen=True)
class Whereabouts:
    """Where a request is needed, as Open311 gives it: coordinates, a typed address or the
    id of a household of the grid (at least one)."""

    lat: Decimal | None = None
    long: Decimal | None = None
    address_string: str | None = None
    address_id: str | None = None


@dataclass(frozen=True)
class Person:
    """Who posted a request, as far as they said."""

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None


def submit_report(
    session: Session,
    *,
    submitted_by: Principal,
    service_code: str,
    where: Whereabouts,
    description: str | None = None,
    media_url: str | None = None,
    person: Person | None = None,
    attributes: Mapping[str, Sequence[str]] | None = None,
) -> PublicRecord:
    """Submit a request posted through Open311: placed on the grid where its address names a
    household, else with the address or coordinates kept as given for staff to place; what
    intake has no field for is kept in an internal note. Its public record."""
    service = public_service(session, service_code)
    person = person or Person()
    location, address = _locate(session, where)
    request = requests.submit_request(
        session,
        submitted_by=submitted_by,
        category=service.code,
        summary=_summary(description, service),
        details=description or "",
        location=location,
        address=address,
        reporter=_reporter(person),
        answers=_answers(service, attributes or {}),
        attachments=[{"url": media_url}] if media_url else (),
    )
    unkept = _unkept(where, person)
    if unkept:
        requests.add_note(
            session, request_id=request.id, text=unkept, written_by=submitted_by, is_public=False
        )
    return _records(session, [request], {service.code: service}, in_full=True)[0]


def _household(session: Session, address_id: str) -> GridNode:
    try:
        node = directory.get_node(session, address_id)
    except NotFound:
        node = None
    if node is None or node.kind != "household":
        raise Invalid(
            f"address_id {address_id!r} names no household of the grid", field="address_id"
        )
    return node


def _locate(session: Session, where: Whereabouts) -> tuple[requests.Location | None, str]:
    """Where the request is on the grid when its address_id says so, and the address it
    keeps; an address_string is matched against the grid by submit_request."""
    if where.address_id is not None:
        node = _household(session, where.address_id)
        location = requests.Location(node.community, node.building, node.unit, node.household)
        return location, where.address_string or _address_of(node)
    if where.address_string is not None:
        return None, where.address_string
    if where.lat is None or where.long is None:
        raise Invalid(
            "Give lat and long, address_string or address_id: where the service is needed",
            field="address_string",
        )
    return None, f"geo:{where.lat},{where.long}"


def _summary(description: str | None, service: Category) -> str:
    """The first line of the description, or the service's name when there is none."""
    lines = (line.strip() for line in (description or "").splitlines())
    first = next((line for line in lines if line), "")
    if not first:
        return service.name
    return first if len(first) <= 200 else first[:199] + "…"


def _reporter(person: Person) -> requests.Reporter | None:
    name = " ".join(part for part in (person.first_name, person.last_name) if part)
    if not name and person.phone is None:
        return None
    return requests.Reporter(name=name, phone=person.phone)


def _number(code: str, text: str) -> int | float:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or abs(value) >= _MAX_NUMBER:
        raise Invalid(f"attribute[{code}] must be a number", field=f"attribute[{code}]")
    return int(value) if value == value.to_integral_value() else float(value)


def _answers(service: Category, attributes: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The answers to the service's questions, each of its question's type; the catalogue
    checks them as it checks every request's."""
    kinds = {question["code"]: question["type"] for question in service.questions}
    answers: dict[str, Any] = {}
    for code, values in attributes.items():
        kind = kinds.get(code)
        if kind == "multi_choice":
            answers[code] = list(values)
        elif len(values) != 1:
            raise Invalid(f"attribute[{code}] takes one value", field=f"attribute[{code}]")
        elif kind == "number":
            answers[code] = _number(code, values[0])
        else:
            answers[code] = values[0]
    return answers


def _unkept(where: Whereabouts, person: Person) -> str:
    """What was sent that intake keeps no field for, for staff to read."""
    kept = [
        (label, value)
        for label, value in (
            ("e-mail", person.email),
            ("device", person.device_id),
            ("account", person.account_id),
        )
        if value
    ]
    # Coordinates are kept as the address only when nothing else says where.
    if where.lat is not None and (where.address_string or where.address_id):
        kept.append(("coordinates", f"geo:{where.lat},{where.long}"))
    if not kept:
        return ""
    return "Sent through Open311 with no field of its own here: " + "; ".join(
        f"{label} {value}" for label, value in kept
    )


def _address_of(node: GridNode | ServiceRequest) -> str:
    """A household's address, from the most specific part to the most general."""
    return (
        f"Building {node.building}, Unit {node.unit}, Household {node.household}, {node.community}"
    )


@dataclass(frozen=True)
class PublicRecord:
    """A request as anyone may read it through Open311."""

    request: ServiceRequest
    service: Category
    # The household of the grid it is placed at, when it is.
    household_id: int | None = None
    # Read by another system or a staff console with a key: all of it. Read by anyone else:
    # what the neighbourhood may know (the service, its state, the building), not who asked
    # for what at which door.
    in_full: bool = False

    @property
    def address_id(self) -> int | None:
        return self.household_id if self.in_full else None

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def status(self) -> str:
        return "open" if self.request.status in requests.OPEN else "closed"

    @property
    def status_notes(self) -> str:
        """Our finer state first, then what it means."""
        state = self.request.status
        if self.request.duplicate_of is not None:
            return f"{state}: merged into request {self.request.duplicate_of}, which carries it"
        meaning = _STATE_NOTES.get(state)
        return f"{state}: {meaning}" if meaning else state

    @property
    def description(self) -> str:
        if not self.in_full:
            return self.service.name
        return self.request.details or self.request.summary

    @property
    def agency_responsible(self) -> str | None:
        """The partner or team that answers it; None until someone is assigned."""
        if self.request.assignee_name is None:
            return None
        if self.request.assignee_type == "volunteer":
            return VOLUNTEERS
        return self.request.assignee_name

    @property
    def service_notice(self) -> str | None:
        return notice_of(self.service)

    @property
    def address(self) -> str | None:
        if not self.in_full:
            if self.request.building is None:
                return None
            return f"Building {self.request.building}, {self.request.community}"
        if self.request.household is not None:
            return _address_of(self.request)
        text = self.request.address_text
        return None if text is None or _GEO.match(text) else text

    @property
    def lat(self) -> Decimal | None:
        """The latitude, as it was given."""
        found = _GEO.match(self.request.address_text or "") if self.in_full else None
        return None if found is None else Decimal(found[1])

    @property
    def long(self) -> Decimal | None:
        """The longitude, as it was given."""
        found = _GEO.match(self.request.address_text or "") if self.in_full else None
        return None if found is None else Decimal(found[2])

    @property
    def media_url(self) -> str | None:
        attachments = (self.request.attachments or []) if self.in_full else []
        return attachments[0]["url"] if attachments else None


def notice_of(service: Category) -> str | None:
    """What the service's notice tells whoever asks for it, if it has one."""
    notice = service.notice or {}
    text = notice.get("text") or {}
    return text.get("en") or None


def window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The span a read covers: the last 90 days unless given, and never more than 90 days."""
    if end is None:
        end = utcnow() if start is None else start + WINDOW
    if start is None:
        start = end - WINDOW
    if end < start:
        raise Invalid("end_date is before start_date", field="end_date")
    if end - start > WINDOW:
        raise Invalid(
            f"start_date to end_date spans more than {WINDOW.days} days", field="end_date"
        )
    return start, end


def find_records(
    session: Session,
    *,
    ids: Sequence[str] = (),
    codes: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    is_open: bool | None = None,
    in_full: bool = False,
) -> list[PublicRecord]:
    """The public records of the requests asked for, newest first, at most 1,000: those
    named by ``ids`` whatever else is given (as the specification says), else those of the
    ``codes`` (any public service when none) made within the window, open or not as asked."""
    services = {
        service.code: service
        for service in catalogue.list_categories(
            session,
            where=catalogue.CategoryFilter(sensitivity=NOT_PRIVATE, include_inactive=True),
        )
    }
    if ids:
        if len(ids) > MAX_REQUESTS:
            raise Invalid(
                f"Ask for at most {MAX_REQUESTS} requests at once", field="service_request_id"
            )
        found = list(
            session.scalars(
                select(ServiceRequest)
                .where(ServiceRequest.id.in_(ids), ServiceRequest.category.in_(services))
                .order_by(ServiceRequest.created_at.desc(), ServiceRequest.id)
            )
        )
        return _records(session, found, services, in_full=in_full)
    start, end = window(start, end)
    wanted = tuple(code for code in codes if code in services) if codes else tuple(services)
    if not wanted:
        return []
    page = listing.list_requests(
        session,
        where=listing.RequestFilter(
            category=wanted,
            created_after=start,
            created_before=end + _JUST_AFTER,
            is_open=is_open,
        ),
        sort="newest",
        page_size=MAX_REQUESTS,
    )
    return _records(session, page.items, services, in_full=in_full)


def find_record(session: Session, request_id: str, *, in_full: bool = False) -> PublicRecord:
    """One request's public record; NotFound, alike, for one that is missing or private."""
    request = requests.get_request(session, request_id)
    service = session.get(Category, request.category)
    if service is None or service.sensitivity != NOT_PRIVATE:
        raise no_request(request_id)
    return _records(session, [request], {service.code: service}, in_full=in_full)[0]


def resolve_token(token: str) -> NoReturn:
    """The request a token stands for. Every service here is realtime (a POST answers with
    the request's id at once), so no token is ever issued and none resolves."""
    raise NotFound(
        f"No token {token!r}: this server issues none, as every POST answers with its "
        "service_request_id"
    )


def _records(
    session: Session,
    found: Sequence[ServiceRequest],
    services: Mapping[str, Category],
    *,
    in_full: bool,
) -> list[PublicRecord]:
    places = {
        (request.community, request.building, request.unit, request.household)
        for request in found
        if request.household is not None
    }
    node_ids: dict[tuple[Any, ...], int] = {}
    if places:
        path = (GridNode.community, GridNode.building, GridNode.unit, GridNode.household)
        rows = session.execute(
            select(GridNode.id, *path).where(
                GridNode.kind == "household", tuple_(*path).in_(sorted(places))
            )
        )
        node_ids = {tuple(row[1:]): row[0] for row in rows}
    return [
        PublicRecord(
            request,
            services[request.category],
            node_ids.get((request.community, request.building, request.unit, request.household)),
            in_full=in_full,
        )
        for request in found
    ]
