"""The fabric on RabbitMQ, chosen by the broker URL: relay, idempotent consumer, dead letters.

Runs in the RabbitMQ leg of ``make test`` on queues of the run's own, deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid

import dramatiq
import pytest
from marshmallow import Schema, fields

from services.intake.config import build_runtime, load_settings
from shared.consumers import declare
from shared.dead_letters import list_dead_letters
from shared.events import Event
from shared.relay import Relay, drain
from tests.environment import TEST_ENV
from tests.support import eventually, running_worker

pytestmark = pytest.mark.rabbitmq

RABBITMQ_URL = os.environ.get("REDVEST_TEST_RABBITMQ_URL", "")


class PingSchema(Schema):
    ping_id = fields.Str(required=True)
    count = fields.Int(required=True)


@pytest.fixture(scope="module")
def rabbit():
    if not RABBITMQ_URL:
        pytest.skip("REDVEST_TEST_RABBITMQ_URL is not set")
    runtime = build_runtime(dataclasses.replace(load_settings(TEST_ENV), broker_url=RABBITMQ_URL))
    queue = f"redvest-test-{uuid.uuid4().hex[:10]}"
    event = Event(f"test.ping.{queue}", 1, PingSchema)
    seen: list[str] = []
    lock = threading.Lock()

    def record(session, received, *, ping_id: str, count: int) -> None:
        with lock:
            seen.append(ping_id)

    actor = declare(
        runtime.broker,
        db=runtime.db,
        messaging=runtime.messaging,
        event=event,
        handler=record,
        queue=queue,
    )
    yield runtime, event, actor, seen
    broker = runtime.broker
    for name in (queue, dramatiq.common.dq_name(queue), dramatiq.common.xq_name(queue)):
        broker.channel.queue_delete(name)
    broker.close()
    runtime.db.dispose()


def test_the_relay_publishes_to_rabbitmq_and_a_duplicate_is_consumed_once(rabbit):
    runtime, event, actor, seen = rabbit
    ping_id = uuid.uuid4().hex
    with runtime.db.transaction() as session:
        message_id = runtime.messaging.stage(session, event, {"ping_id": ping_id, "count": 1})
    relay = Relay(
        service=runtime.name,
        db=runtime.db,
        outbox=runtime.messaging.outbox,
        broker=runtime.broker,
        routes=lambda name, version: [actor.queue_name],
    )
    assert drain(relay) == 1
    message = dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name=event.actor_name,
        args=(),
        kwargs={"ping_id": ping_id, "count": 1},
        options={},
        message_id=message_id,
    )
    runtime.broker.enqueue(message)
    with running_worker(runtime.broker, actor.queue_name):
        eventually(lambda: ping_id in seen, what="the ping to be consumed")
        runtime.broker.join(actor.queue_name, timeout=30_000)
    assert seen.count(ping_id) == 1


def test_a_bad_payload_on_rabbitmq_is_dead_lettered_into_the_database(rabbit):
    runtime, event, actor, _ = rabbit
    bad = dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name=event.actor_name,
        args=(),
        kwargs={"ping_id": "x", "count": "many"},
        options={},
    )
    runtime.broker.enqueue(bad)
    with running_worker(runtime.broker, actor.queue_name):
        letters = eventually(
            lambda: list_dead_letters(runtime.db, runtime.messaging.dead_letters),
            what="the dead letter",
        )
    assert letters[0].message_id == bad.message_id
    assert "count" in letters[0].error
