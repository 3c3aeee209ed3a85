"""Liveness and readiness: is the process up, and can it reach its database and broker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def readiness(checks: Mapping[str, Check]) -> tuple[dict[str, Any], int]:
    """Run every check; 200 with each one's result when all pass, else 503."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as error:
            results[name] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in results.values())
    return {"status": "ready" if ready else "not ready", "checks": results}, (200 if ready else 503)
