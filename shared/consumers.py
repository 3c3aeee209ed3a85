"""Turn a domain handler into an idempotent Dramatiq actor for one event.

The wrapper does what every consumer needs, once: read the payload tolerantly, bind the
correlation and causation ids, open a transaction, skip a message already handled (inbox),
and mark bad payloads as permanent so they are dead-lettered rather than retried.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage

from shared.context import work_context
from shared.errors import DomainError
from shared.events import ContractError, Event
from shared.runtime import ServiceRuntime

log = structlog.get_logger(__name__)

# A domain function called as ``handler(session, **fields)`` with the event's validated fields,
# declared keyword-only and typed like any other domain function.
Handler = Callable[..., Any]
_deliverers: dict[tuple[int, str], partial[bool]] = {}


def _key(actor: dramatiq.Actor[Any, Any]) -> tuple[int, str]:
    return id(actor.broker), actor.actor_name


class PermanentError(Exception):
    """Processing this message can never succeed: do not retry, dead-letter it."""


@cache
def _signature(handler: Handler) -> inspect.Signature:
    return inspect.signature(handler)


def deliver(
    runtime: ServiceRuntime, event: Event, handler: Handler, message: dramatiq.Message
) -> bool:
    """Handle one message exactly once; returns False when it was a duplicate."""
    if message.args:
        raise PermanentError(f"{event.actor_name} takes keyword fields only, got positional args")
    try:
        data = event.read_incoming(message.kwargs)
    except ContractError as error:
        raise PermanentError(str(error)) from error
    try:
        _signature(handler).bind(None, **data)
    except TypeError as error:
        # The contract and the handler disagree: a retry cannot mend that, a release can.
        raise PermanentError(
            f"{event.actor_name} handler does not fit the contract: {error}"
        ) from error
    with work_context(
        correlation=message.options.get("correlation_id"),
        causation=message.message_id,
        message_id=message.message_id,
        actor=event.actor_name,
    ):
        try:
            with runtime.db.transaction() as session:
                if not runtime.messaging.claim(
                    session, consumer=event.actor_name, message_id=message.message_id
                ):
                    log.info("message.duplicate_skipped")
                    return False
                handler(session, **data)
        except DomainError as error:
            raise PermanentError(f"{type(error).__name__}: {error.detail}") from error
        except ContractError as error:
            # The handler tried to publish something the contract refuses: retrying cannot help.
            raise PermanentError(f"ContractError: {error}") from error
        log.info("message.processed")
        return True


def consumer(runtime: ServiceRuntime, event: Event) -> Callable[[Handler], dramatiq.Actor]:
    """Declare the actor for ``event`` on the service's broker, bound to ``handler``."""

    def decorate(handler: Handler) -> dramatiq.Actor:
        def receive(*args: Any, **kwargs: Any) -> None:
            message = CurrentMessage.get_current_message()
            if message is None:
                raise RuntimeError("CurrentMessage middleware is not installed")
            deliver(runtime, event, handler, message)

        receive.__name__ = handler.__name__
        receive.__module__ = handler.__module__
        declared: dramatiq.Actor[Any, None] = dramatiq.actor(
            actor_name=event.actor_name,
            queue_name=event.queue,
            broker=runtime.broker,
            throws=(PermanentError,),
        )(receive)
        _deliverers[_key(declared)] = partial(deliver, runtime, event, handler)
        return declared

    return decorate


def deliver_to(actor: dramatiq.Actor, message: dramatiq.Message) -> bool:
    """Run a consumer actor's handling of ``message`` in this thread (tools and tests)."""
    return _deliverers[_key(actor)](message)


def handler_of(actor: dramatiq.Actor[Any, Any]) -> Handler:
    """The domain function a consumer actor calls."""
    handler: Handler = _deliverers[_key(actor)].args[2]
    return handler
