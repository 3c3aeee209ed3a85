"""Idempotent POSTs: the same ``Idempotency-Key`` with the same body returns the first answer.

The key's record is written in the same transaction as the effect it protects, so a retry
after a time-out finds either nothing (the first attempt rolled back) or the full answer.
A retry does the work again and rolls it back when the key's record is found: retries are
rare, and every first attempt is spared a look-up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Response, request
from marshmallow import Schema
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.auth import Principal
from shared.clock import utcnow
from shared.database import Database
from shared.errors import DomainError, Invalid
from shared.messaging import Messaging

MAX_KEY_LENGTH = 255
IDEMPOTENCY_HEADER_DOC = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
    "description": "Retries with the same key and body return the first answer; "
    "the same key with a different body is refused with 422.",
}


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class Answered:
    """What a create made, with its answer's body already made (``created_once`` dumps
    anything else): a create can make the body before the write transaction, leaving only
    what the writes alone know to fill in while other writers wait."""

    made: Any
    body: Any


def fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Invalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", field="Idempotency-Key"
        )
    return key


def _stored(db: Database, messaging: Messaging, client: str, key: str) -> Any:
    table = messaging.idempotency_keys
    with db.read() as session:
        return session.execute(
            select(table).where(table.c.client == client, table.c.key == key)
        ).first()


def _replay(row: Any, digest: str) -> StoredResponse:
    if row.fingerprint != digest:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was first used with a different body; use a new key."
        )
    return StoredResponse(row.status_code, row.body, dict(row.headers), replayed=True)


def _checked_first(
    db: Database, check: Callable[[Session], Any] | None
) -> Callable[[Session], Any]:
    """``check``'s reads: on SQLite in a read transaction of their own, before the write lock is
    taken, so other writers wait only for the writes; elsewhere in the write transaction, a
    round trip fewer than a transaction of their own."""
    if check is None:
        return lambda session: None
    if not db.is_sqlite:
        return check
    with db.read() as session:
        checked = check(session)
    return lambda session: checked


def run_once(
    db: Database,
    messaging: Messaging,
    *,
    client: str,
    key: str | None,
    payload: Any,
    action: Callable[..., StoredResponse],
    check: Callable[[Session], Any] | None = None,
) -> StoredResponse:
    """Run ``action`` in a transaction, unless ``client`` already ran it under ``key``.

    With ``check``, ``action(session, check(session))``: ``check`` reads and checks what the
    action needs, which may change before the action writes; the action must write only what
    stays right whatever changed (constraints catch the rest).
    """

    def run(session: Session) -> StoredResponse:
        return action(session) if check is None else action(session, checked(session))

    if key is None:
        checked = _checked_first(db, check)
        with db.transaction() as session:
            return run(session)
    key = validate_key(key)
    digest = fingerprint(payload)
    # Most keys are new: the action runs straight away and the key's record is its last
    # statement. A key already used makes that INSERT fail (or the check or the action, if
    # what they read has changed since), and the first answer is read instead.
    try:
        checked = _checked_first(db, check)
        with db.transaction() as session:
            response = run(session)
            messaging.insert_idempotency_key.execute(
                session,
                {
                    "client": client,
                    "key": key,
                    "fingerprint": digest,
                    "status_code": response.status_code,
                    "body": response.body,
                    "headers": response.headers,
                    "created_at": utcnow(),
                },
            )
            return response
    except (IntegrityError, DomainError):
        # Either an earlier request with this key, or a concurrent one that committed first.
        row = _stored(db, messaging, client, key)
        if row is None:
            raise
        return _replay(row, digest)


def stored_response(stored: StoredResponse) -> Response:
    """The HTTP answer for a ``StoredResponse``, marking replays."""
    response = Response(
        json.dumps(stored.body, default=str), status=stored.status_code, mimetype="application/json"
    )
    for name, value in stored.headers.items():
        response.headers[name] = value
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def created_once(
    db: Database,
    messaging: Messaging,
    principal: Principal,
    create: Callable[..., Any],
    *,
    schema: Schema,
    location: Callable[[Any], str],
    check: Callable[[Session], Any] | None = None,
) -> Response:
    """Answer 201 with what ``create(session)`` made, once per ``Idempotency-Key`` and client.

    With ``check``, ``create(session, check(session))``: the reads and checks come first (on
    SQLite before the write lock is taken, see ``run_once``), then the writes. A create that
    returns ``Answered`` gives its answer's body itself.
    """

    def action(session: Session, *checked: Any) -> StoredResponse:
        created = create(session, *checked)
        if isinstance(created, Answered):
            return StoredResponse(201, created.body, {"Location": location(created.made)})
        return StoredResponse(201, schema.dump(created), {"Location": location(created)})

    return stored_response(
        run_once(
            db,
            messaging,
            client=f"{principal.role}:{principal.subject}",
            key=request.headers.get("Idempotency-Key"),
            payload=request.get_json(silent=True),
            action=action,
            check=check,
        )
    )
