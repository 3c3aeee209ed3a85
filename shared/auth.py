"""Who is calling: API keys for other systems, signed tokens for people.

- ``X-API-Key: <key>`` (or ``Authorization: ApiKey <key>``) identifies another system or a
  staff console; a service that accepts keys looks them up by hash in its own table.
- ``Authorization: Bearer <token>`` carries a JWT (HS256) naming a person and a role:
  ``staff``, ``volunteer`` or ``resident``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ROLES = ("system", "staff", "volunteer", "resident")
TOKEN_ISSUER = "redvest"


class AuthenticationError(Exception):
    """The credentials are missing, malformed, expired or unknown."""


@dataclass(frozen=True)
class Principal:
    """The caller: ``subject`` is ``client:<name>`` for systems, else the person's id."""

    subject: str
    role: str

    @property
    def is_staff(self) -> bool:
        return self.role in ("system", "staff")


def new_api_key() -> str:
    return "rv_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(
    secret: str, *, subject: str, role: str, ttl: timedelta | None = timedelta(days=30)
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    now = datetime.now(UTC)
    claims: dict[str, object] = {"sub": subject, "role": role, "iss": TOKEN_ISSUER, "iat": now}
    if ttl is not None:
        claims["exp"] = now + ttl
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=TOKEN_ISSUER,
            options={"require": ["sub", "role", "iss"]},
        )
    except jwt.PyJWTError as error:
        raise AuthenticationError(f"invalid token: {error}") from error
    if claims["role"] not in ROLES:
        raise AuthenticationError("invalid token: unknown role")
    return Principal(subject=str(claims["sub"]), role=str(claims["role"]))
