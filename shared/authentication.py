"""Who is calling over HTTP: the credentials of a request, read once, and the 401/403 answers."""

from __future__ import annotations

from collections.abc import Callable

from flask import g, request

from shared.auth import AuthenticationError, Principal, verify_token

ApiKeyLookup = Callable[[str], Principal | None]


class AuthProblem(Exception):
    """The caller is unknown (401) or may not do this (403)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail

    @property
    def code(self) -> str:
        return "unauthenticated" if self.status == 401 else "forbidden"


def current_principal() -> Principal | None:
    return getattr(g, "principal", None)


def require(*roles: str) -> Principal:
    """The authenticated caller, who must hold one of ``roles``; else 401 or 403."""
    principal = current_principal()
    if principal is None:
        raise AuthProblem(
            401, "Authentication required", "Send an API key (X-API-Key) or a bearer token."
        )
    if roles and principal.role not in roles:
        raise AuthProblem(
            403,
            "Forbidden",
            f"Role {principal.role!r} may not do this; needs one of {list(roles)}.",
        )
    return principal


def authenticate(*, secret: str, service: str, api_key_lookup: ApiKeyLookup | None) -> None:
    """Read the request's credentials into ``g.principal``; AuthProblem if they are bad."""
    g.principal = None
    key = request.headers.get("X-API-Key")
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "apikey" and credentials:
        key = credentials.strip()
    if key:
        principal = api_key_lookup(key) if api_key_lookup else None
        if principal is None:
            raise AuthProblem(401, "Authentication failed", "Unknown or revoked API key.")
        g.principal = principal
    elif scheme.lower() == "bearer" and credentials:
        try:
            g.principal = verify_token(secret, credentials.strip(), service=service)
        except AuthenticationError as error:
            raise AuthProblem(401, "Authentication failed", str(error)) from error
