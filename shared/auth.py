"""Who is calling: API keys for other systems, signed tokens for people.

- ``X-API-Key: <key>`` (or ``Authorization: ApiKey <key>``) identifies another system, a staff
  console or an administration tool; a service that accepts keys looks them up by hash in its
  own table. A key holds scopes (what it may do) and has a rate limit.
- ``Authorization: Bearer <token>`` carries a JWT (HS256) naming a person and a role:
  ``staff``, ``volunteer``, ``resident``, ``health`` or ``admin``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Generic, TypeVar

import jwt
from limits import RateLimitItem, parse

from shared.people import address
from shared.topology import SERVICES

# Roles a bearer token may carry: other systems authenticate with API keys only.
TOKEN_ROLES = ("staff", "volunteer", "resident", "health", "admin", "grid_leader", "team_lead")
# Roles that are a person's standing, not who they are: a grid leader is a resident and a team
# lead a volunteer wherever other services name them.
_ADDRESSED_AS = {"grid_leader": "resident", "team_lead": "volunteer"}
STAFF_ROLES = ("system", "staff")
# A token names the services it may be used at; by default, all of them.
ALL_SERVICES = SERVICES
TOKEN_ISSUER = "redvest"


class AuthenticationError(Exception):
    """The credentials are missing, malformed, expired or unknown."""


@dataclass(frozen=True)
class Principal:
    """The caller: ``subject`` is ``client:<name>`` for systems, else the person's id.

    ``is_system`` marks a caller known by an API key (another system or a staff console): it
    acts for people but is not one, so it never stands where a person must (a confirmation).
    """

    subject: str
    role: str
    is_system: bool = False

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def address(self) -> str:
        """How other services name this caller (``staff:duty-officer``, ``volunteer:42``)."""
        return address(_ADDRESSED_AS.get(self.role, self.role), self.subject)


@dataclass(frozen=True)
class KeyHolder:
    """Who holds an API key, what it may do and how often: ``rate_limit`` is a limit such as
    ``600/minute``, None for the service's default."""

    principal: Principal
    key_hash: str
    scopes: frozenset[str]
    rate_limit: str | None = None


@lru_cache(maxsize=256)
def parse_rate_limit(limit: str) -> RateLimitItem:
    """A key's rate limit, ``600/minute`` or ``20 per second``; ValueError for anything else."""
    return parse(limit)


def new_api_key() -> str:
    return "rv_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(
    secret: str,
    *,
    subject: str,
    role: str,
    ttl: timedelta = timedelta(days=30),
    audience: Sequence[str] = ALL_SERVICES,
) -> str:
    """A signed token for a person, good at the ``audience`` services; it always expires."""
    if not audience or any(service not in ALL_SERVICES for service in audience):
        raise ValueError(f"a token's audience is some of {ALL_SERVICES}")
    if role not in TOKEN_ROLES:
        raise ValueError(f"tokens are for {TOKEN_ROLES}, not {role!r}")
    if ttl <= timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": subject,
        "role": role,
        "iss": TOKEN_ISSUER,
        "iat": now,
        "exp": now + ttl,
        "aud": list(audience),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str, *, service: str) -> Principal:
    """The person a token names, if it is genuine, current and meant for ``service``."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=TOKEN_ISSUER,
            audience=service,
            options={"require": ["sub", "role", "iss", "exp", "aud"]},
        )
    except jwt.PyJWTError as error:
        raise AuthenticationError(_why_refused(error, service)) from error
    role, subject = claims["role"], claims["sub"]
    if not isinstance(role, str) or role not in TOKEN_ROLES:
        raise AuthenticationError(
            f"The token's role is not for tokens: a token holds one of {list(TOKEN_ROLES)}."
        )
    if not isinstance(subject, str) or not subject.strip():
        raise AuthenticationError("The token's subject (sub) must be a person's id, as text.")
    return Principal(subject=subject, role=role)


def _why_refused(error: jwt.PyJWTError, service: str) -> str:
    """A sentence saying why a token was refused, for the caller to act on; never the
    library's own wording, which quotes the decoder."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "The token has expired: get a new one."
    if isinstance(error, jwt.ImmatureSignatureError):
        return "The token is not valid yet (its iat or nbf is in the future)."
    if isinstance(error, jwt.InvalidAudienceError):
        return f"The token is not meant for {service}: its audience (aud) does not name it."
    if isinstance(error, jwt.InvalidIssuerError):
        return f"The token was not issued by {TOKEN_ISSUER}."
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"The token has no {error.claim} claim; every token has sub, role, iss, exp, aud."
    if isinstance(error, jwt.InvalidSignatureError):
        return "The token's signature does not match: it was not signed for this deployment."
    if isinstance(error, jwt.exceptions.InvalidSubjectError):
        return "The token's subject (sub) must be a person's id, as text."
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "The token is not signed with HS256, the only algorithm accepted."
    return "The bearer credentials are not a token this service can read (a signed JWT)."


Known = TypeVar("Known")


class CachedKeyLookup(Generic[Known]):
    """Remembers known API keys for ``ttl_s`` seconds, so most requests skip the database.

    A key revoked by another process therefore keeps working for at most ``ttl_s`` seconds in
    each process; one revoked here is ``forget``-ten at once. Unknown keys are never remembered.
    """

    def __init__(
        self,
        lookup: Callable[[str], Known | None],
        *,
        ttl_s: float = 30.0,
        max_entries: int = 1024,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._known: dict[str, tuple[float, Known]] = {}
        self._lock = threading.Lock()

    def forget(self, key_hash: str) -> None:
        """Look the key of ``key_hash`` up afresh the next time it is used."""
        with self._lock:
            self._known.pop(key_hash, None)

    def __call__(self, key: str) -> Known | None:
        digest = hash_api_key(key)
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(digest)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        principal = self._lookup(key)
        with self._lock:
            if principal is None:
                self._known.pop(digest, None)
            else:
                if len(self._known) >= self._max_entries:
                    self._known.clear()
                self._known[digest] = (now, principal)
        return principal
