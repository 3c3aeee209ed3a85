"""Domain errors: raised by domain functions, shown as problem+json over HTTP and
dead-lettered (never retried) when raised while handling a message."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule of the domain refuses the operation; nothing was changed."""

    status = 400
    code = "domain-error"
    title = "The request cannot be carried out"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflicts with the current state"


class Invalid(DomainError):
    status = 422
    code = "invalid"
    title = "Invalid request"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Forbidden"
