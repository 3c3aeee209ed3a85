"""The event contract holds: every event has subscribers, every subscription has a consumer in
the subscribing service, and that consumer's handler takes exactly the event's fields."""

from __future__ import annotations

import importlib
import inspect

import pytest

from shared import events
from shared.consumers import Consumers
from shared.events import ALL_EVENTS, SUBSCRIPTIONS, Event
from shared.topology import SERVICES


def consumers_of(service: str) -> Consumers:
    consumers: Consumers = importlib.import_module(f"services.{service}.actors").CONSUMERS
    return consumers


SUBSCRIBED = [(event, service) for event, services in SUBSCRIPTIONS.items() for service in services]


def test_every_event_has_at_least_one_subscriber():
    assert set(SUBSCRIPTIONS) == set(ALL_EVENTS)
    assert all(SUBSCRIPTIONS[event] for event in ALL_EVENTS)
    assert all(set(services) <= set(SERVICES) for services in SUBSCRIPTIONS.values())


@pytest.mark.parametrize(
    ("event", "service"), SUBSCRIBED, ids=lambda value: getattr(value, "actor_name", value)
)
def test_each_subscription_has_a_consumer_taking_exactly_the_events_fields(
    event: Event, service: str
):
    handler = consumers_of(service).handler_for(event)
    assert handler is not None, f"{service} subscribes to {event.actor_name} but has no consumer"
    parameters = list(inspect.signature(handler).parameters.values())
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert positional == ["session", "received"]
    assert keyword_only == event.fields


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_consumes_an_event_it_does_not_subscribe_to(service: str):
    handled = set(consumers_of(service).handlers)
    subscribed = {event.actor_name for event, who in SUBSCRIPTIONS.items() if service in who}
    assert handled == subscribed


def test_a_consumer_for_an_event_the_service_does_not_subscribe_to_is_refused_at_once():
    with pytest.raises(ValueError, match="does not subscribe"):
        Consumers("notify", (events.REQUEST_SUBMITTED, lambda session, received, **_: None))


def test_an_outbox_row_of_an_event_outside_the_contract_has_no_subscribers():
    with pytest.raises(events.ContractError):
        events.subscribers("request.teleported", 1)
