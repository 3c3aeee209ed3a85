"""Small builders and helpers the tests of every service share."""

from __future__ import annotations

import importlib
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dramatiq
import psycopg
from sqlalchemy.engine import make_url

from shared.consumers import Consumers
from shared.events import SUBSCRIPTIONS, Event
from shared.messaging import Messaging
from shared.publishing import to_messages
from shared.topology import queue_of

T = TypeVar("T")


def message_for(
    event: Event,
    payload: Mapping[str, Any],
    *,
    to: str | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
) -> dramatiq.Message:
    """The copy a relay would publish for subscriber ``to`` (needed when there are several)
    of ``payload``, validated as a publisher would."""
    subscribers = SUBSCRIPTIONS[event]
    if to is None:
        if len(subscribers) != 1:
            raise ValueError(f"{event.name} has subscribers {subscribers}: say which with to=")
        (to,) = subscribers
    return dramatiq.Message(
        queue_name=queue_of(to),
        actor_name=event.actor_name,
        args=(),
        kwargs=event.validate_outgoing(payload),
        options={
            "correlation_id": correlation_id or uuid.uuid4().hex,
            "event": event.name,
            "event_version": event.version,
        },
        message_id=message_id or uuid.uuid4().hex,
    )


def staged_messages(
    runtime: Any, event: Event | None = None, *, to: str | None = None
) -> list[dramatiq.Message]:
    """Every outbox row of a service as the copies it would be published as (only those for
    subscriber ``to``, if given)."""
    from sqlalchemy import select

    messaging: Messaging = runtime.messaging
    query = select(messaging.outbox).order_by(messaging.outbox.c.created_at)
    if event is not None:
        query = query.where(messaging.outbox.c.event == event.name)
    with runtime.db.read() as session:
        rows = list(session.execute(query))
    copies = [copy for row in rows for copy in to_messages(row)]
    return [copy for copy in copies if to is None or copy.queue_name == queue_of(to)]


def deliver_to(consumers: Consumers, message: dramatiq.Message) -> bool:
    """Handle ``message`` in this thread as the worker of ``consumers``' service would."""
    runtime = importlib.import_module(f"services.{consumers.service}.config").runtime()
    return consumers.handle(message, db=runtime.db, messaging=runtime.messaging)


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll until ``check`` returns something truthy; fail after a generous timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@contextmanager
def running_worker(broker: dramatiq.Broker, *queues: str) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker, in this process, consuming ``queues`` from the real broker."""
    worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


_FLASK_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    """The OpenAPI path of a Flask rule: ``<name>`` and ``<converter:name>`` become ``{name}``."""
    return _FLASK_PARAMETER.sub(r"{\1}", rule)


PROBLEM_MIME = "application/problem+json"


def assert_errors_documented(
    spec: dict[str, Any], expected: dict[tuple[str, str], set[str]]
) -> None:
    """Each ``(method, path)`` documents exactly ``expected`` error codes, all as problem+json,
    under a one-line summary; 401 once for all, as the shared response."""
    shared = spec["components"]["responses"]
    operations = {
        (method, path): operation
        for path, by_method in spec["paths"].items()
        for method, operation in by_method.items()
        if method != "parameters"
    }
    assert set(operations) == set(expected)
    for key, codes in expected.items():
        operation = operations[key]
        responses = operation["responses"]
        assert {code for code in responses if code.isdigit() and code >= "400"} == codes, key
        assert responses["401"] == {"$ref": "#/components/responses/UNAUTHORIZED"}, key
        for code in codes:
            response = responses[code]
            if "$ref" in response:
                response = shared[response["$ref"].rsplit("/", 1)[-1]]
            assert PROBLEM_MIME in response["content"], (key, code)
        assert operation["summary"] and "\n" not in operation["summary"], key


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """The URL of a database of its own beside ``database_url`` (a service's test database),
    made empty for a migration test and removed afterwards."""
    server, name = database_url.rsplit("/", 1)
    if database_url.startswith("sqlite"):
        url = f"{server}/{name.removesuffix('.db')}-migrations.db"
        file = Path(make_url(url).database or "")
        file.unlink(missing_ok=True)
        try:
            yield url
        finally:
            file.unlink(missing_ok=True)
        return
    scratch = f"{name}_migrations"
    admin_url = f"{server}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {scratch}".encode())
    try:
        yield f"{server}/{scratch}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)".encode())
