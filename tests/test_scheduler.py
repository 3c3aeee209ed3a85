"""Periodic jobs: one run per occurrence across schedulers and after downtime, the nightly purge
every service runs, and a service's real scheduler process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, insert, select

import services.dispatch.timers  # noqa: F401  (declares dispatch's jobs on its Timers)
from services.dispatch.config import runtime
from services.dispatch.models import timers as dispatch_timers
from services.points.config import runtime as points_runtime
from services.points.models import messaging as points_messaging
from services.points.models import timers as points_timers
from shared import clock
from shared.database import Database
from shared.events import REQUEST_UNROUTED
from shared.scheduler import LEASE_TTL, JobRun, Scheduler
from shared.timers import FAILED, JOB_DECLARED, JOB_FAILED, JOB_OK, Timers
from tests.environment import process_env
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[1]
# Half a minute past nine: the next occurrence of an every-minute job is 30 s away.
T0 = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)
EVERY_MINUTE = "* * * * *"


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with clock.freeze(T0):
        yield


@pytest.fixture
def timers() -> Timers:
    """Tables shaped like dispatch's, with jobs of the test's own."""
    return Timers(MetaData(), messaging=runtime().messaging)


def scheduler_of(timers: Timers, db: Database | None = None, name: str = "a") -> Scheduler:
    return Scheduler(service="dispatch", db=db or runtime().db, timers=timers, instance=name)


def recorded_runs(timers: Timers, job: str) -> list[tuple[datetime, str]]:
    runs = timers.job_runs
    with runtime().db.read() as session:
        rows = session.execute(
            select(runs.c.scheduled_for, runs.c.outcome)
            .where(runs.c.job == job)
            .order_by(runs.c.scheduled_for)
        ).all()
    return [(row.scheduled_for, row.outcome) for row in rows]


def counting_job(timers: Timers, name: str = "tick") -> list[datetime]:
    """An every-minute job that notes the time each run happened at."""
    ran: list[datetime] = []
    lock = threading.Lock()

    def tick(session: Any) -> dict[str, int]:
        with lock:
            ran.append(clock.utcnow())
        return {"ticks": len(ran)}

    timers.job(name, cron=EVERY_MINUTE, run=tick)
    return ran


def in_two_threads(*calls: Any) -> list[Any]:
    start = threading.Barrier(len(calls), timeout=10)
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            results[index] = calls[index]()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.fixture
def two_databases() -> Iterator[list[Database]]:
    databases = [Database(runtime().settings.database_url) for _ in range(2)]
    yield databases
    for db in databases:
        db.dispose()


@pytest.mark.usefixtures("frozen_clock")
class TestPeriodicJobs:
    def test_a_new_job_counts_from_when_it_is_first_seen_then_runs_at_each_occurrence(self, timers):
        ran = counting_job(timers)
        scheduler = scheduler_of(timers)
        assert scheduler.run_jobs() == []
        assert recorded_runs(timers, "tick") == [(T0, JOB_DECLARED)]
        clock.advance(timedelta(seconds=29))
        assert scheduler.run_jobs() == []
        clock.advance(timedelta(seconds=1))
        nine_one = datetime(2026, 3, 2, 9, 1, tzinfo=UTC)
        assert scheduler.run_jobs() == [JobRun("tick", nine_one, JOB_OK, '{"ticks": 1}')]
        assert scheduler.run_jobs() == []
        assert ran == [nine_one]

    def test_an_occurrence_missed_during_downtime_runs_once_not_once_per_missed_tick(self, timers):
        ran = counting_job(timers)
        scheduler = scheduler_of(timers)
        scheduler.run_jobs()
        clock.advance(timedelta(hours=3))
        (run,) = scheduler.run_jobs()
        assert run.scheduled_for == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        assert scheduler.run_jobs() == []
        clock.advance(timedelta(minutes=1))
        assert [r.scheduled_for for r in scheduler.run_jobs()] == [
            datetime(2026, 3, 2, 12, 1, tzinfo=UTC)
        ]
        assert len(ran) == 2

    def test_each_occurrence_runs_once_under_two_schedulers_running_at_once(
        self, timers, two_databases
    ):
        ran = counting_job(timers)
        first, second = (scheduler_of(timers, db, f"s{i}") for i, db in enumerate(two_databases))
        in_two_threads(first.run_jobs, second.run_jobs)
        for _ in range(5):
            clock.advance(timedelta(minutes=1))
            in_two_threads(first.run_jobs, second.run_jobs)
        occurrences = [when for when, outcome in recorded_runs(timers, "tick") if outcome == "ok"]
        assert len(occurrences) == len(set(occurrences)) == len(ran) == 5

    def test_two_schedulers_that_both_think_they_hold_the_lease_still_run_an_occurrence_once(
        self, timers, two_databases
    ):
        ran = counting_job(timers)
        job = timers.jobs["tick"]
        first, second = (scheduler_of(timers, db, f"s{i}") for i, db in enumerate(two_databases))
        first.run_job(job)
        clock.advance(timedelta(minutes=1))
        results = in_two_threads(lambda: first.run_job(job), lambda: second.run_job(job))
        assert len([result for result in results if result is not None]) == 1
        assert len(ran) == 1

    def test_only_the_lease_holder_runs_jobs_until_its_lease_lapses(self, timers):
        ran = counting_job(timers)
        first, second = scheduler_of(timers, name="first"), scheduler_of(timers, name="second")
        assert first.hold_lease() and not second.hold_lease()
        first.run_jobs()
        # The holder renews its lease every cycle, so it outlives LEASE_TTL.
        for _ in range(2):
            clock.advance(timedelta(seconds=10))
            assert first.run_jobs() == []
        clock.advance(timedelta(seconds=10))
        assert second.run_jobs() == []
        assert len(first.run_jobs()) == 1
        # The first scheduler dies: its lease is renewed no more, and lapses within a minute.
        assert timedelta(minutes=1) >= LEASE_TTL
        clock.advance(timedelta(minutes=1))
        assert len(second.run_jobs()) == 1
        assert not first.hold_lease()
        second.release_lease()
        assert first.hold_lease()
        assert len(ran) == 2

    def test_a_failing_job_is_recorded_with_its_error_and_leaves_nothing_half_done(self, timers):
        def stage_then_fail(session: Any) -> None:
            timers.messaging.stage(
                session,
                REQUEST_UNROUTED,
                {"request_id": "r", "reason": "x", "unrouted_at": clock.utcnow()},
            )
            raise RuntimeError("the disk is full")

        timers.job("doomed", cron=EVERY_MINUTE, run=stage_then_fail)
        scheduler = scheduler_of(timers)
        scheduler.run_jobs()
        clock.advance(timedelta(minutes=1))
        (run,) = scheduler.run_jobs()
        assert (run.outcome, run.detail) == (JOB_FAILED, "RuntimeError: the disk is full")
        assert scheduler.run_jobs() == []
        with runtime().db.read() as session:
            assert session.execute(select(timers.messaging.outbox)).first() is None
        clock.advance(timedelta(minutes=1))
        assert [r.outcome for r in scheduler.run_jobs()] == [JOB_FAILED]


@pytest.mark.usefixtures("frozen_clock")
class TestNightlyPurge:
    def test_every_service_declares_the_nightly_purge(self):
        assert dispatch_timers.jobs["purge"].cron == "30 3 * * *"

    def test_the_nightly_purge_forgets_old_published_events_and_fired_timers(self):
        outbox, inbox = runtime().messaging.outbox, runtime().messaging.inbox
        old, recent = T0 - timedelta(days=15), T0 - timedelta(days=1)
        with runtime().db.transaction() as session:
            for row_id, moment in (("old", old), ("recent", recent)):
                session.execute(
                    insert(outbox).values(
                        id=row_id,
                        event="request.unrouted",
                        version=1,
                        payload={},
                        created_at=moment,
                        published_at=moment,
                        attempts=1,
                    )
                )
                session.execute(
                    insert(inbox).values(consumer="c", message_id=row_id, processed_at=moment)
                )
            for key, state in (("old-fired", "fired"), ("old-failed", "failed")):
                session.execute(
                    insert(dispatch_timers.timers).values(
                        key=key,
                        what="gone",
                        payload={},
                        due_at=old,
                        attempt_at=old,
                        state=state,
                        scheduled_at=old,
                        fired_at=old if state == "fired" else None,
                        attempts=1,
                    )
                )
            for moment in (old - timedelta(days=1), old):
                session.execute(
                    insert(dispatch_timers.job_runs).values(
                        job="retired", scheduled_for=moment, outcome=JOB_OK
                    )
                )
        scheduler = Scheduler(service="dispatch", db=runtime().db, timers=dispatch_timers)
        scheduler.run_jobs()
        clock.advance(timedelta(hours=18, minutes=29, seconds=30))
        (run,) = [run for run in scheduler.run_jobs() if run.job == "purge"]
        assert run.scheduled_for == datetime(2026, 3, 3, 3, 30, tzinfo=UTC)
        assert json.loads(run.detail or "{}")["outbox"] == 1
        with runtime().db.read() as session:
            assert session.scalars(select(outbox.c.id)).all() == ["recent"]
            assert session.scalars(select(inbox.c.message_id)).all() == ["recent"]
            # Failed timers wait for staff; a job's newest run is where its count goes on from.
            assert session.scalars(select(dispatch_timers.timers.c.key)).all() == ["old-failed"]
            runs = dispatch_timers.job_runs
            assert session.scalars(
                select(runs.c.scheduled_for).where(runs.c.job == "retired")
            ).all() == [old]


@pytest.mark.e2e
def test_the_scheduler_process_of_a_service_runs_its_overdue_jobs_and_timers():
    """``python -m services.points scheduler`` against the test run's points database."""
    now = clock.utcnow()
    outbox, runs, table = points_messaging.outbox, points_timers.job_runs, points_timers.timers
    with points_runtime().db.transaction() as session:
        # The purge was last counted two days ago: one occurrence at least is overdue.
        session.execute(
            insert(runs).values(
                job="purge", scheduled_for=now - timedelta(days=2), outcome=JOB_DECLARED
            )
        )
        session.execute(
            insert(outbox).values(
                id="old",
                event="request.unrouted",
                version=1,
                payload={},
                created_at=now - timedelta(days=20),
                published_at=now - timedelta(days=20),
                attempts=1,
            )
        )
        # A timer whose kind no release handles any more: fired, found unhandled, kept.
        session.execute(
            insert(table).values(
                key="orphan",
                what="gone",
                payload={},
                due_at=now - timedelta(minutes=1),
                attempt_at=now - timedelta(minutes=1),
                state="pending",
                scheduled_at=now - timedelta(hours=1),
                attempts=0,
            )
        )
    log_path = Path(tempfile.mkdtemp(prefix="redvest-scheduler-")) / "scheduler.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.points", "scheduler", "--interval", "0.2"],
            cwd=ROOT,
            env=process_env(str(log_path.parent), {}),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:

            def purged() -> bool:
                with points_runtime().db.read() as session:
                    outcomes = session.scalars(
                        select(runs.c.outcome).where(runs.c.job == "purge")
                    ).all()
                    orphan = session.scalar(select(table.c.state).where(table.c.key == "orphan"))
                    left = session.scalars(select(outbox.c.id)).all()
                return JOB_OK in outcomes and orphan == FAILED and left == []

            eventually(purged, what="the purge and the orphan timer", timeout=60)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    assert code == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "timer.failed"]
    assert failed and failed[0]["timer"] == "orphan" and failed[0]["late_ms"] >= 60_000
    assert any(line.get("event") == "job.ran" and line["job"] == "purge" for line in lines)
    with points_runtime().db.read() as session:
        lease = session.execute(select(points_timers.leases)).one()
    assert lease.expires_at <= clock.utcnow()
