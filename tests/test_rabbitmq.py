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
from shared.consumers import consumer
from shared.dead_letters import list_dead_letters
from shared.events import Event
from shared.relay import drain
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
    runtime = build_runtime(dataclasses.replace(load_settings(), broker_url=RABBITMQ_URL))
    queue = f"redvest-test-{uuid.uuid4().hex[:10]}"
    event = Event(f"test.ping.{queue}", 1, queue, PingSchema)
    seen: list[str] = []
    lock = threading.Lock()

    def record(session, *, ping_id: str, count: int) -> None:
        with lock:
            seen.append(ping_id)

    actor = consumer(runtime, event)(record)
    yield runtime, event, actor, seen
    broker = runtime.broker
    for name in (queue, dramatiq.common.dq_name(queue), dramatiq.common.xq_name(queue)):
        broker.channel.queue_delete(name)
    broker.close()


def test_the_relay_publishes_to_rabbitmq_and_a_duplicate_is_consumed_once(rabbit):
    runtime, event, _, seen = rabbit
    ping_id = uuid.uuid4().hex
    with runtime.db.transaction() as session:
        message_id = runtime.messaging.stage(session, event, {"ping_id": ping_id, "count": 1})
    assert drain(runtime) == 1
    message = dramatiq.Message(
        queue_name=event.queue,
        actor_name=event.actor_name,
        args=(),
        kwargs={"ping_id": ping_id, "count": 1},
        options={},
        message_id=message_id,
    )
    runtime.broker.enqueue(message)
    with running_worker(runtime.broker, event.queue):
        eventually(lambda: ping_id in seen, what="the ping to be consumed")
        runtime.broker.join(event.queue, timeout=30_000)
    assert seen.count(ping_id) == 1


def test_a_bad_payload_on_rabbitmq_is_dead_lettered_into_the_database(rabbit):
    runtime, event, _, _ = rabbit
    bad = dramatiq.Message(
        queue_name=event.queue,
        actor_name=event.actor_name,
        args=(),
        kwargs={"ping_id": "x", "count": "many"},
        options={},
    )
    runtime.broker.enqueue(bad)
    with running_worker(runtime.broker, event.queue):
        letters = eventually(lambda: list_dead_letters(runtime), what="the dead letter")
    assert letters[0].message_id == bad.message_id
    assert "count" in letters[0].error
