"""The time, always timezone-aware and in UTC, and a clock that tests can stop and move.

``utcnow()`` is the one way the code reads the time. A test stops the clock for the whole
process with ``freeze(at)`` and moves it with ``advance(delta)``, so that no test sleeps for a
deadline::

    with freeze(datetime(2026, 1, 5, 9, 0, tzinfo=UTC)):
        ...
        advance(timedelta(minutes=5))
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import TracebackType

_lock = threading.Lock()
# None while the clock runs; otherwise the time every caller is told.
_frozen_at: datetime | None = None


def utcnow() -> datetime:
    """The current time in UTC (the frozen time, while a test holds the clock)."""
    frozen = _frozen_at
    return frozen if frozen is not None else datetime.now(UTC)


def is_frozen() -> bool:
    return _frozen_at is not None


class Frozen:
    """The clock held at a time; as a context manager, the clock is given back on exit."""

    def __init__(self, previous: datetime | None) -> None:
        self._previous = previous

    def __enter__(self) -> Frozen:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _frozen_at
        with _lock:
            _frozen_at = self._previous


def freeze(at: datetime) -> Frozen:
    """Stop the clock at ``at`` for every thread of the process, until ``unfreeze()`` or the
    end of the ``with`` block."""
    global _frozen_at
    if at.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
    with _lock:
        previous = _frozen_at
        _frozen_at = at.astimezone(UTC)
    return Frozen(previous)


def advance(delta: timedelta) -> datetime:
    """Move the stopped clock on by ``delta``; returns the new time."""
    global _frozen_at
    if delta < timedelta(0):
        # Time going backwards would let a deadline be met twice.
        raise ValueError("the clock only moves forward")
    with _lock:
        if _frozen_at is None:
            raise RuntimeError("freeze the clock before advancing it")
        _frozen_at += delta
        return _frozen_at


def unfreeze() -> None:
    """Let the clock run again."""
    global _frozen_at
    with _lock:
        _frozen_at = None
