"""A service's consumers: for each event it subscribes to, the handler that translates it.

What every consumer needs is done here, once: read the payload tolerantly, bind the correlation
and causation ids, open a transaction, skip a message already handled (inbox), and mark bad
payloads as permanent so they are dead-lettered rather than retried.

A handler is called as ``handler(session, received, **fields)``: the event's validated fields
as keyword-only arguments, and what is known of the message that carried them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage

from shared.context import work_context
from shared.database import Database
from shared.errors import DomainError
from shared.events import ContractError, Event, subscriptions_of
from shared.messaging import Messaging
from shared.topology import queue_of

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Received:
    """The message a handler is handling: its id (the source of what it causes) and origin."""

    message_id: str
    correlation_id: str | None
    event: str


Handler = Callable[..., Any]


class PermanentError(Exception):
    """Processing this message can never succeed: do not retry, dead-letter it."""


@cache
def _signature(handler: Handler) -> inspect.Signature:
    return inspect.signature(handler)


def deliver(
    *, db: Database, messaging: Messaging, event: Event, handler: Handler, message: dramatiq.Message
) -> bool:
    """Handle one message exactly once; returns False when it was a duplicate."""
    if message.args:
        raise PermanentError(f"{event.actor_name} takes keyword fields only, got positional args")
    try:
        data = event.read_incoming(message.kwargs)
    except ContractError as error:
        raise PermanentError(str(error)) from error
    try:
        _signature(handler).bind(None, None, **data)
    except TypeError as error:
        # The contract and the handler disagree: a retry cannot mend that, a release can.
        raise PermanentError(
            f"{event.actor_name} handler does not fit the contract: {error}"
        ) from error
    correlation = message.options.get("correlation_id")
    received = Received(
        message_id=message.message_id, correlation_id=correlation, event=event.actor_name
    )
    with work_context(
        correlation=correlation,
        causation=message.message_id,
        message_id=message.message_id,
        actor=event.actor_name,
    ):
        try:
            with db.transaction() as session:
                if not messaging.claim(
                    session, consumer=event.actor_name, message_id=message.message_id
                ):
                    log.info("message.duplicate_skipped")
                    return False
                handler(session, received, **data)
        except DomainError as error:
            raise PermanentError(f"{type(error).__name__}: {error.detail}") from error
        except ContractError as error:
            # The handler tried to publish something the contract refuses: retrying cannot help.
            raise PermanentError(f"ContractError: {error}") from error
        log.info("message.processed")
        return True


class Consumers:
    """The handlers of one service, one per event it subscribes to."""

    def __init__(self, service: str, *handlers: tuple[Event, Handler]) -> None:
        self.service = service
        self.queue = queue_of(service)
        self.handlers: dict[str, tuple[Event, Handler]] = {}
        for event, handler in handlers:
            if event.actor_name in self.handlers:
                raise ValueError(f"{service} handles {event.actor_name} twice")
            if event not in subscriptions_of(service):
                raise ValueError(
                    f"{service} handles {event.actor_name} but does not subscribe to it: "
                    "add it to SUBSCRIPTIONS in shared/events.py"
                )
            self.handlers[event.actor_name] = (event, handler)

    def handler_for(self, event: Event) -> Handler | None:
        found = self.handlers.get(event.actor_name)
        return found[1] if found else None

    def handle(self, message: dramatiq.Message, *, db: Database, messaging: Messaging) -> bool:
        """Handle ``message`` in this thread as the worker would (tools and tests)."""
        found = self.handlers.get(message.actor_name)
        if found is None:
            raise PermanentError(f"{self.service} has no consumer for {message.actor_name}")
        event, handler = found
        return deliver(db=db, messaging=messaging, event=event, handler=handler, message=message)

    def declare(
        self, broker: dramatiq.Broker, *, db: Database, messaging: Messaging
    ) -> dict[str, dramatiq.Actor[Any, None]]:
        """Declare one actor per handled event on ``broker``, on the service's queue."""
        return {
            actor_name: declare(
                broker, db=db, messaging=messaging, event=event, handler=handler, queue=self.queue
            )
            for actor_name, (event, handler) in self.handlers.items()
        }


def declare(
    broker: dramatiq.Broker,
    *,
    db: Database,
    messaging: Messaging,
    event: Event,
    handler: Handler,
    queue: str,
) -> dramatiq.Actor[Any, None]:
    """Declare on ``broker`` the actor that hands ``event``'s messages on ``queue`` to
    ``handler``, exactly once each."""

    def receive(*args: Any, **kwargs: Any) -> None:
        message = CurrentMessage.get_current_message()
        if message is None:
            raise RuntimeError("CurrentMessage middleware is not installed")
        deliver(db=db, messaging=messaging, event=event, handler=handler, message=message)

    receive.__name__ = getattr(handler, "__name__", "receive")
    receive.__module__ = getattr(handler, "__module__", __name__)
    actor = dramatiq.actor(
        actor_name=event.actor_name, queue_name=queue, broker=broker, throws=(PermanentError,)
    )
    return actor(receive)
