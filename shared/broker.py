"""The message broker: Redis by default, RabbitMQ when the URL says ``amqp://``."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Retries

from shared.settings import Settings

# Backoff between retries of a transient failure, in milliseconds.
MIN_BACKOFF_MS = 1_000
# With the default 20 retries a transient failure (a database fail-over, a restart) is retried
# for about an hour before the message is dead-lettered.
MAX_BACKOFF_MS = 300_000


class _RedisBroker(RedisBroker):
    """dramatiq's Redis broker with a bounded idle poll.

    An idle consumer backs off up to the worker's timeout (a second by default) between polls,
    which adds up to that much latency to every hop of a chain of services. Polling Redis ten
    times a second per idle queue costs little and keeps each hop short.
    """

    def __init__(self, *, idle_poll_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.idle_poll_ms = idle_poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        return super().consume(queue_name, prefetch, min(timeout, self.idle_poll_ms))


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
