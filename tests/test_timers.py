"""Durable timers, shown on dispatch's database: scheduled and cancelled in the caller's
transaction, fired exactly once by the scheduler, on a clock the tests hold (the clock and the
rules that need no database are in shared/tests/test_timers.py)."""

from __future__ import annotations

import importlib
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import REGISTRY
from sqlalchemy import MetaData, func, select

from services.dispatch.app import create_app
from services.dispatch.config import runtime
from shared import clock
from shared.cli import run_cli
from shared.database import Database
from shared.errors import Conflict
from shared.events import REQUEST_UNROUTED, ContractError
from shared.metrics import MessagingCollector
from shared.scheduler import Scheduler, backoff
from shared.timers import FAILED, FIRED, PENDING, TimerError, Timers
from shared.topology import SERVICES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with clock.freeze(T0):
        yield


@pytest.fixture
def timers() -> Timers:
    """Tables shaped like dispatch's, with a registry of the test's own."""
    return Timers(MetaData(), messaging=runtime().messaging)


def unrouted(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "reason": "nobody on duty", "unrouted_at": T0}


def scheduler_of(timers: Timers, db: Database | None = None, **kwargs: Any) -> Scheduler:
    return Scheduler(service="dispatch", db=db or runtime().db, timers=timers, **kwargs)


def outbox_count() -> int:
    outbox = runtime().messaging.outbox
    with runtime().db.read() as session:
        return session.scalar(select(func.count()).select_from(outbox)) or 0


def state_of(timers: Timers, key: str) -> str | None:
    with runtime().db.read() as session:
        timer = timers.get(session, key)
    return timer.state if timer else None


class TestScheduling:
    def test_a_timer_fires_when_due_and_not_before(self, timers):
        timers.stages("unrouted", REQUEST_UNROUTED)
        with runtime().db.transaction() as session:
            timers.schedule(
                session,
                due_at=T0 + timedelta(minutes=5),
                what="unrouted",
                key="r1:unrouted",
                payload=unrouted("r1"),
            )
        scheduler = scheduler_of(timers)
        clock.advance(timedelta(minutes=5) - timedelta(microseconds=1))
        assert scheduler.fire_due() == []
        clock.advance(timedelta(microseconds=1))
        (firing,) = scheduler.fire_due()
        assert (firing.key, firing.outcome, firing.late_ms) == ("r1:unrouted", FIRED, 0)
        assert state_of(timers, "r1:unrouted") == FIRED
        assert outbox_count() == 1
        assert scheduler.fire_due() == []

    def test_scheduling_a_kind_of_timer_nobody_handles_is_refused(self, timers):
        with runtime().db.transaction() as session, pytest.raises(TimerError):
            timers.schedule(session, due_at=T0, what="escalate", key="a1:escalate")

    def test_a_payload_the_staged_event_refuses_is_refused_when_scheduled(self, timers):
        timers.stages("unrouted", REQUEST_UNROUTED)
        with runtime().db.transaction() as session, pytest.raises(ContractError):
            timers.schedule(
                session, due_at=T0, what="unrouted", key="r1", payload={"request_id": "r1"}
            )

    def test_rescheduling_a_key_replaces_its_due_time_and_payload_even_once_fired(self, timers):
        timers.stages("unrouted", REQUEST_UNROUTED)
        scheduler = scheduler_of(timers)
        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="unrouted", key="k", payload=unrouted("first"))
        assert [f.outcome for f in scheduler.fire_due()] == [FIRED]
        with runtime().db.transaction() as session:
            timers.schedule(
                session,
                due_at=T0 + timedelta(hours=1),
                what="unrouted",
                key="k",
                payload=unrouted("second"),
            )
            timers.schedule(
                session,
                due_at=T0 + timedelta(hours=2),
                what="unrouted",
                key="k",
                payload=unrouted("third"),
            )
        with runtime().db.read() as session:
            timer = timers.get(session, "k")
        assert timer is not None
        assert (timer.state, timer.due_at, timer.payload["request_id"]) == (
            PENDING,
            T0 + timedelta(hours=2),
            "third",
        )
        clock.advance(timedelta(hours=1))
        assert scheduler.fire_due() == []
        clock.advance(timedelta(hours=1))
        assert [f.key for f in scheduler.fire_due()] == ["k"]
        assert outbox_count() == 2

    def test_a_timer_cancelled_with_the_change_that_makes_it_moot_never_fires(self, timers):
        timers.stages("unrouted", REQUEST_UNROUTED)
        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="unrouted", key="k", payload=unrouted("r"))
        with runtime().db.transaction() as session:
            runtime().messaging.stage(session, REQUEST_UNROUTED, unrouted("the change"))
            assert timers.cancel(session, "k") is True
        clock.advance(timedelta(days=1))
        assert scheduler_of(timers).fire_due() == []
        assert state_of(timers, "k") is None
        assert outbox_count() == 1

    def test_a_rolled_back_change_keeps_the_timer_it_cancelled(self, timers):
        timers.stages("unrouted", REQUEST_UNROUTED)
        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="unrouted", key="k", payload=unrouted("r"))
        with pytest.raises(Conflict), runtime().db.transaction() as session:
            runtime().messaging.stage(session, REQUEST_UNROUTED, unrouted("the change"))
            timers.cancel(session, "k")
            raise Conflict("the change is refused after all")
        assert [f.key for f in scheduler_of(timers).fire_due()] == ["k"]
        assert outbox_count() == 1


class TestFiring:
    def test_after_downtime_every_overdue_timer_fires_once_in_due_order_saying_how_late(
        self, timers
    ):
        timers.stages("unrouted", REQUEST_UNROUTED)
        minutes = [7, 1, 4, 2, 9]
        with runtime().db.transaction() as session:
            for minute in minutes:
                timers.schedule(
                    session,
                    due_at=T0 + timedelta(minutes=minute),
                    what="unrouted",
                    key=f"due-{minute}",
                    payload=unrouted(f"r{minute}"),
                )
        clock.advance(timedelta(hours=1))
        before = REGISTRY.get_sample_value(
            "redvest_timer_lateness_seconds_count", {"service": "dispatch"}
        )
        with structlog.testing.capture_logs() as logs:
            firings = scheduler_of(timers).fire_due()
        assert [f.key for f in firings] == [f"due-{m}" for m in sorted(minutes)]
        expected_late = [(60 - m) * 60_000 for m in sorted(minutes)]
        assert [f.late_ms for f in firings] == expected_late
        assert [e["late_ms"] for e in logs if e["event"] == "timer.fired"] == expected_late
        after = REGISTRY.get_sample_value(
            "redvest_timer_lateness_seconds_count", {"service": "dispatch"}
        )
        assert (after or 0) - (before or 0) == len(minutes)
        assert outbox_count() == len(minutes)
        assert scheduler_of(timers).fire_due() == []

    def test_a_handler_that_sets_its_own_next_deadline_keeps_it(self, timers):
        visits: list[str] = []

        @timers.handler("weekly-visit")
        def visit(session, *, key, payload):
            visits.append(payload["resident"])
            timers.schedule(
                session,
                due_at=clock.utcnow() + timedelta(weeks=1),
                what="weekly-visit",
                key=key,
                payload=payload,
            )

        with runtime().db.transaction() as session:
            timers.schedule(
                session, due_at=T0, what="weekly-visit", key="visit:r1", payload={"resident": "r1"}
            )
        scheduler = scheduler_of(timers)
        for _ in range(3):
            assert [f.outcome for f in scheduler.fire_due()] == [FIRED]
            assert scheduler.fire_due() == []
            clock.advance(timedelta(weeks=1))
        assert visits == ["r1"] * 3
        with runtime().db.read() as session:
            timer = timers.get(session, "visit:r1")
        assert timer is not None
        assert (timer.state, timer.due_at) == (PENDING, T0 + timedelta(weeks=3))

    def test_a_handler_that_crashes_leaves_the_timer_due_and_nothing_half_done(self, timers):
        calls: list[str] = []

        @timers.handler("flaky")
        def flaky(session, *, key, payload):
            calls.append(key)
            runtime().messaging.stage(session, REQUEST_UNROUTED, unrouted("half"))
            if len(calls) == 1:
                raise OSError("the network went away")

        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="flaky", key="k")
        scheduler = scheduler_of(timers)
        (firing,) = scheduler.fire_due()
        assert firing.outcome == "retrying" and "network went away" in (firing.error or "")
        assert outbox_count() == 0
        with runtime().db.read() as session:
            timer = timers.get(session, "k")
        assert timer is not None
        assert (timer.state, timer.attempts, timer.attempt_at) == (PENDING, 1, T0 + backoff(1))
        assert scheduler.fire_due() == []
        clock.advance(backoff(1))
        assert [f.outcome for f in scheduler.fire_due()] == [FIRED]
        assert outbox_count() == 1 and len(calls) == 2

    def test_a_transient_failure_is_given_up_on_after_the_last_attempt(self, timers):
        timers.register("broken", lambda session, *, key, payload: 1 / 0)
        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="broken", key="k")
        scheduler = scheduler_of(timers, max_attempts=3)
        outcomes = []
        for attempt in (1, 2, 3):
            outcomes += [f.outcome for f in scheduler.fire_due()]
            clock.advance(backoff(attempt))
        assert outcomes == ["retrying", "retrying", FAILED]
        assert state_of(timers, "k") == FAILED

    def test_a_domain_error_marks_the_timer_failed_with_the_error_and_keeps_it(self, timers):
        @timers.handler("refused")
        def refused(session, *, key, payload):
            runtime().messaging.stage(session, REQUEST_UNROUTED, unrouted("half"))
            raise Conflict("the assignment was closed meanwhile")

        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="refused", key="k")
        (firing,) = scheduler_of(timers).fire_due()
        assert firing.outcome == FAILED
        with runtime().db.read() as session:
            timer = timers.get(session, "k")
        assert timer is not None and timer.state == FAILED
        assert timer.last_error == "Conflict: the assignment was closed meanwhile"
        assert outbox_count() == 0
        clock.advance(timedelta(days=1))
        assert scheduler_of(timers).fire_due() == []

    def test_a_timer_whose_handler_is_gone_is_failed_not_retried(self, timers):
        timers.register("old", lambda session, *, key, payload: None)
        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="old", key="k")
        after_a_release = Timers(MetaData(), messaging=runtime().messaging)
        (firing,) = scheduler_of(after_a_release).fire_due()
        assert firing.outcome == FAILED and "no handler" in (firing.error or "")

    def test_staff_fire_a_failed_timer_again_once_its_cause_is_mended(self, timers):
        outcome = {"error": Conflict("the volunteer's record is locked")}

        @timers.handler("flaky")
        def flaky(session, *, key, payload):
            if outcome["error"]:
                raise outcome["error"]

        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="flaky", key="k1")
            timers.schedule(session, due_at=T0 + timedelta(seconds=1), what="flaky", key="k2")
        clock.advance(timedelta(seconds=1))
        assert [f.outcome for f in scheduler_of(timers).fire_due()] == [FAILED, FAILED]
        with runtime().db.read() as session:
            assert [t.key for t in timers.failed(session)] == ["k1", "k2"]
        outcome["error"] = None
        with runtime().db.transaction() as session:
            assert timers.retry(session, "k1") is True
            assert timers.retry(session, "no-such-timer") is False
        assert [(f.key, f.outcome) for f in scheduler_of(timers).fire_due()] == [("k1", FIRED)]
        assert (state_of(timers, "k1"), state_of(timers, "k2")) == (FIRED, FAILED)
        with runtime().db.transaction() as session:
            assert timers.retry(session, "k1") is False, "a fired timer is not fired again"

    def test_the_timers_command_lists_failed_timers_and_fires_the_named_ones_again(
        self, timers, capsys
    ):
        @timers.handler("refused")
        def refused(session, *, key, payload):
            raise Conflict("closed meanwhile")

        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="refused", key="cli-k")
        scheduler_of(timers).fire_due()
        assert run_cli(runtime, ["timers", "failed"]) == 0
        listed = capsys.readouterr()
        assert "cli-k\trefused\t" in listed.out and "Conflict: closed meanwhile" in listed.out
        assert "1 failed timer(s)" in listed.err
        assert run_cli(runtime, ["timers", "retry", "cli-k", "unknown"]) == 1
        retried = capsys.readouterr()
        assert "1 timer(s) to fire again" in retried.out
        assert "no failed timer unknown" in retried.err
        assert state_of(timers, "cli-k") == PENDING

    def test_each_timer_fires_once_under_two_schedulers_running_at_once(self, timers):
        fired: list[str] = []
        lock = threading.Lock()

        @timers.handler("count")
        def count(session, *, key, payload):
            runtime().messaging.stage(session, REQUEST_UNROUTED, unrouted(key))
            with lock:
                fired.append(key)

        keys = [f"t{n:02}" for n in range(30)]
        with runtime().db.transaction() as session:
            for key in random.sample(keys, len(keys)):
                timers.schedule(session, due_at=T0, what="count", key=key)
        firings = fire_from_two_schedulers(timers)
        assert sorted(fired) == keys
        assert sorted(f.key for f in firings) == keys
        assert outbox_count() == len(keys)
        assert {state_of(timers, key) for key in keys} == {FIRED}

    @pytest.mark.postgres
    def test_two_schedulers_fire_different_timers_side_by_side_on_postgresql(self, timers):
        # Each scheduler's first handler waits for the other's: both are firing at once.
        both_firing = threading.Barrier(2, timeout=10)
        first_call = threading.local()

        @timers.handler("meet")
        def meet(session, *, key, payload):
            if not getattr(first_call, "done", False):
                first_call.done = True
                both_firing.wait()

        keys = [f"t{n:02}" for n in range(10)]
        with runtime().db.transaction() as session:
            for key in keys:
                timers.schedule(session, due_at=T0, what="meet", key=key)
        firings = fire_from_two_schedulers(timers)
        assert sorted(f.key for f in firings) == keys
        assert {f.outcome for f in firings} == {FIRED}


def fire_from_two_schedulers(timers: Timers) -> list[Any]:
    """Both schedulers, each with its own connections, fire what is due at the same moment."""
    start = threading.Barrier(2, timeout=10)
    results: list[list[Any]] = [[], []]
    errors: list[BaseException] = []
    databases = [Database(runtime().settings.database_url) for _ in range(2)]

    def run(index: int) -> None:
        scheduler = scheduler_of(timers, databases[index], instance=f"s{index}")
        try:
            start.wait()
            while firing := scheduler.fire_next():
                results[index].append(firing)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for db in databases:
        db.dispose()
    assert not errors, errors
    return results[0] + results[1]


class TestObservability:
    def test_the_web_metrics_report_due_timers_and_how_long_the_oldest_has_waited(self, timers):
        timers.register("noop", lambda session, *, key, payload: None)
        with runtime().db.transaction() as session:
            timers.schedule(session, due_at=T0, what="noop", key="a")
            timers.schedule(session, due_at=T0 + timedelta(minutes=4), what="noop", key="b")
            timers.schedule(session, due_at=T0 + timedelta(hours=1), what="noop", key="later")
        clock.advance(timedelta(minutes=10))
        collector = MessagingCollector(
            service="dispatch", db=runtime().db, messaging=runtime().messaging
        )
        values = {family.name: family.samples[0].value for family in collector.collect()}
        assert values["redvest_timers_due"] == 2
        assert values["redvest_timers_oldest_due_age_seconds"] == 600
        assert values["redvest_timers_failed"] == 0
        scraped = create_app().test_client().get("/metrics").data.decode()
        assert 'redvest_timers_due{service="dispatch"} 2.0' in scraped


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_migrates_the_timer_tables_its_models_declare(service):
    service_runtime = importlib.import_module(f"services.{service}.config").runtime()
    declared = Timers.on(service_runtime.metadata)
    assert declared is not None
    ours = {declared.timers.name, declared.job_runs.name, declared.leases.name}
    with service_runtime.db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, parent: kind != "table" or name in ours,
                "include_object": lambda item, name, kind, reflected, other: (
                    (name if kind == "table" else item.table.name) in ours
                ),
            },
        )
        assert compare_metadata(context, service_runtime.metadata) == []
