"""Reading requests in bulk: filtered and sorted lists paged by keyset, the change feed for
systems that poll, and counts by category, building or status."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, text, tuple_
from sqlalchemy.orm import Session, selectinload

from services.intake.directory import LEVELS, Place
from services.intake.models import Category, ServiceRequest, TimelineEntry
from services.intake.policy import in_area_of
from services.intake.requests import OPEN, URGENCY
from shared.clock import utcnow
from shared.errors import Invalid

# Each sort: its columns, each ascending (True) or descending, the id last to break ties.
SORTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "newest": (("created_at", False), ("id", True)),
    "oldest": (("created_at", True), ("id", True)),
    "updated": (("updated_at", False), ("id", True)),
    # The deadline nearest (or longest past) first.
    "due": (("due_at", True), ("id", True)),
    # The highest priority first, then the deadline nearest or longest past.
    "urgency": (("urgency", False), ("due_at", True), ("id", True)),
}
MAX_PAGE_SIZE = 100
# The most a list's total counts: past it the total is this, flagged as at least that many, so
# that a page of a list of a million costs what a page of a list of ten thousand does.
TOTAL_CAP = 10_000
COUNTED_BY = ("category", "group", "building", "status")
# The largest id a timeline entry can have (an INTEGER column, 32 bits on PostgreSQL): a feed
# cursor past it names no entry there can be.
MAX_ENTRY_ID = 2**31 - 1
# The largest transaction id an entry can name (a BIGINT on PostgreSQL).
MAX_XID = 2**63 - 1
# A feed cursor: an entry's id on SQLite; on PostgreSQL its transaction's id and its own
# (``<xid>.<id>``), or an entry's id alone as SQLite's and earlier versions' feeds gave.
_FEED_CURSOR = re.compile(r"(?:([0-9]{1,19})\.)?([0-9]{1,10})")
# On PostgreSQL, the oldest transaction still running: every older one has ended, so no entry
# of theirs can appear after this read (a transaction's own entries count as running to it).
_OLDEST_RUNNING = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
# How long a request's id may be (its column's length).
MAX_REQUEST_ID = 64


@dataclass(frozen=True)
class RequestFilter:
    status: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    group: str | None = None
    place: Place = field(default_factory=Place)
    priority: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    # Open and past the deadline now pending (True), or not (False).
    overdue: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    assignee_id: str | None = None
    resident_id: str | None = None
    # The grid leader (a resident id) whose area the requests lie in, or who asked for them.
    area_of: str | None = None
    is_open: bool | None = None


def _conditions(where: RequestFilter) -> list[ColumnElement[bool]]:
    r = ServiceRequest
    conditions: list[ColumnElement[bool]] = list(
        where.place.conditions({level: getattr(r, level) for level in LEVELS})
    )
    lists: tuple[tuple[Any, tuple[str, ...]], ...] = (
        (r.status, where.status),
        (r.category, where.category),
        (r.priority, where.priority),
        (r.channel, where.channel),
    )
    for column, values in lists:
        if values:
            conditions.append(column.in_(values))
    if where.group is not None:
        conditions.append(
            r.category.in_(select(Category.code).where(Category.group == where.group))
        )
    now = utcnow()
    if where.overdue is True:
        # A request no longer open has no deadline pending (FAR_FUTURE).
        conditions.append(r.due_at < now)
    elif where.overdue is False:
        conditions.append(r.due_at >= now)
    # Overdue requests are all open: saying so again would only mislead PostgreSQL's planner,
    # which takes the two conditions as independent, into reading and sorting far more rows.
    if where.is_open is not None and not (where.is_open and where.overdue is True):
        conditions.append(r.status.in_(OPEN) if where.is_open else r.status.not_in(OPEN))
    ranges: tuple[tuple[Any, datetime | None, bool], ...] = (
        (r.created_at, where.created_after, True),
        (r.created_at, where.created_before, False),
        (r.updated_at, where.updated_after, True),
        (r.updated_at, where.updated_before, False),
    )
    for column, bound, is_lower in ranges:
        if bound is not None:
            conditions.append(column >= bound if is_lower else column < bound)
    if where.assignee_id is not None:
        conditions.append(r.assignee_id == where.assignee_id)
    if where.resident_id is not None:
        conditions.append(r.resident_id == where.resident_id)
    if where.area_of is not None:
        place = {level: getattr(r, level) for level in LEVELS}
        conditions.append(or_(r.resident_id == where.area_of, in_area_of(where.area_of, place)))
    return conditions


def _fingerprint(sort: str, where: RequestFilter) -> str:
    """The sort and filters of a list, in a few characters: a cursor carries them so that it
    is taken back only by the list it was given for, where the row it names lies in the same
    order among the same rows."""
    described: dict[str, Any] = {"sort": sort}
    for item in dataclasses.fields(where):
        value = getattr(where, item.name)
        if isinstance(value, Place):
            value = [getattr(value, level) for level in LEVELS]
        elif isinstance(value, tuple):
            value = sorted(value)
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        described[item.name] = value
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(sort: str, where: RequestFilter, values: list[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    carried = [_fingerprint(sort, where), *plain]
    return base64.urlsafe_b64encode(json.dumps(carried).encode()).decode().rstrip("=")


def _moment(value: Any) -> datetime:
    """A cursor's date: ISO 8601 with its offset, a moment that exists in UTC."""
    if not isinstance(value, str):
        raise ValueError("not a date")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("no offset")
    moment.astimezone(UTC)  # OverflowError past the ends of UTC's calendar
    return moment


def _key(name: str, value: Any) -> Any:
    """A cursor's value of the sort key ``name``, as its column holds one; ValueError else."""
    if name.endswith("_at"):
        return _moment(value)
    if name == "id":
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_REQUEST_ID:
            raise ValueError("not a request id")
        return value
    if name == "urgency":
        if type(value) is not int or value not in URGENCY.values():
            raise ValueError("not an urgency")
        return value
    raise ValueError(f"no key {name}")


def _decode(cursor: str, sort: str, where: RequestFilter) -> list[Any]:
    """The sort key values of the row a cursor of this list (this sort, these filters) was
    given after; Invalid for anything else, made by hand or given for another list."""
    keys = SORTS[sort]
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        carried = json.loads(raw)
        if not isinstance(carried, list) or len(carried) != len(keys) + 1:
            raise ValueError("wrong length")
        if carried[0] != _fingerprint(sort, where):
            raise ValueError("another list's")
        return [_key(name, value) for (name, _), value in zip(keys, carried[1:], strict=True)]
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            f"Not a cursor of this list sorted by {sort} with these filters: pass back the "
            "next_cursor given, with the same sort and filters",
            field="after",
        ) from None


def _after(sort: str, values: list[Any]) -> ColumnElement[bool]:
    """Rows after the one with ``values`` in ``sort``'s order."""
    keys = SORTS[sort]
    # The first key's bound alone, redundant with the alternatives below, is one an index
    # range can start from: without it a deep page reads every row of the pages before it.
    leading, ascending = keys[0]
    column = getattr(ServiceRequest, leading)
    bound = column >= values[0] if ascending else column <= values[0]
    alternatives = []
    for depth, (name, ascending) in enumerate(keys):
        column = getattr(ServiceRequest, name)
        equal = [
            getattr(ServiceRequest, before) == value
            for (before, _), value in zip(keys[:depth], values, strict=False)
        ]
        beyond = column > values[depth] if ascending else column < values[depth]
        alternatives.append(and_(*equal, beyond))
    return and_(bound, or_(*alternatives))


@dataclass
class Page:
    items: list[ServiceRequest]
    # How many match in all; past TOTAL_CAP, TOTAL_CAP with is_total_capped set.
    total: int
    next_cursor: str | None = None
    page_size: int = 0
    sort: str = "newest"
    extra: dict[str, Any] = field(default_factory=dict)
    is_total_capped: bool = False


def list_requests(
    session: Session,
    *,
    where: RequestFilter,
    sort: str = "newest",
    after: str | None = None,
    page_size: int = 20,
) -> Page:
    """A page of the requests ``where`` selects in ``sort``'s order, starting after the
    cursor a previous page gave, and how many match in all (counted up to TOTAL_CAP)."""
    if sort not in SORTS:
        raise Invalid(f"Unknown sort {sort!r}; one of {sorted(SORTS)}", field="sort")
    conditions = _conditions(where)
    # Selecting a constant, not a column, lets an index that holds the conditions' columns
    # answer the count alone.
    matching = (
        select(literal(1))
        .select_from(ServiceRequest)
        .where(*conditions)
        .limit(TOTAL_CAP + 1)
        .subquery()
    )
    counted = int(session.scalar(select(func.count()).select_from(matching)) or 0)
    query: Select[Any] = select(ServiceRequest).where(*conditions)
    if after:
        query = query.where(_after(sort, _decode(after, sort, where)))
    for name, ascending in SORTS[sort]:
        column = getattr(ServiceRequest, name)
        query = query.order_by(column.asc() if ascending else column.desc())
    rows = list(
        session.scalars(query.limit(page_size + 1).options(selectinload(ServiceRequest.duplicates)))
    )
    following = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        last = rows[-1]
        following = _encode(sort, where, [getattr(last, name) for name, _ in SORTS[sort]])
    return Page(
        rows,
        min(counted, TOTAL_CAP),
        following,
        page_size,
        sort,
        is_total_capped=counted > TOTAL_CAP,
    )


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: what happened to which request, and where it stands."""

    cursor: str
    entry: TimelineEntry
    request: ServiceRequest


def changes(
    session: Session, *, after: str | None, limit: int = 100
) -> tuple[list[Change], str | None]:
    """Timeline entries recorded after the cursor, oldest first, with their requests as they
    now are; and the cursor to ask from next time (the last one given, or ``after``).

    On SQLite one transaction writes at a time, so entries commit in the order of their ids. On
    PostgreSQL an entry's id is given when it is written and its transaction may commit after
    another's with a higher id: the feed goes by the writing transaction's id instead, and
    serves only entries of transactions older than the oldest still running, none of which can
    appear later behind a cursor already given.
    """
    by_transaction = session.get_bind().dialect.name == "postgresql"
    xid, start = _feed_position(session, after, by_transaction=by_transaction)
    t = TimelineEntry
    if by_transaction:
        query = (
            select(t)
            .where(
                tuple_(t.xid, t.id) > tuple_(literal(xid), literal(start)),
                t.xid < _OLDEST_RUNNING,
            )
            .order_by(t.xid, t.id)
        )
    else:
        query = select(t).where(t.id > start).order_by(t.id)
    found = [
        Change(f"{entry.xid}.{entry.id}" if by_transaction else str(entry.id), entry, entry.request)
        for entry in session.scalars(query.limit(limit).options(selectinload(t.request)))
    ]
    return found, (found[-1].cursor if found else after)


def _feed_position(session: Session, after: str | None, *, by_transaction: bool) -> tuple[int, int]:
    """The (transaction id, entry id) a feed cursor stands at; (0, 0) before the first entry.
    Going ``by_transaction``, a cursor of an entry's id alone stands at that entry's
    transaction; otherwise the transaction id is not read."""
    if not after:
        return 0, 0
    given = _FEED_CURSOR.fullmatch(after)
    if given is None or int(given[2]) > MAX_ENTRY_ID or int(given[1] or 0) > MAX_XID:
        raise Invalid(
            "Not a cursor of the change feed: pass back a cursor it gave (an entry's number, "
            f"from 0 to {MAX_ENTRY_ID}, after its transaction's and a dot on PostgreSQL)",
            field="after",
        )
    entry_id = int(given[2])
    if given[1] is not None or not by_transaction:
        return int(given[1] or 0), entry_id
    xid = session.scalar(select(TimelineEntry.xid).where(TimelineEntry.id == entry_id))
    return xid or 0, entry_id


def count_requests(session: Session, *, by: str, where: RequestFilter) -> list[dict[str, Any]]:
    """How many requests ``where`` selects, by ``by``: largest first."""
    r = ServiceRequest
    keys: list[Any]
    if by == "category":
        keys = [r.category]
    elif by == "status":
        keys = [r.status]
    elif by == "building":
        keys = [r.community, r.building]
    elif by == "group":
        keys = [Category.group]
    else:
        raise Invalid(f"Counts are by one of {COUNTED_BY}", field="by")
    query = select(*keys, func.count().label("count")).select_from(r)
    if by == "group":
        query = query.join(Category, Category.code == r.category)
    number = func.count()
    query = query.where(*_conditions(where)).group_by(*keys).order_by(number.desc(), *keys)
    counted = []
    for row in session.execute(query):
        values = list(row)
        counted.append(
            {
                "value": "/".join(str(part) for part in values[:-1] if part is not None) or None,
                "count": int(values[-1]),
            }
        )
    return counted
