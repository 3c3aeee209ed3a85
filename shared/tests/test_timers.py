"""The clock tests hold, and the rules of timers and jobs that need no database (the timers
themselves are shown on a service's database in tests/test_timers.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData

from shared import clock
from shared.messaging import Messaging
from shared.scheduler import MAX_BACKOFF, backoff
from shared.timers import TimerError, Timers

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with clock.freeze(T0):
        yield


@pytest.fixture
def timers() -> Timers:
    metadata = MetaData()
    return Timers(metadata, messaging=Messaging(metadata))


class TestClock:
    def test_a_frozen_clock_tells_every_thread_the_same_time_until_it_is_advanced(self):
        seen: list[datetime] = []
        reader = threading.Thread(target=lambda: seen.append(clock.utcnow()))
        reader.start()
        reader.join()
        assert seen == [T0] and clock.utcnow() == T0
        assert clock.advance(timedelta(minutes=5)) == T0 + timedelta(minutes=5)
        assert clock.utcnow() == T0 + timedelta(minutes=5)

    def test_a_nested_freeze_gives_the_outer_time_back_on_exit(self):
        with clock.freeze(T0 + timedelta(days=1)):
            assert clock.utcnow() == T0 + timedelta(days=1)
        assert clock.utcnow() == T0

    def test_the_clock_never_moves_backwards(self):
        with pytest.raises(ValueError):
            clock.advance(timedelta(seconds=-1))

    def test_a_naive_time_is_refused(self):
        with pytest.raises(ValueError):
            clock.freeze(datetime(2026, 3, 2, 9, 0))


class TestDeclaring:
    def test_a_handler_must_take_the_session_a_key_and_a_payload(self, timers):
        with pytest.raises(TimerError):
            timers.register("escalate", lambda session, key: None)

    def test_a_kind_of_timer_is_handled_once(self, timers):
        timers.register("escalate", lambda session, *, key, payload: None)
        with pytest.raises(TimerError):
            timers.register("escalate", lambda session, *, key, payload: None)

    def test_a_bad_cron_expression_is_refused_where_the_job_is_declared(self, timers):
        with pytest.raises(TimerError):
            timers.job("purge", cron="61 * * * *", run=lambda session: None)

    def test_the_timers_of_a_metadata_are_found_from_it(self, timers):
        assert Timers.on(timers.timers.metadata) is timers
        assert Timers.on(MetaData()) is None


class TestOccurrences:
    def test_occurrences_missed_for_days_fold_into_the_latest_one(self, timers):
        job = timers.job("purge", cron="30 3 * * *", run=lambda session: None)
        now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        latest = job.latest_due(after=datetime(2026, 3, 1, 3, 30, tzinfo=UTC), now=now)
        assert latest == datetime(2026, 3, 10, 3, 30, tzinfo=UTC)
        assert job.latest_due(after=latest, now=now) is None

    def test_an_occurrence_falling_exactly_now_is_due(self, timers):
        job = timers.job("tick", cron="* * * * *", run=lambda session: None)
        now = datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
        assert job.latest_due(after=now - timedelta(seconds=30), now=now) == now
        assert job.latest_due(after=now, now=now) is None


def test_retries_wait_twice_as_long_each_time_up_to_five_minutes():
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(9) < MAX_BACKOFF
    assert backoff(10) == backoff(500) == MAX_BACKOFF == timedelta(minutes=5)
