"""Durable timers and periodic jobs: the deadlines a service owns, kept in its own database.

A timer is a row written in the transaction of the change that sets the deadline, under a key
that names the deadline (``assignment:42:acknowledge``): scheduling the same key again replaces
it, and cancelling it in the transaction that makes it moot removes it with that change. When
it falls due, the service's scheduler process (``shared/scheduler.py``) runs the handler its
``what`` names and marks it fired in one transaction.

A periodic job is declared with a cron expression and run by the same scheduler, one occurrence
at a time across replicas; ``job_runs`` records every occurrence.

Each service builds one ``Timers`` on its metadata (next to its ``Messaging``). A handler is
registered next to the rule that schedules it (so every process that schedules one knows it);
``services/<name>/timers.py``, the module the scheduler loads, imports those modules and
declares the service's periodic jobs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeVar, cast

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from shared.clock import utcnow
from shared.database import UtcDateTime
from shared.events import Event
from shared.messaging import Messaging

# A timer's states: waiting (or being retried), done, or given up on and kept for staff.
PENDING = "pending"
FIRED = "fired"
FAILED = "failed"
# A job-run's outcomes; "declared" marks where the scheduler began counting a new job's
# occurrences, so that a job is not run for occurrences from before it existed.
JOB_OK = "ok"
JOB_FAILED = "failed"
JOB_DECLARED = "declared"

KEY_LENGTH = 200
# The keys a transaction (re)scheduled, in its session's info: a handler that sets its own
# timer's next deadline (a recurring visit) must not see it marked fired after it returns.
RESCHEDULED = "redvest.timers.rescheduled"
# Published events and handled message ids are forgotten after this (see Messaging.purge).
PURGE_AFTER = timedelta(days=14)
NIGHTLY = "30 3 * * *"

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)
JobFunction = Callable[[Session], Mapping[str, Any] | None]


class TimerError(ValueError):
    """A timer or job declared or scheduled against the rules (a code error, not a domain one)."""


@dataclass(frozen=True)
class Job:
    """A periodic job: ``run(session)`` at each occurrence of ``trigger``, in one transaction."""

    name: str
    cron: str
    trigger: CronTrigger
    run: JobFunction

    def next_after(self, moment: datetime, *, now: datetime) -> datetime | None:
        """The first occurrence after ``moment``."""
        found: datetime | None = self.trigger.get_next_fire_time(moment, max(now, moment))
        return found.astimezone(UTC) if found is not None else None

    def first_from(self, moment: datetime) -> datetime | None:
        """The first occurrence at or after ``moment``."""
        found: datetime | None = self.trigger.get_next_fire_time(None, moment)
        return found.astimezone(UTC) if found is not None else None

    def latest_due(self, *, after: datetime, now: datetime) -> datetime | None:
        """The last occurrence in ``(after, now]``, or None when none is due: after downtime
        every missed occurrence is folded into this one."""
        first = self.next_after(after, now=now)
        if first is None or first > now:
            return None
        # first_from() grows with its argument: bisect for the last start still due by now.
        low, high = first, now + timedelta(microseconds=1)
        while high - low > timedelta(microseconds=1):
            middle = low + (high - low) / 2
            occurrence = self.first_from(middle)
            if occurrence is not None and occurrence <= now:
                low = middle
            else:
                high = middle
        return self.first_from(low)


@dataclass(frozen=True)
class Timer:
    """A timer as stored."""

    key: str
    what: str
    payload: dict[str, Any]
    due_at: datetime
    attempt_at: datetime
    state: str
    scheduled_at: datetime
    fired_at: datetime | None
    attempts: int
    last_error: str | None


def _accepts_timer_arguments(handler: Handler) -> bool:
    try:
        inspect.signature(handler).bind(None, key="", payload={})
    except TypeError:
        return False
    return True


class Timers:
    """A service's timer, job-run and lease tables on its metadata, and what its timers do."""

    def __init__(self, metadata: MetaData, *, messaging: Messaging) -> None:
        self.messaging = messaging
        self.timers = Table(
            "timers",
            metadata,
            Column("key", String(KEY_LENGTH), primary_key=True),
            Column("what", String(100), nullable=False),
            Column("payload", JSON, nullable=False),
            # When it is due, and when it is next tried (later than due_at after a failure).
            Column("due_at", UtcDateTime, nullable=False),
            Column("attempt_at", UtcDateTime, nullable=False),
            Column("state", String(10), nullable=False),
            Column("scheduled_at", UtcDateTime, nullable=False),
            Column("fired_at", UtcDateTime),
            Column("attempts", Integer, nullable=False, default=0),
            Column("last_error", Text),
            Index("ix_timers_due", "state", "attempt_at"),
        )
        self.job_runs = Table(
            "job_runs",
            metadata,
            Column("job", String(100), primary_key=True),
            Column("scheduled_for", UtcDateTime, primary_key=True),
            Column("ran_at", UtcDateTime),
            Column("outcome", String(10), nullable=False),
            Column("detail", Text),
            Column("runner", String(100)),
        )
        self.leases = Table(
            "scheduler_leases",
            metadata,
            Column("name", String(100), primary_key=True),
            Column("holder", String(100), nullable=False),
            Column("acquired_at", UtcDateTime, nullable=False),
            Column("expires_at", UtcDateTime, nullable=False),
        )
        self.handlers: dict[str, Handler] = {}
        self.jobs: dict[str, Job] = {}
        # Checks a payload when it is scheduled, so a bad one fails its caller, not the timer.
        self._checks: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}
        metadata.info["redvest.timers"] = self

    @staticmethod
    def on(metadata: MetaData) -> Timers | None:
        """The timers built on ``metadata``, if any."""
        found = metadata.info.get("redvest.timers")
        return found if isinstance(found, Timers) else None

    # Declaring what timers do and which jobs run.

    def register(self, what: str, handler: Handler) -> None:
        """Run ``handler(session, key=..., payload=...)`` when a ``what`` timer falls due."""
        if what in self.handlers:
            raise TimerError(f"a handler for {what!r} is registered already")
        if not _accepts_timer_arguments(handler):
            raise TimerError(f"the handler for {what!r} must take (session, *, key, payload)")
        self.handlers[what] = handler

    def handler(self, what: str) -> Callable[[H], H]:
        """Decorator form of ``register``."""

        def decorate(handler: H) -> H:
            self.register(what, handler)
            return handler

        return decorate

    def stages(self, what: str, event: Event) -> None:
        """A ``what`` timer stages ``event`` with its payload when it falls due."""

        def stage(session: Session, *, key: str, payload: dict[str, Any]) -> None:
            self.messaging.stage(session, event, payload)

        self.register(what, stage)
        self._checks[what] = event.validate_outgoing

    def job(self, name: str, *, cron: str, run: JobFunction, timezone: tzinfo = UTC) -> Job:
        """Run ``run(session)`` at each occurrence of ``cron`` (minute hour day month weekday)."""
        if name in self.jobs:
            raise TimerError(f"a job named {name!r} is declared already")
        try:
            trigger = CronTrigger.from_crontab(cron, timezone=timezone)
        except ValueError as error:
            raise TimerError(f"job {name!r}: bad cron expression {cron!r}: {error}") from error
        declared = Job(name=name, cron=cron, trigger=trigger, run=run)
        self.jobs[name] = declared
        return declared

    # Setting and cancelling deadlines, in the caller's transaction.

    def schedule(
        self,
        session: Session,
        *,
        due_at: datetime,
        what: str,
        key: str,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Set the deadline ``key`` to fire ``what`` at ``due_at``, replacing any timer of that
        key (fired or not), in the caller's transaction."""
        if what not in self.handlers:
            raise TimerError(
                f"no handler is registered for timers of {what!r}; the service registers them "
                "in its timers module"
            )
        if due_at.tzinfo is None:
            raise TimerError("naive datetimes are ambiguous; pass an aware due_at")
        if not key or len(key) > KEY_LENGTH:
            raise TimerError(f"a timer key is 1 to {KEY_LENGTH} characters")
        data = dict(payload or {})
        check = self._checks.get(what)
        if check is not None:
            data = check(data)
        try:
            json.dumps(data)
        except (TypeError, ValueError) as error:
            raise TimerError(f"the payload of timer {key!r} is not JSON: {error}") from error
        values = {
            "what": what,
            "payload": data,
            "due_at": due_at,
            "attempt_at": due_at,
            "state": PENDING,
            "scheduled_at": utcnow(),
            "fired_at": None,
            "attempts": 0,
            "last_error": None,
        }
        session.info.setdefault(RESCHEDULED, set()).add(key)
        dialect = session.get_bind().dialect.name
        if dialect in ("postgresql", "sqlite"):
            upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            session.execute(
                upsert(self.timers)
                .values(key=key, **values)
                .on_conflict_do_update(index_elements=["key"], set_=values)
            )
            return
        session.execute(delete(self.timers).where(self.timers.c.key == key))
        session.execute(insert(self.timers).values(key=key, **values))

    def cancel(self, session: Session, key: str) -> bool:
        """Remove the timer ``key`` in the caller's transaction; False when there was none."""
        result = cast(
            CursorResult[Any], session.execute(delete(self.timers).where(self.timers.c.key == key))
        )
        return bool(result.rowcount)

    def get(self, session: Session, key: str) -> Timer | None:
        row = session.execute(select(self.timers).where(self.timers.c.key == key)).first()
        return Timer(**row._mapping) if row is not None else None

    def failed(self, session: Session) -> list[Timer]:
        """The timers given up on, oldest deadline first: they wait for staff."""
        query = select(self.timers).where(self.timers.c.state == FAILED)
        return [Timer(**row._mapping) for row in session.execute(query.order_by("due_at", "key"))]

    def retry(self, session: Session, key: str) -> bool:
        """Fire the failed timer ``key`` again at the scheduler's next pass, with its attempts
        counted afresh; False when no failed timer has that key."""
        result = cast(
            CursorResult[Any],
            session.execute(
                update(self.timers)
                .where(self.timers.c.key == key, self.timers.c.state == FAILED)
                .values(state=PENDING, attempt_at=utcnow(), attempts=0)
            ),
        )
        return bool(result.rowcount)

    def purge(self, session: Session, *, older_than: timedelta) -> dict[str, int]:
        """Forget timers fired and job runs recorded before ``older_than``; failed timers stay
        until staff deal with them, and each job keeps its latest run."""
        cutoff = utcnow() - older_than
        timers, runs = self.timers, self.job_runs
        # A job's newest run is where its next occurrence is counted from: never forget it.
        later = runs.alias("later")
        newest = select(func.max(later.c.scheduled_for)).where(later.c.job == runs.c.job)
        statements = {
            "timers": delete(timers).where(timers.c.state == FIRED, timers.c.fired_at < cutoff),
            "job_runs": delete(runs).where(
                runs.c.scheduled_for < cutoff, runs.c.scheduled_for < newest.scalar_subquery()
            ),
        }
        removed: dict[str, int] = {}
        for table, statement in statements.items():
            result = cast(CursorResult[Any], session.execute(statement))
            removed[table] = int(result.rowcount or 0)
        return removed


def nightly_purge(timers: Timers, *, older_than: timedelta = PURGE_AFTER) -> JobFunction:
    """The housekeeping job every service runs: ``Messaging.purge`` and ``Timers.purge``."""

    def purge(session: Session) -> dict[str, int]:
        removed = timers.messaging.purge(session, older_than=older_than)
        removed.update(timers.purge(session, older_than=older_than))
        return removed

    return purge
