"""The message broker: Redis by default, RabbitMQ when the URL says ``amqp://``."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, cast
from uuid import uuid4

import dramatiq
import redis
import structlog
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Retries

from shared.settings import Settings

log = structlog.get_logger(__name__)

# Backoff between retries of a transient failure, in milliseconds.
MIN_BACKOFF_MS = 1_000
# With the default 20 retries a transient failure (a database fail-over, a restart) is retried
# for about an hour before the message is dead-lettered.
MAX_BACKOFF_MS = 300_000


class _WakingConsumer(Consumer):
    """dramatiq's Redis consumer, woken by Redis the moment its queue gets a message.

    dramatiq's own consumer sleeps between fetches of an empty queue, up to its idle timeout,
    and each hop of a chain of services pays that sleep. This one fetches as dramatiq does, and
    when the queue is empty waits on the queue's Redis list itself with ``BLMOVE list list LEFT
    LEFT``: it returns as soon as anything is pushed, and moving the head onto the head leaves
    the list as it was. When the prefetch is full it waits for an ack instead. Either wait ends
    after ``idle_s`` at the latest, so the worker's heartbeat (any fetch) stays fresh. A fetch
    that brought fewer messages than it asked for left the queue empty: the next call waits
    first and fetches after, which saves the fetch that would find nothing (one Redis script
    a message when messages come one by one).
    """

    def __init__(
        self,
        inner: _RedisConsumer,
        *,
        broker: RedisBroker,
        client: redis.Redis,
        key: str,
        prefetch: int,
        idle_s: float,
    ) -> None:
        self.inner = inner
        self.broker = broker
        self.client = client
        self.key = key
        self.prefetch = prefetch
        self.idle_s = idle_s
        self.outstanding = 0
        self._drained = False
        self._slot_freed = threading.Event()

    def _lost_connection(self) -> None:
        # A fetch or an ack cut off mid-way may have moved a message into this worker's set of
        # unacknowledged ones without it knowing: such a message would wait there for as long as
        # the worker lives. Taking a new id leaves the old set to a consumer that no longer
        # beats, whose messages Redis maintenance hands out again once its heartbeat is stale;
        # one already handled here is then skipped by its consumer's inbox.
        self.broker.broker_id = str(uuid4())
        log.warning("broker.connection_lost", queue=self.key, new_consumer_id=self.broker.broker_id)

    def __next__(self) -> MessageProxy | None:
        cache = self.inner.message_cache
        if self._drained and not cache and self.outstanding < self.prefetch:
            # The last fetch emptied the queue: a fetch now would most likely find nothing,
            # so wait for a push first (at once if one came meanwhile), and fetch after it.
            self._drained = False
            self._wait_for_push()
            return None
        # With nothing cached the inner consumer fetches this many; fewer means none are left.
        asked = 0 if cache else self.prefetch - self.inner.outstanding_message_count
        try:
            message = next(self.inner)
        except ConnectionClosed:
            self._lost_connection()
            raise
        if message is not None:
            self.outstanding += 1
            if asked:
                self._drained = 1 + len(self.inner.message_cache) < asked
            return message
        if self.outstanding >= self.prefetch:
            self._slot_freed.clear()
            if self.outstanding >= self.prefetch:
                self._slot_freed.wait(self.idle_s)
            return None
        self._wait_for_push()
        return None

    def _wait_for_push(self) -> None:
        """Until the queue's list holds a message, ``idle_s`` at most."""
        try:
            self.client.execute_command("BLMOVE", self.key, self.key, "LEFT", "LEFT", self.idle_s)
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None

    def _settled(self, count: int = 1) -> None:
        self.outstanding = max(0, self.outstanding - count)
        self._slot_freed.set()

    def ack(self, message: MessageProxy) -> None:
        try:
            self.inner.ack(message)
        except ConnectionClosed:
            self._lost_connection()
            raise
        finally:
            self._settled()

    def nack(self, message: MessageProxy) -> None:
        try:
            self.inner.nack(message)
        except ConnectionClosed:
            self._lost_connection()
            raise
        finally:
            self._settled()

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        messages = list(messages)
        try:
            self.inner.requeue(messages)
        finally:
            self._settled(len(messages))

    def close(self) -> None:
        self.inner.close()


class _RedisBroker(RedisBroker):
    """dramatiq's Redis broker whose idle consumers wake when a message arrives."""

    def __init__(self, *, idle_poll_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_poll_ms = idle_poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        # The inner consumer never sleeps: the waking consumer waits instead.
        return _WakingConsumer(
            cast(_RedisConsumer, super().consume(queue_name, prefetch, 0)),
            broker=self,
            client=self.client,
            key=f"{self.namespace}:{queue_name}",
            prefetch=prefetch,
            # Never 0: BLMOVE would then wait for ever.
            idle_s=max(1, min(timeout, self.idle_poll_ms)) / 1000,
        )


def create_broker(settings: Settings, *, extra_middleware: tuple[Any, ...] = ()) -> dramatiq.Broker:
    """A broker tuned for the fabric: fast recovery of dead workers, bounded retries."""
    url = settings.broker_url
    broker: dramatiq.Broker
    if url.startswith(("amqp://", "amqps://")):
        # Publisher confirms: enqueue returns only once RabbitMQ has the message, so the relay
        # never marks an event sent that the broker did not take.
        broker = RabbitmqBroker(url=url, confirm_delivery=True)
    elif url.startswith(("redis://", "rediss://", "unix://")):
        broker = _RedisBroker(
            idle_poll_ms=settings.broker_idle_poll_ms,
            url=url,
            namespace=settings.broker_namespace,
            heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
            maintenance_chance=settings.broker_maintenance_chance,
            # A partitioned Redis must fail calls, not hang the relay or a worker forever.
            socket_timeout=10,
            socket_connect_timeout=5,
        )
    else:
        raise ValueError(f"unsupported broker URL scheme: {url.split('://', 1)[0]!r}")

    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            middleware.max_retries = settings.max_retries
            middleware.min_backoff = MIN_BACKOFF_MS
            middleware.max_backoff = MAX_BACKOFF_MS
    broker.add_middleware(CurrentMessage())
    for middleware in extra_middleware:
        broker.add_middleware(middleware)
    return broker
