"""Events published by the process that commits them, right after the commit; the relay sweeps
up what a failure or a crash left behind; idle workers wake when a message arrives."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import partial

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import ConnectionClosed
from marshmallow import Schema, fields
from sqlalchemy import select

from services.intake.config import build_runtime, load_settings, runtime
from shared.broker import create_broker
from shared.commit_publisher import CommitPublisher
from shared.events import Event
from shared.relay import Relay, drain
from tests.environment import BACKEND, TEST_ENV
from tests.support import eventually


class PingSchema(Schema):
    ping_id = fields.Str(required=True)


PING = Event("test.commit_publish.ping", 1, PingSchema)


@pytest.fixture
def queues() -> tuple[str, str]:
    """Two subscriber queues of the test's own, so nothing else consumes what it publishes."""
    suffix = uuid.uuid4().hex[:8]
    return f"first-{suffix}", f"second-{suffix}"


@pytest.fixture(params=[True, False], ids=["synchronous", "background"])
def publisher(request: pytest.FixtureRequest, queues: tuple[str, str]) -> Iterator[CommitPublisher]:
    attached = CommitPublisher(
        db=runtime().db,
        outbox=runtime().messaging.outbox,
        broker=runtime().broker,
        routes=lambda name, version: list(queues),
        synchronous=request.param,
    ).attach()
    yield attached
    attached.detach()
    attached.close()


def copies_on(queue: str) -> Counter[str]:
    """How many copies of each message id wait on ``queue`` in the run's Redis namespace."""
    settings = runtime().settings
    client = redis.Redis.from_url(settings.broker_url)
    raw = client.hvals(f"{settings.broker_namespace}:{queue}.msgs")
    client.close()
    return Counter(json.loads(value)["message_id"] for value in raw)


def published_at(message_id: str) -> object:
    outbox = runtime().messaging.outbox
    with runtime().db.read() as session:
        return session.execute(
            select(outbox.c.published_at).where(outbox.c.id == message_id)
        ).scalar_one()


def stage_ping() -> str:
    with runtime().db.transaction() as session:
        return runtime().messaging.stage(session, PING, {"ping_id": uuid.uuid4().hex})


def relay_to(queues: tuple[str, str], *, interval_s: float = 0.1, grace_s: float = 0.0) -> Relay:
    return Relay(
        service="intake",
        db=runtime().db,
        outbox=runtime().messaging.outbox,
        broker=runtime().broker,
        routes=lambda name, version: list(queues),
        interval_s=interval_s,
        grace_s=grace_s,
    )


class TestPublishedAtCommit:
    def test_a_committed_event_is_published_once_per_subscriber_and_marked_sent(
        self, publisher, queues
    ):
        message_id = stage_ping()
        assert publisher.flush()
        assert [copies_on(queue)[message_id] for queue in queues] == [1, 1]
        assert published_at(message_id) is not None

    def test_the_relay_does_not_publish_again_what_went_out_at_commit(self, publisher, queues):
        message_id = stage_ping()
        assert publisher.flush()
        assert drain(relay_to(queues)) == 0
        assert [copies_on(queue)[message_id] for queue in queues] == [1, 1]

    def test_a_rolled_back_transaction_publishes_nothing_it_staged(self, publisher, queues):
        with pytest.raises(RuntimeError), runtime().db.transaction() as session:
            runtime().messaging.stage(session, PING, {"ping_id": "never"})
            raise RuntimeError("the change is refused")
        assert publisher.flush()
        assert copies_on(queues[0]) == Counter()

    def test_a_rolled_back_savepoint_takes_its_events_and_the_rest_is_published(
        self, publisher, queues
    ):
        with runtime().db.transaction() as session:
            kept = runtime().messaging.stage(session, PING, {"ping_id": "kept"})
            with pytest.raises(RuntimeError), session.begin_nested():
                runtime().messaging.stage(session, PING, {"ping_id": "undone"})
                raise RuntimeError("the savepoint is rolled back")
            with session.begin_nested():
                released = runtime().messaging.stage(session, PING, {"ping_id": "released"})
        assert publisher.flush()
        assert copies_on(queues[0]) == Counter({kept: 1, released: 1})

    def test_nothing_is_published_before_the_commit(self, publisher, queues):
        seen_before_commit: list[Counter[str]] = []
        with runtime().db.transaction() as session:
            runtime().messaging.stage(session, PING, {"ping_id": "early"})
            session.flush()
            time.sleep(0.1)  # room for a publisher that would not wait for the commit
            seen_before_commit.append(copies_on(queues[0]))
        assert seen_before_commit == [Counter()]


class TestLeftBehind:
    def test_an_event_the_broker_refused_at_commit_is_published_once_by_the_relay(self, queues):
        unreachable = create_broker(
            dataclasses.replace(runtime().settings, broker_url="redis://127.0.0.1:1/0")
        )
        failing = CommitPublisher(
            db=runtime().db,
            outbox=runtime().messaging.outbox,
            broker=unreachable,
            routes=lambda name, version: list(queues),
        ).attach()
        try:
            message_id = stage_ping()
            assert failing.flush()
        finally:
            failing.detach()
            failing.close()
        assert published_at(message_id) is None
        assert drain(relay_to(queues)) == 1
        assert drain(relay_to(queues)) == 0
        assert [copies_on(queue)[message_id] for queue in queues] == [1, 1]

    def test_a_process_that_dies_right_after_the_commit_leaves_its_event_to_the_relay(self, queues):
        script = (
            "import os, sys\n"
            "from sqlalchemy import event\n"
            "from services.intake.config import runtime\n"
            "from tests.test_commit_publish import PING\n"
            "service = runtime()\n"
            # Registered before the publisher's, so it runs first: the commit is done, the
            # publish never happens.
            "event.listen(service.db.sessions, 'after_commit', lambda s: os._exit(3))\n"
            "service.publish_at_commit()\n"
            "with service.db.transaction() as session:\n"
            "    print(service.messaging.stage(session, PING, {'ping_id': 'p'}), flush=True)\n"
        )
        env = {**os.environ, **TEST_ENV, "PUBLISH_AT_COMMIT": "background"}
        env["PYTHONPATH"] = os.getcwd()
        died = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert died.returncode == 3, died.stderr
        message_id = died.stdout.strip()
        assert published_at(message_id) is None

        young = relay_to(queues, grace_s=60)
        assert young.publish_pending() == 0  # left to its process for a while
        assert drain(relay_to(queues)) == 1
        assert [copies_on(queue)[message_id] for queue in queues] == [1, 1]


@pytest.mark.skipif(BACKEND != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_a_relay_on_postgresql_is_woken_by_the_commit_not_its_poll(queues):
    relay = relay_to(queues, interval_s=30.0)
    running = threading.Thread(target=relay.run)
    running.start()
    try:
        time.sleep(0.5)  # listening, and asleep until its next poll in 30 s
        message_id = stage_ping()
        eventually(lambda: copies_on(queues[0])[message_id], timeout=5, what="the publish")
    finally:
        relay.stop()
        running.join(timeout=40)
    assert published_at(message_id) is not None


def _idle_polling_every_3_s() -> RedisBroker:
    """A broker whose idle consumers look at their queue every 3 s, unless woken."""
    settings = dataclasses.replace(
        load_settings(TEST_ENV), broker_idle_poll_ms=3_000, broker_heartbeat_timeout_ms=10_000
    )
    broker = build_runtime(settings).broker
    assert isinstance(broker, RedisBroker)
    return broker


def test_an_idle_worker_takes_a_message_as_it_arrives_not_at_its_next_poll():
    broker = _idle_polling_every_3_s()
    queue = f"wake-{uuid.uuid4().hex[:8]}"
    handled: list[float] = []

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}.stamp")
    def stamp(sent_at: float) -> None:
        handled.append(time.time() - sent_at)

    # Idle, the consumer waits up to 3 s between fetches: a message must not wait that long.
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1, worker_timeout=3_000)
    worker.start()
    try:
        time.sleep(0.5)  # the consumer has found the queue empty and waits
        for _ in range(5):
            stamp.send(time.time())
            time.sleep(0.2)
        eventually(lambda: len(handled) == 5, timeout=20, what="five messages")
    finally:
        worker.stop()
        broker.client.connection_pool.disconnect()
    assert max(handled) < 0.5, handled


def _reached(handled: list[int], count: int) -> bool:
    return len(handled) == count


def test_messages_arriving_one_by_one_cost_one_fetch_each_and_a_burst_is_all_handled():
    """A fetch that emptied the queue is followed by a wait for the next push, not by a fetch
    that would find nothing; a burst bigger than the prefetch still goes through whole."""
    broker = _idle_polling_every_3_s()
    queue = f"fetch-{uuid.uuid4().hex[:8]}"
    handled: list[int] = []
    fetches: list[int] = []
    real_fetch = broker.do_fetch

    def counted_fetch(*args: object) -> object:
        found = real_fetch(*args)
        if args[0] == queue:  # not the delay queue's fetches, which come on their own clock
            fetches.append(len(found))
        return found

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}.note")
    def note(number: int) -> None:
        handled.append(number)

    broker.do_fetch = counted_fetch  # type: ignore[attr-defined]
    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=2, worker_timeout=3_000)
    worker.start()
    try:
        time.sleep(0.5)  # the consumer has found the queue empty and waits
        before = len(fetches)
        for number in range(1, 11):
            note.send(number)
            eventually(partial(_reached, handled, number), timeout=10, what=f"message {number}")
        one_by_one = fetches[before:]
        for number in range(11, 211):
            note.send(number)
        eventually(partial(_reached, handled, 210), timeout=30, what="the burst")
    finally:
        worker.stop()
        del broker.do_fetch
        broker.client.connection_pool.disconnect()
    assert sorted(handled) == list(range(1, 211))
    # One fetch a message, each finding it; none that found nothing (the wait ended each time
    # because a message came, long before the 3 s idle limit).
    assert one_by_one == [1] * 10, one_by_one


def test_after_a_fetch_that_emptied_the_queue_the_messages_it_brought_are_handed_out_then_a_wait():
    """A fetch of three with room for five left the queue empty: the three are handed out from
    the cache, and the next call waits for a push rather than fetching nothing."""
    settings = dataclasses.replace(load_settings(TEST_ENV), broker_idle_poll_ms=200)
    broker = build_runtime(settings).broker
    assert isinstance(broker, RedisBroker)
    queue = f"drained-{uuid.uuid4().hex[:8]}"
    broker.declare_queue(queue)
    for _ in range(3):
        broker.enqueue(
            dramatiq.Message(
                queue_name=queue, actor_name=f"{queue}.noop", args=(), kwargs={}, options={}
            )
        )
    fetches: list[int] = []
    real_fetch = broker.do_fetch

    def counted_fetch(*args: object) -> object:
        found = real_fetch(*args)
        fetches.append(len(found))
        return found

    broker.do_fetch = counted_fetch  # type: ignore[attr-defined]
    consumer = broker.consume(queue, prefetch=5, timeout=200)
    try:
        taken = [next(consumer) for _ in range(3)]
        started = time.monotonic()
        assert next(consumer) is None
        waited = time.monotonic() - started
        for message in taken:
            consumer.ack(message)
    finally:
        del broker.do_fetch
        consumer.close()
        broker.client.connection_pool.disconnect()
    assert all(message is not None for message in taken)
    assert fetches == [3], fetches
    assert waited >= 0.15, waited  # it waited on the queue (up to the idle poll), nothing came


def test_a_message_whose_fetch_was_cut_off_is_handed_out_again():
    """Redis ran the fetch (the message moved to this worker's unacknowledged set) but the
    answer never arrived: the worker takes a new id, and once the old one's heartbeat is stale,
    maintenance hands the message out again instead of leaving it there for the worker's life."""
    settings = dataclasses.replace(
        load_settings(TEST_ENV),
        broker_idle_poll_ms=100,
        broker_heartbeat_timeout_ms=1_000,
        broker_maintenance_chance=1_000_000,  # every command runs maintenance
    )
    broker = build_runtime(settings).broker
    assert isinstance(broker, RedisBroker)
    queue = f"cut-{uuid.uuid4().hex[:8]}"
    broker.declare_queue(queue)
    message = dramatiq.Message(
        queue_name=queue, actor_name=f"{queue}.noop", args=(), kwargs={}, options={}
    )
    broker.enqueue(message)
    consumer = broker.consume(queue, prefetch=1, timeout=100)
    real_fetch = broker.do_fetch
    first_id = broker.broker_id

    def fetch_then_lose_the_answer(*args: object) -> object:
        real_fetch(*args)  # Redis moves the message to this worker's unacknowledged set
        raise redis.ConnectionError("connection reset while reading the answer")

    try:
        broker.do_fetch = fetch_then_lose_the_answer  # type: ignore[attr-defined]
        with pytest.raises(ConnectionClosed):
            next(consumer)
        del broker.do_fetch  # dramatiq's own dispatch again
        assert broker.broker_id != first_id

        time.sleep(1.2)  # the old id's heartbeat goes stale
        handed_out = eventually(
            lambda: next(broker.consume(queue, prefetch=1, timeout=100)),
            timeout=10,
            what="the message to be handed out again",
        )
        assert handed_out.message_id == message.message_id
    finally:
        consumer.close()
        broker.client.connection_pool.disconnect()
