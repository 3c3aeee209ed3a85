"""How fast staff lists answer as requests pile up: ``GET /v1/requests`` through the app, in
this process, with a staff token, on a community holding 10 thousand requests and then a
million. For ``make bench``; it writes to the database it is given, which must be a migrated
intake database of the bench's own.

Three lists are timed, each answer read in full (query, total, serialisation):

- first: a building's open requests, newest first (the building leader's console);
- overdue: a building's open requests past their deadline, most urgent first (story 9's);
- deep: the community's requests, newest first, the page ``DEPTH`` pages in by ``next_cursor``.

The requests are written in bulk (COPY on PostgreSQL, executemany on SQLite) in the order they
were made, spread over 90 days, buildings, categories, priorities and channels, most of those
older than a few days closed. Each carries two timeline entries, its submission and its latest
step, where one that went the whole way in service has about six: the lists read the timeline
of each request on the page by its id, so that costs the same at every size.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import JSON, Connection, Table, insert, select, text

from services.intake import catalogue, directory
from services.intake.app import create_app
from services.intake.models import Resident, ServiceRequest, TimelineEntry
from services.intake.requests import (
    ACCEPTED,
    ASSIGNED,
    CANCELLED,
    CLOSED,
    COMPLETED,
    CONFIRMED,
    ESCALATED,
    FAR_FUTURE,
    IN_SERVICE,
    NEEDS_TRIAGE,
    OPEN,
    REJECTED,
    REOPENED,
    SUBMITTED,
    TRIAGED,
    URGENCY,
)
from shared.auth import issue_token
from shared.clock import utcnow
from shared.database import Database
from shared.service_app import current_service
from shared.settings import Settings

COMMUNITY = "bench-garden"
BUILDINGS = 20
UNITS = 3
HOUSEHOLDS_PER_UNIT = 10
VOLUNTEERS = 300
SPAN = timedelta(days=90)
PAGE_SIZE = 20
# How many pages in the deep page is, following next_cursor from the first.
DEPTH = 50
# Requests written a transaction (and a COPY) while filling.
BATCH = 20_000
LISTS = ("first", "overdue", "deep")
# Each status by a request's age: the newest mostly still open, the old nearly all done.
_STATUSES_BY_AGE: tuple[tuple[timedelta, dict[str, float]], ...] = (
    (
        timedelta(days=2),
        {
            SUBMITTED: 25,
            NEEDS_TRIAGE: 3,
            TRIAGED: 12,
            ASSIGNED: 15,
            ACCEPTED: 10,
            IN_SERVICE: 10,
            ESCALATED: 3,
            COMPLETED: 15,
            CONFIRMED: 5,
            CANCELLED: 2,
        },
    ),
    (
        timedelta(days=7),
        {
            SUBMITTED: 2,
            TRIAGED: 3,
            ASSIGNED: 5,
            ACCEPTED: 3,
            IN_SERVICE: 4,
            ESCALATED: 2,
            REOPENED: 1,
            COMPLETED: 20,
            CONFIRMED: 35,
            CLOSED: 20,
            CANCELLED: 3,
            REJECTED: 2,
        },
    ),
    (
        SPAN,
        {
            SUBMITTED: 0.3,
            ASSIGNED: 0.5,
            IN_SERVICE: 0.5,
            ESCALATED: 0.4,
            REOPENED: 0.3,
            CONFIRMED: 55,
            CLOSED: 35,
            CANCELLED: 5,
            REJECTED: 3,
        },
    ),
)
_PRIORITIES = {"low": 20, "normal": 60, "high": 15, "urgent": 5}
_CHANNELS = {
    "app": 40,
    "phone": 20,
    "hotline": 12,
    "walk_in": 8,
    "talk_point": 6,
    "api": 6,
    "watch_post": 4,
    "patrol": 2,
    "partner_system": 2,
}
# Statuses still waiting to be acknowledged: their deadline pending is the acknowledgement.
_TO_ACKNOWLEDGE = {SUBMITTED, NEEDS_TRIAGE, ESCALATED, REOPENED}
_ASSIGNED = {ASSIGNED, ACCEPTED, IN_SERVICE, COMPLETED, CONFIRMED, CLOSED}
_DONE = {COMPLETED, CONFIRMED, CLOSED}
_REQUEST_COLUMNS = (
    "id",
    "category",
    "priority",
    "urgency",
    "status",
    "summary",
    "details",
    "channel",
    "submitted_by",
    "is_on_behalf",
    "resident_id",
    "community",
    "building",
    "unit",
    "household",
    "answers",
    "attachments",
    "acknowledge_by",
    "resolve_by",
    "due_at",
    "assignee_type",
    "assignee_id",
    "assignee_name",
    "completed_at",
    "created_at",
    "updated_at",
)
_ENTRY_COLUMNS = (
    "request_id",
    "status",
    "action",
    "actor",
    "is_public",
    "note",
    "details",
    "at",
    "recorded_at",
)


@dataclass(frozen=True)
class ListsTimed:
    """The lists timed with ``stored`` requests in the database, written in ``fill_seconds``
    (those added since the previous size); ``seconds`` each answer of each list took,
    ``paging`` each list's X-Pagination for building 1 (the deep one's for its page), and
    ``depth`` the page the deep one reached."""

    stored: int
    fill_seconds: float
    seconds: dict[str, list[float]]
    paging: dict[str, dict[str, Any]]
    depth: int


@dataclass(frozen=True)
class Home:
    resident_id: str
    building: str
    unit: str
    household: str


def bench_lists(
    settings: Settings, sizes: Sequence[int], *, repeats: int = 100, seed: int = 311
) -> Iterator[ListsTimed]:
    """For each of ``sizes`` in turn (ascending), fill intake's database up to that many
    requests and time the lists, ``repeats`` answers each."""
    if repeats < 1:
        raise ValueError("repeats is at least 1")
    db = Database(settings.database_url)
    app = create_app(settings)
    token = issue_token(
        settings.auth_secret, subject="bench-duty-officer", role="staff", audience=("intake",)
    )
    try:
        homes, deadlines = seed_community(db)
        stored = 0
        rng = random.Random(seed)
        with app.test_client() as client:
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            for size in sizes:
                if size < stored:
                    raise ValueError("sizes go up: the bench only adds requests")
                started = time.perf_counter()
                fill_requests(db, homes, deadlines, count=size - stored, now=utcnow(), rng=rng)
                _settle(db)
                filled = time.perf_counter() - started
                stored = size
                yield time_lists(client, repeats=repeats, stored=stored, fill_seconds=filled)
    finally:
        db.dispose()
        with app.app_context():
            current_service().db.dispose()
            current_service().broker.close()


def seed_community(db: Database) -> tuple[list[Home], dict[str, dict[str, Any]]]:
    """The demo catalogue and a community of buildings, units and households, a resident in
    each (kept if a previous run made them)."""
    with db.transaction() as session:
        known = {code for code in session.scalars(select(catalogue.Category.code))}
        for entry in catalogue.catalogue_entries():
            fields = dict(entry)
            code, names = fields.pop("code"), fields.pop("names")
            if code not in known:
                catalogue.add_category(session, code=code, names=names, **fields)
        residents = {
            (r.household.building, r.household.unit, r.household.household): r.id
            for r in session.scalars(select(Resident))
            if r.household.community == COMMUNITY
        }
        for building in range(1, BUILDINGS + 1):
            for unit in range(1, UNITS + 1):
                for number in range(HOUSEHOLDS_PER_UNIT):
                    key = (str(building), str(unit), f"{number // 2 + 1}0{number % 2 + 1}")
                    if key in residents:
                        continue
                    node = directory.add_household(
                        session, community=COMMUNITY, building=key[0], unit=key[1], number=key[2]
                    )
                    resident = directory.register_resident(
                        session, name=f"Resident {'-'.join(key)}", household=node
                    )
                    residents[key] = resident.id
        deadlines = {
            category.code: category.deadlines
            for category in session.scalars(select(catalogue.Category))
        }
    homes = [Home(rid, *key) for key, rid in sorted(residents.items())]
    return homes, deadlines


def fill_requests(
    db: Database,
    homes: Sequence[Home],
    deadlines: dict[str, dict[str, Any]],
    *,
    count: int,
    now: datetime,
    rng: random.Random,
) -> None:
    """Write ``count`` requests, and their timelines, made over the ``SPAN`` before ``now`` and
    written in the order they were made, as in service."""
    codes = sorted(deadlines)
    priorities, priority_weights = zip(*_PRIORITIES.items(), strict=True)
    channels, channel_weights = zip(*_CHANNELS.items(), strict=True)
    volunteers = [f"bench-volunteer-{number}" for number in range(VOLUNTEERS)]
    for first in range(0, count, BATCH):
        requests: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        for number in range(first, min(first + BATCH, count)):
            created = now - SPAN + SPAN * ((number + rng.random()) / count)
            age = now - created
            status = _status(rng, age)
            priority = rng.choices(priorities, priority_weights)[0]
            category = rng.choice(codes)
            home = rng.choice(homes)
            limits = deadlines[category][priority]
            acknowledge_by = created + timedelta(minutes=limits["acknowledge_minutes"])
            resolve_by = created + timedelta(minutes=limits["resolve_minutes"])
            if status in _TO_ACKNOWLEDGE:
                due = acknowledge_by
            elif status in OPEN:
                due = resolve_by
            else:
                due = FAR_FUTURE
            updated = created + min(age, timedelta(days=3)) * rng.random()
            volunteer = rng.choice(volunteers) if status in _ASSIGNED else None
            request_id = f"{rng.getrandbits(128):032x}"
            by_resident = rng.random() < 0.4
            requests.append(
                (
                    request_id,
                    category,
                    priority,
                    URGENCY[priority],
                    status,
                    f"{category.replace('_', ' ').capitalize()} at {home.building}-"
                    f"{home.unit}-{home.household}",
                    "",
                    rng.choices(channels, channel_weights)[0],
                    home.resident_id if by_resident else "client:city-hotline",
                    not by_resident,
                    home.resident_id,
                    COMMUNITY,
                    home.building,
                    home.unit,
                    home.household,
                    "{}",
                    "[]",
                    acknowledge_by,
                    resolve_by,
                    due,
                    "volunteer" if volunteer else None,
                    volunteer,
                    f"Volunteer {volunteer[-3:]}" if volunteer else None,
                    updated if status in _DONE else None,
                    created,
                    updated,
                )
            )
            entries.append(
                (request_id, SUBMITTED, "submitted", "bench", True, "", "{}", created, created)
            )
            if status != SUBMITTED:
                entries.append(
                    (request_id, status, status, "bench", True, "", "{}", updated, updated)
                )
        with db.engine.begin() as connection:
            if db.is_sqlite:
                # Room for the indexes' pages the batch writes to, in this connection only.
                connection.exec_driver_sql("PRAGMA cache_size = -262144")
            _write(connection, ServiceRequest.__table__, _REQUEST_COLUMNS, requests)  # type: ignore[arg-type]
            _write(connection, TimelineEntry.__table__, _ENTRY_COLUMNS, entries)  # type: ignore[arg-type]


def _status(rng: random.Random, age: timedelta) -> str:
    weights = next(weights for younger_than, weights in _STATUSES_BY_AGE if age < younger_than)
    return rng.choices(list(weights), list(weights.values()))[0]


def _write(
    connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    if connection.dialect.name == "postgresql":
        # COPY: several times faster than the INSERTs of executemany.
        raw = connection.connection.driver_connection
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
    connection.execute(
        insert(table),
        [
            {
                name: json.loads(value) if name in json_columns else value
                for name, value in zip(columns, row, strict=True)
            }
            for row in rows
        ],
    )


def _settle(db: Database) -> None:
    """What the database does by itself after a bulk load, done at once so that it does not
    happen while the lists are timed: PostgreSQL's autovacuum (statistics and the visibility
    map); SQLite has no statistics unless asked, and none are asked for in service."""
    if db.is_sqlite:
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("requests", "request_timeline"):
            connection.execute(text(f"VACUUM ANALYZE {table}"))


def _query(name: str, building: str) -> dict[str, Any]:
    """The query string of list ``name`` (``building``'s, but for the deep list)."""
    lists: dict[str, dict[str, Any]] = {
        "first": {"building": building, "status": list(OPEN), "sort": "newest"},
        "overdue": {"building": building, "open": "true", "overdue": "true", "sort": "urgency"},
        "deep": {"sort": "newest"},
    }
    return {"community": COMMUNITY, "page_size": PAGE_SIZE, **lists[name]}


def _paging(client: FlaskClient, query: dict[str, Any]) -> dict[str, Any]:
    """The X-Pagination of the list ``query`` asks for, the answer read but not parsed."""
    response = client.get("/v1/requests", query_string=query)
    if response.status_code != 200:
        raise RuntimeError(f"the list answered {response.status_code}: {response.text[:300]}")
    paging: dict[str, Any] = json.loads(response.headers["X-Pagination"])
    return paging


def time_lists(
    client: FlaskClient, *, repeats: int, stored: int, fill_seconds: float
) -> ListsTimed:
    """Each list ``repeats`` times, the first two lists going round the buildings."""
    timed: dict[str, list[float]] = {}
    pagings: dict[str, dict[str, Any]] = {}
    # The deep page's cursor: DEPTH - 1 pages followed from the first, or as far as they go.
    deep = _query("deep", "")
    depth = 1
    paging = _paging(client, deep)
    while depth < DEPTH and paging["next_cursor"]:
        deep = {**deep, "after": paging["next_cursor"]}
        paging = _paging(client, deep)
        depth += 1
    for name in LISTS:
        seconds: list[float] = []
        # A few answers first, so that no figure pays for first connections and caches.
        for number in range(-3, repeats):
            query = deep if name == "deep" else _query(name, str(number % BUILDINGS + 1))
            started = time.perf_counter()
            paging = _paging(client, query)
            if number >= 0:
                seconds.append(time.perf_counter() - started)
            if number == 0:
                pagings[name] = paging
        timed[name] = seconds
    return ListsTimed(stored, fill_seconds, timed, pagings, depth)
