"""The floor under intake's ``POST /v1/requests``, for ``make bench`` to measure beside the echo.

The floor does what the door must and nothing around it: it reads the API key, counts the call
in Redis, reads the category, the resident's home and a possible duplicate with intake's own
statement, writes the request, its first timeline entry, its outbox row and its idempotency
record in one SQLite transaction behind a lock shared by its processes, pushes one message to
Redis and answers with the request. It does so on a copy of intake's (seeded) database, so the
same tables, indexes and constraints take the writes, in plain sqlite3 and redis-py: no ORM, no
request or response schemas, no event contracts, no Dramatiq, no logs or metrics. The bench
prints its ratio to the echo: how much of the echo a POST can keep on this machine at best.

It is not a service and takes no other input: an unknown key gets 401, a body that is not a
JSON object with the three fields 422, an unknown resident or category 404.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response, request
from sqlalchemy import insert
from sqlalchemy.dialects import sqlite

from services.intake import catalogue, directory
from services.intake.models import ServiceRequest, TimelineEntry, messaging
from services.intake.requests import DUPLICATE_WINDOW, URGENCY, _category_and_home
from shared.database import SQLiteWriterLock

DATABASE = "FLOOR_DATABASE"
REDIS_URL = "FLOOR_REDIS_URL"
NAMESPACE = "FLOOR_NAMESPACE"


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` (WAL included) for the floor to write into."""
    with sqlite3.connect(source) as original, sqlite3.connect(target) as copy:
        original.backup(copy)
    copy.close()
    original.close()


Statement = tuple[str, tuple[str, ...], dict[str, Any]]


def _positional(statement: Any) -> Statement:
    """SQLite's text of a SQLAlchemy statement, the names of its ``?`` in order, and the values
    the statement itself holds (its literals become parameters too)."""
    compiled = statement.compile(dialect=sqlite.dialect())
    given = {name: None for name, value in compiled.params.items() if value is None}
    expanded = compiled.construct_expanded_state(given)
    return expanded.statement, tuple(expanded.positiontup or ()), dict(expanded.parameters)


def _when(moment: datetime) -> str:
    """A moment as SQLAlchemy stores it in SQLite (UTC, naive)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


_REQUEST_COLUMNS = tuple(column.name for column in ServiceRequest.__table__.columns)
_INSERT_REQUEST = _positional(insert(ServiceRequest).values(dict.fromkeys(_REQUEST_COLUMNS)))
_ENTRY_COLUMNS = ("request_id", "status", "action", "actor", "is_public", "note", "details", "at")
_INSERT_ENTRY = _positional(
    insert(TimelineEntry)
    .values(dict.fromkeys((*_ENTRY_COLUMNS, "recorded_at")))
    .returning(TimelineEntry.id)
)
_OUTBOX_COLUMNS = ("id", "event", "version", "payload", "correlation_id", "created_at", "attempts")
_INSERT_OUTBOX = _positional(insert(messaging.outbox).values(dict.fromkeys(_OUTBOX_COLUMNS)))
_KEY_COLUMNS = ("client", "key", "fingerprint", "status_code", "body", "headers", "created_at")
_INSERT_KEY = _positional(insert(messaging.idempotency_keys).values(dict.fromkeys(_KEY_COLUMNS)))
_CHECK = _positional(_category_and_home)


class _Connection(threading.local):
    """A sqlite3 connection of this thread's own (in this process: none crosses a fork)."""

    connection: sqlite3.Connection | None = None
    pid = 0

    def open(self, path: str) -> sqlite3.Connection:
        if self.connection is None or self.pid != os.getpid():
            self.connection = sqlite3.connect(path, isolation_level=None)
            self.connection.row_factory = sqlite3.Row
            for pragma in ("busy_timeout=5000", "foreign_keys=ON", "synchronous=NORMAL"):
                self.connection.execute(f"PRAGMA {pragma}")
            self.pid = os.getpid()
        return self.connection


def _run(
    connection: sqlite3.Connection, statement: Statement, row: dict[str, Any]
) -> sqlite3.Cursor:
    text, names, held = statement
    return connection.execute(
        text, tuple(row[name] if name in row else held[name] for name in names)
    )


def create_app() -> Flask:
    path = os.environ[DATABASE]
    client = redis.Redis.from_url(os.environ[REDIS_URL])
    namespace = os.environ[NAMESPACE]
    with sqlite3.connect(path) as connection:
        keys = {
            key_hash
            for (key_hash,) in connection.execute(
                "SELECT key_hash FROM api_clients WHERE revoked_at IS NULL"
            )
        }
    connection.close()
    here = _Connection()
    # The writers' queue intake's processes use (shared/database.py), on the floor's own file.
    writer = SQLiteWriterLock(path)
    app = Flask("floor")

    def problem(status: int, title: str) -> Response:
        return Response(json.dumps({"title": title}), status, mimetype="application/problem+json")

    @app.post("/v1/requests")
    def post() -> Response:
        key_hash = hashlib.sha256(request.headers.get("X-API-Key", "").encode()).hexdigest()
        if key_hash not in keys:
            return problem(401, "Authentication failed")
        client.incr(f"{namespace}:floor:calls:{key_hash}")
        raw = request.get_data()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(field), str) for field in ("category", "summary", "resident_id")
        ):
            return problem(422, "Invalid request")
        connection = here.open(path)
        now = datetime.now(UTC)
        found = _run(
            connection,
            _CHECK,
            {
                "category": data["category"],
                "resident_id": data["resident_id"],
                "since": _when(now - DUPLICATE_WINDOW),
            },
        ).fetchone()
        if found is None or found["category_code"] is None:
            return problem(404, "Not found")
        category = {"deadlines": json.loads(found["deadlines"]) if found["deadlines"] else None}
        priority = found["default_priority"]
        acknowledge, resolve = catalogue.deadlines_of(category, priority)
        place = {level: found[level] for level in directory.LEVELS}
        request_id = uuid.uuid4().hex
        at = _when(now)
        row = (
            dict.fromkeys(_REQUEST_COLUMNS)
            | place
            | {
                "id": request_id,
                "category": data["category"],
                "priority": priority,
                "urgency": URGENCY[priority],
                "status": "submitted",
                "summary": data["summary"],
                "details": data.get("details", ""),
                "channel": "api",
                "submitted_by": "client:floor",
                "is_on_behalf": 1,
                "resident_id": data["resident_id"],
                "answers": "{}",
                "attachments": "[]",
                "possible_duplicate_of": found["latest"],
                "acknowledge_by": _when(now + timedelta(minutes=acknowledge)),
                "resolve_by": _when(now + timedelta(minutes=resolve)),
                "due_at": _when(now + timedelta(minutes=acknowledge)),
                "created_at": at,
                "updated_at": at,
                "version": 1,
            }
        )
        entry = {
            "request_id": request_id,
            "status": "submitted",
            "action": "submitted",
            "actor": "client:floor",
            "is_public": 1,
            "note": "Submitted through api",
            "details": "{}",
            "at": at,
            "recorded_at": at,
        }
        event = {
            "request_id": request_id,
            "category": data["category"],
            "priority": priority,
            "summary": data["summary"],
            "resident_id": data["resident_id"],
            "location": place,
            "submitted_at": now.isoformat(),
        }
        message_id = uuid.uuid4().hex
        body = {
            key: row[key] for key in ("id", "category", "priority", "status", "summary", "details")
        } | {"location": place, "created_at": now.isoformat(), "timeline": []}
        with writer:
            connection.execute("BEGIN IMMEDIATE")
            try:
                _run(connection, _INSERT_REQUEST, row)
                entry_id = _run(connection, _INSERT_ENTRY, entry).fetchone()[0]
                body["timeline"] = [
                    {"id": entry_id, "note": entry["note"], "at": body["created_at"]}
                ]
                text = json.dumps(body)
                _run(
                    connection,
                    _INSERT_OUTBOX,
                    {
                        "id": message_id,
                        "event": "request.submitted",
                        "version": 1,
                        "payload": json.dumps(event),
                        "correlation_id": message_id,
                        "created_at": at,
                        "attempts": 0,
                    },
                )
                _run(
                    connection,
                    _INSERT_KEY,
                    {
                        "client": "client:floor",
                        "key": request.headers.get("Idempotency-Key", request_id),
                        "fingerprint": hashlib.sha256(raw).hexdigest(),
                        "status_code": 201,
                        "body": text,
                        "headers": "{}",
                        "created_at": at,
                    },
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        client.rpush(
            f"{namespace}:floor:published", json.dumps({"message_id": message_id, "kwargs": event})
        )
        return Response(
            text,
            201,
            mimetype="application/json",
            headers={"Location": f"/v1/requests/{request_id}"},
        )

    return app
