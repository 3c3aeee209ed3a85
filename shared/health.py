"""Liveness and readiness: is the process up, and can it reach its database (and broker)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

Check = Callable[[], None]


def broker_pinger(broker: dramatiq.Broker) -> Check:
    """A callable that raises when the broker cannot be reached."""
    if isinstance(broker, RedisBroker):
        client = broker.client

        def ping_redis() -> None:
            client.ping()

        return ping_redis

    def ping_rabbitmq() -> None:
        if not broker.connection.is_open:  # type: ignore[attr-defined]
            raise ConnectionError("RabbitMQ connection is closed")

    return ping_rabbitmq


def readiness(
    checks: Mapping[str, Check], *, required: Collection[str]
) -> tuple[dict[str, Any], int]:
    """Run every check: 503 when a ``required`` one fails; otherwise 200, ``degraded`` when
    another one failed (a web process takes writes while its broker is away: the outbox keeps
    its messages until the broker is back, so it stays in service)."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as error:
            results[name] = f"unavailable: {type(error).__name__}"
    failed = {name for name, value in results.items() if value != "ok"}
    if failed & set(required):
        return {"status": "not ready", "checks": results}, 503
    return {"status": "degraded" if failed else "ready", "checks": results}, 200
