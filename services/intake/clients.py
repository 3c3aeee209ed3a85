"""API clients: the keys other systems, staff consoles and administration tools call intake with.

A key is shown once, when it is issued; only its SHA-256 hash is kept. It holds scopes, which
say what it may do (``SCOPES``), within what its role allows; it may have a rate limit of its
own; its last use is written down (once a minute at most); and it is revoked, never deleted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.intake.models import ApiClient
from shared.auth import KeyHolder, Principal, hash_api_key, new_api_key
from shared.clock import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.settings import RATE_LIMIT_FORM, rate_limit_refusal

# Every scope a key may hold, and what it lets the key do. Which operation needs which scope is
# policy.SCOPES; an operation it does not name (reading the catalogue) any key may call.
SCOPES = {
    "requests:read": "list and read requests, follow the change feed, count requests",
    "requests:write": "submit requests and act on them: triage, start, escalate, cancel, "
    "reject, reopen, merge, notes and attachments",
    "catalogue:write": "add and change the catalogue's categories (reading it needs no scope)",
    "directory:read": "read the grid and the residents",
    "directory:write": "change the grid, register residents and change their records",
    "health:write": "add notes to residents' health records (staff consoles only)",
    "webhooks": "register receivers for the events of the key's own requests and look after them",
    "open311": "post and read requests through the Open311 facade with this api_key",
    "admin": "issue, list and revoke API keys, and nothing else",
}
ADMIN_SCOPE = "admin"
# The scopes a key of each role may hold; a key issued without naming them gets them all.
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "system": tuple(scope for scope in SCOPES if scope not in ("health:write", ADMIN_SCOPE)),
    "staff": tuple(scope for scope in SCOPES if scope != ADMIN_SCOPE),
    "admin": (ADMIN_SCOPE,),
}
ROLES = tuple(ROLE_SCOPES)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_PAGE_SIZE = 100
# A key's last use is written when the one on record is older than this.
LAST_USED_PRECISION = timedelta(minutes=1)


def _checked_scopes(role: str, scopes: Sequence[str] | None) -> list[str]:
    if role not in ROLE_SCOPES:
        raise Invalid(f"An API client is one of {list(ROLES)}, not {role!r}", field="role")
    if scopes is None:
        return list(ROLE_SCOPES[role])
    if len(set(scopes)) != len(scopes):
        raise Invalid("A key names each of its scopes once", field="scopes")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise Invalid(
            f"Unknown scopes {unknown}: a key holds some of {list(SCOPES)}", field="scopes"
        )
    if not scopes:
        raise Invalid("A key holds at least one scope", field="scopes")
    if ADMIN_SCOPE in scopes and (role != "admin" or len(set(scopes)) > 1):
        raise Invalid(
            "The admin scope is held alone, by a key of the admin role: other work gets a key "
            "of its own",
            field="scopes",
        )
    beyond = sorted(set(scopes) - set(ROLE_SCOPES[role]))
    if beyond:
        raise Invalid(
            f"Keys of the {role} role may hold only {list(ROLE_SCOPES[role])}, not {beyond}",
            field="scopes",
        )
    return [scope for scope in SCOPES if scope in scopes]


def _checked_rate_limit(rate_limit: str | None) -> str | None:
    if rate_limit is None:
        return None
    why = rate_limit_refusal(rate_limit)
    if why is not None:
        raise Invalid(
            f"A rate limit is {RATE_LIMIT_FORM}: {rate_limit[:40]!r} is not one, as {why}",
            field="rate_limit",
        )
    return rate_limit


def create_api_client(
    session: Session,
    *,
    name: str,
    role: str | None = None,
    scopes: Sequence[str] | None = None,
    rate_limit: str | None = None,
) -> tuple[ApiClient, str]:
    """Register a client; the key is returned once and only its hash is kept.

    Without ``role``, a key holding the admin scope is an admin key and any other a system's;
    without ``scopes``, it holds every scope its role allows.
    """
    if not NAME.fullmatch(name):
        raise Invalid(
            "A client's name is 1 to 100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
            field="name",
        )
    if role is None:
        role = "admin" if scopes is not None and ADMIN_SCOPE in scopes else "system"
    held = _checked_scopes(role, scopes)
    key = new_api_key()
    client = ApiClient(
        name=name,
        role=role,
        key_hash=hash_api_key(key),
        scopes=held,
        rate_limit=_checked_rate_limit(rate_limit),
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(client)
    except IntegrityError:
        raise Conflict(f"API client {name!r} already exists: revoked names are kept") from None
    return client, key


def rekey_api_client(session: Session, *, name: str) -> tuple[ApiClient, str]:
    """Give a client a new key (the old one stops working) and take back a revocation."""
    client = get_api_client(session, name)
    key = new_api_key()
    client.key_hash = hash_api_key(key)
    client.revoked_at = None
    session.flush()
    return client, key


def get_api_client(session: Session, name: str) -> ApiClient:
    client = session.scalars(select(ApiClient).filter_by(name=name)).first()
    if client is None:
        raise NotFound(f"No API client {name!r}")
    return client


def _cursor(name: str, is_revoked: bool | None) -> str:
    """The cursor of a page ending at client ``name``, for the list filtered by ``is_revoked``."""
    carried = json.dumps([name, is_revoked]).encode()
    return base64.urlsafe_b64encode(carried).decode().rstrip("=")


def _after(cursor: str, is_revoked: bool | None) -> str:
    """The name a cursor of this list (this filter) was given after; Invalid for anything
    else, made by hand or given for the list with another filter."""
    try:
        carried = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(carried, list) or len(carried) != 2:
            raise ValueError("wrong length")
        name, filtered = carried
        if not isinstance(name, str) or not NAME.fullmatch(name) or filtered != is_revoked:
            raise ValueError("another list's")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            "Not a cursor of this list of API clients: pass back the next_cursor given, with "
            "the same filter",
            field="after",
        ) from None
    return name


@dataclass(frozen=True)
class ClientPage:
    items: list[ApiClient]
    total: int
    next_cursor: str | None


def list_api_clients(
    session: Session,
    *,
    after: str | None = None,
    page_size: int = 50,
    is_revoked: bool | None = None,
) -> ClientPage:
    """Clients by name, a page at a time: ``after`` is the cursor the page before gave."""
    query = select(ApiClient)
    if is_revoked is not None:
        query = query.where(
            ApiClient.revoked_at.is_not(None) if is_revoked else ApiClient.revoked_at.is_(None)
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if after is not None:
        query = query.where(ApiClient.name > _after(after, is_revoked))
    found = list(session.scalars(query.order_by(ApiClient.name).limit(page_size + 1)))
    items = found[:page_size]
    more = len(found) > page_size
    following = _cursor(items[-1].name, is_revoked) if more else None
    return ClientPage(items=items, total=total, next_cursor=following)


def revoke_api_client(session: Session, *, name: str) -> ApiClient:
    """Revoke a client's key for good; revoking it again changes nothing."""
    client = session.scalars(select(ApiClient).filter_by(name=name).with_for_update()).first()
    if client is None:
        raise NotFound(f"No API client {name!r}")
    if client.revoked_at is None:
        client.revoked_at = utcnow()
        session.flush()
    return client


def key_holder(session: Session, key: str) -> KeyHolder | None:
    """Who holds ``key``, with its scopes and limit; None for an unknown or revoked key."""
    client = session.scalars(select(ApiClient).filter_by(key_hash=hash_api_key(key))).first()
    if client is None or client.revoked_at is not None:
        return None
    return KeyHolder(
        principal=Principal(subject=f"client:{client.name}", role=client.role, is_system=True),
        key_hash=client.key_hash,
        scopes=frozenset(client.scopes or ()),
        rate_limit=client.rate_limit,
    )


def authenticate_api_key(session: Session, key: str) -> Principal | None:
    holder = key_holder(session, key)
    return None if holder is None else holder.principal


def note_key_used(session: Session, *, key_hash: str, at: datetime | None = None) -> None:
    """Write down that a key was used at ``at``, unless its last use on record is that recent:
    several processes noting the same minute write the row once."""
    at = at or utcnow()
    session.execute(
        update(ApiClient)
        .where(
            ApiClient.key_hash == key_hash,
            or_(
                ApiClient.last_used_at.is_(None),
                ApiClient.last_used_at < at - LAST_USED_PRECISION,
            ),
        )
        .values(last_used_at=at)
    )
