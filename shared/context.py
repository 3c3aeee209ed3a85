"""Where the current unit of work came from, carried into every message it causes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)


def new_id() -> str:
    return uuid.uuid4().hex


def correlation_id() -> str | None:
    return _correlation_id.get()


def causation_id() -> str | None:
    return _causation_id.get()


@contextmanager
def work_context(
    *, correlation: str | None, causation: str | None = None, **log_fields: object
) -> Iterator[str]:
    """Bind the correlation and causation ids (and log fields) for one unit of work."""
    correlation = correlation or new_id()
    tokens = (_correlation_id.set(correlation), _causation_id.set(causation))
    with structlog.contextvars.bound_contextvars(
        correlation_id=correlation, causation_id=causation, **log_fields
    ):
        try:
            yield correlation
        finally:
            _correlation_id.reset(tokens[0])
            _causation_id.reset(tokens[1])
