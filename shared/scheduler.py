"""A service's scheduler process: fires its due timers and runs its periodic jobs.

A timer fires exactly once, across crashes and replicas: its handler runs and the timer is
marked fired in one transaction, on PostgreSQL with the row claimed ``FOR UPDATE SKIP LOCKED``
(replicas fire different timers side by side), on SQLite under its single writer. Overdue
timers fire in due order, each logged with how late it was (``late_ms``).

Jobs run only in the replica that holds the service's lease (renewed each cycle, taken over
once expired); each occurrence is claimed by its ``job_runs`` row in the transaction that runs
it, so even two replicas that both believe they hold the lease run an occurrence once.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.clock import utcnow
from shared.context import work_context
from shared.database import Database
from shared.errors import DomainError
from shared.events import ContractError
from shared.lifecycle import StoppableLoop
from shared.metrics import observe_timer_lateness
from shared.timers import (
    FAILED,
    FIRED,
    JOB_DECLARED,
    JOB_FAILED,
    JOB_OK,
    PENDING,
    RESCHEDULED,
    Job,
    Timer,
    TimerError,
    Timers,
)

log = structlog.get_logger(__name__)

JOBS_LEASE = "jobs"
LEASE_TTL = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=5)
# Errors that no retry can mend: the timer is marked failed and kept for staff.
PERMANENT = (DomainError, ContractError, TimerError)


@dataclass(frozen=True)
class Firing:
    """What became of one due timer: fired, failed (kept for staff) or retrying later."""

    key: str
    what: str
    due_at: datetime
    late_ms: int
    outcome: str
    error: str | None = None


@dataclass(frozen=True)
class JobRun:
    job: str
    scheduled_for: datetime
    outcome: str
    detail: str | None


def backoff(attempts: int) -> timedelta:
    """How long to wait before trying a timer again after ``attempts`` failures."""
    return min(timedelta(seconds=2 ** min(attempts - 1, 20)), MAX_BACKOFF)


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


class Scheduler(StoppableLoop):
    """Fires one service's timers and runs its jobs; several may share a database."""

    def __init__(
        self,
        *,
        service: str,
        db: Database,
        timers: Timers,
        interval_s: float = 1.0,
        max_attempts: int = 20,
        lease_ttl: timedelta = LEASE_TTL,
        batch_size: int = 100,
        instance: str | None = None,
    ) -> None:
        self.service = service
        self.db = db
        self.timers = timers
        self.interval_s = interval_s
        self.max_attempts = max_attempts
        self.lease_ttl = lease_ttl
        self.batch_size = batch_size
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__()
        self._next_job_at: datetime | None = None
        # Until when this scheduler's lease is known to be its own.
        self._lease_until: datetime | None = None

    # Timers.

    def fire_next(self) -> Firing | None:
        """Fire the timer due first, in one transaction; None when none is due."""
        table = self.timers.timers
        now = utcnow()
        query = (
            select(table)
            .where(table.c.state == PENDING, table.c.attempt_at <= now)
            .order_by(table.c.due_at, table.c.key)
            .limit(1)
        )
        with self.db.read() as session:
            # Most cycles find nothing due: look before taking a writer's lock.
            if session.execute(query.with_only_columns(table.c.key)).first() is None:
                return None
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        with self.db.transaction() as session:
            row = session.execute(query).first()
            if row is None:
                return None
            timer = Timer(**row._mapping)
            with work_context(correlation=None, timer=timer.key, what=timer.what):
                firing = self._fire(session, timer, now)
        late_s = firing.late_ms / 1000
        if firing.outcome == FIRED:
            observe_timer_lateness(self.service, late_s)
            log.info("timer.fired", timer=timer.key, what=timer.what, late_ms=firing.late_ms)
        else:
            log.warning(
                "timer.failed" if firing.outcome == FAILED else "timer.retrying",
                timer=timer.key,
                what=timer.what,
                late_ms=firing.late_ms,
                attempts=timer.attempts + 1,
                error=firing.error,
            )
        return firing

    def _fire(self, session: Session, timer: Timer, now: datetime) -> Firing:
        table = self.timers.timers
        late_ms = max(0, int((now - timer.due_at).total_seconds() * 1000))
        handler = self.timers.handlers.get(timer.what)
        detail: str | None = None
        rescheduled: set[str] = session.info.setdefault(RESCHEDULED, set())
        rescheduled.discard(timer.key)
        try:
            # A savepoint: a handler that fails leaves nothing behind, and the timer's own row
            # still records the failure in this transaction.
            with session.begin_nested():
                if handler is None:
                    raise TimerError(f"no handler is registered for timers of {timer.what!r}")
                handler(session, key=timer.key, payload=dict(timer.payload))
        except PERMANENT as error:
            detail = f"{type(error).__name__}: {error}"[:2000]
            values: dict[str, Any] = {"state": FAILED, "last_error": detail}
            outcome = FAILED
        except Exception as error:
            detail = f"{type(error).__name__}: {error}"[:2000]
            attempts = timer.attempts + 1
            if attempts >= self.max_attempts:
                values, outcome = {"state": FAILED, "last_error": detail}, FAILED
            else:
                values = {"attempt_at": now + backoff(attempts), "last_error": detail}
                outcome = "retrying"
        else:
            outcome = FIRED
            if timer.key in rescheduled:
                # The handler set this key's next deadline: that row is the timer now.
                return Firing(timer.key, timer.what, timer.due_at, late_ms, outcome)
            values = {"state": FIRED, "fired_at": now, "last_error": None}
        session.execute(
            update(table)
            .where(table.c.key == timer.key)
            .values(attempts=table.c.attempts + 1, **values)
        )
        return Firing(timer.key, timer.what, timer.due_at, late_ms, outcome, detail)

    def fire_due(self) -> list[Firing]:
        """Fire every due timer (at most a batch), most overdue first."""
        firings: list[Firing] = []
        while len(firings) < self.batch_size:
            firing = self.fire_next()
            if firing is None:
                break
            firings.append(firing)
        return firings

    # Jobs.

    def hold_lease(self) -> bool:
        """Take or renew the jobs lease; False while another live scheduler holds it."""
        leases = self.timers.leases
        now = utcnow()
        if self._lease_until is not None and self._lease_until - now > self.lease_ttl * 2 / 3:
            return True  # renewed moments ago: no need to write again yet
        with self.db.read() as session:
            current = session.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == JOBS_LEASE)
            ).first()
        if current is not None and current.holder != self.instance and current.expires_at > now:
            self._lease_until = None
            return False
        with self.db.transaction() as session:
            statement = _insert(session)(leases).values(
                name=JOBS_LEASE,
                holder=self.instance,
                acquired_at=now,
                expires_at=now + self.lease_ttl,
            )
            statement = statement.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "holder": statement.excluded.holder,
                    "expires_at": statement.excluded.expires_at,
                    "acquired_at": case(
                        (leases.c.holder == statement.excluded.holder, leases.c.acquired_at),
                        else_=statement.excluded.acquired_at,
                    ),
                },
                where=(leases.c.holder == self.instance) | (leases.c.expires_at <= now),
            ).returning(leases.c.holder)
            held = session.execute(statement).first() is not None
        self._lease_until = now + self.lease_ttl if held else None
        return held

    def release_lease(self) -> None:
        """Let another scheduler take the jobs over at once (on a clean stop)."""
        leases = self.timers.leases
        with self.db.transaction() as session:
            session.execute(
                update(leases)
                .where(leases.c.name == JOBS_LEASE, leases.c.holder == self.instance)
                .values(expires_at=utcnow())
            )
        self._lease_until = None

    def _last_occurrence(self, job: Job) -> datetime | None:
        runs = self.timers.job_runs
        with self.db.read() as session:
            last: datetime | None = session.execute(
                select(func.max(runs.c.scheduled_for)).where(runs.c.job == job.name)
            ).scalar_one()
        return last

    def _claim(self, session: Session, job: Job, occurrence: datetime, **values: Any) -> bool:
        runs = self.timers.job_runs
        statement = (
            _insert(session)(runs)
            .values(job=job.name, scheduled_for=occurrence, runner=self.instance, **values)
            .on_conflict_do_nothing()
            .returning(runs.c.job)
        )
        return session.execute(statement).first() is not None

    def run_job(self, job: Job) -> JobRun | None:
        """Run the job's latest due occurrence, once however many were missed; None when no
        occurrence is due or another scheduler ran it."""
        now = utcnow()
        last = self._last_occurrence(job)
        if last is None:
            # A new job counts its occurrences from now, not from the beginning of time.
            with self.db.transaction() as session:
                self._claim(session, job, now, outcome=JOB_DECLARED)
            return None
        occurrence = job.latest_due(after=last, now=now)
        if occurrence is None:
            return None
        runs = self.timers.job_runs
        with (
            work_context(correlation=None, job=job.name),
            self.db.transaction() as session,
        ):
            if not self._claim(session, job, occurrence, ran_at=now, outcome=JOB_OK):
                return None
            detail: str | None
            try:
                with session.begin_nested():
                    result = job.run(session)
            except Exception as error:
                outcome, detail = JOB_FAILED, f"{type(error).__name__}: {error}"[:2000]
            else:
                outcome, detail = JOB_OK, _summary(result)
            session.execute(
                update(runs)
                .where(runs.c.job == job.name, runs.c.scheduled_for == occurrence)
                .values(outcome=outcome, detail=detail)
            )
        late_ms = max(0, int((now - occurrence).total_seconds() * 1000))
        if outcome == JOB_OK:
            log.info("job.ran", job=job.name, scheduled_for=occurrence.isoformat(), late_ms=late_ms)
        else:
            log.error(
                "job.failed", job=job.name, scheduled_for=occurrence.isoformat(), error=detail
            )
        return JobRun(job.name, occurrence, outcome, detail)

    def run_jobs(self) -> list[JobRun]:
        """Run each job's due occurrence, if this scheduler holds the lease."""
        if not self.timers.jobs or not self.hold_lease():
            self._next_job_at = None
            return []
        ran = [run for job in self.timers.jobs.values() if (run := self.run_job(job)) is not None]
        now = utcnow()
        upcoming = [
            found
            for job in self.timers.jobs.values()
            if (found := job.next_after(now, now=now)) is not None
        ]
        self._next_job_at = min(upcoming, default=None)
        return ran

    # The process.

    def _seconds_to_next(self) -> float:
        """How long to sleep: the interval, or less when a timer or job is due sooner."""
        table = self.timers.timers
        with self.db.read() as session:
            next_timer = session.execute(
                select(func.min(table.c.attempt_at)).where(table.c.state == PENDING)
            ).scalar_one()
        moments = [m for m in (next_timer, self._next_job_at) if m is not None]
        wait = self.interval_s
        if moments:
            wait = min(wait, (min(moments) - utcnow()).total_seconds())
        # A floor: a due timer another replica is firing must not make this one spin.
        return max(wait, min(self.interval_s, 0.05))

    def run_once(self) -> float:
        """One cycle: fire due timers, run due jobs; returns how long to wait before the next."""
        firings = self.fire_due()
        self.run_jobs()
        return 0.0 if len(firings) >= self.batch_size else self._seconds_to_next()

    def run(self) -> None:
        """Cycle until stopped; back off while the database is unavailable."""
        log.info("scheduler.started", service=self.service, instance=self.instance)
        failures = 0
        while not self._stopping.is_set():
            try:
                wait = self.run_once()
                failures = 0
            except Exception:
                log.exception("scheduler.cycle_failed")
                failures += 1
                wait = min(self.interval_s * 2**failures, 30.0)
            self._stopping.wait(wait)
        try:
            self.release_lease()
        except Exception:
            log.exception("scheduler.lease_release_failed")
        log.info("scheduler.stopped", service=self.service)


def _summary(result: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(result), default=str, sort_keys=True) if result else None
