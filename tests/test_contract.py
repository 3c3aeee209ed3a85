"""Every event in the contract has exactly one consumer, whose handler takes exactly its fields."""

from __future__ import annotations

import inspect

import pytest

from shared.consumers import handler_of
from shared.events import ALL_EVENTS, Event


def consumers() -> dict[str, object]:
    import services.dispatch.actors as dispatch
    import services.intake.actors as intake
    import services.notify.actors as notify
    import services.points.actors as points

    found: dict[str, object] = {}
    service_queues = {event.queue for event in ALL_EVENTS}
    for module in (intake, dispatch, points, notify):
        for actor in module.broker.actors.values():
            if actor.queue_name not in service_queues:
                continue  # declared by a test on a queue of its own
            assert actor.actor_name not in found, f"{actor.actor_name} has two consumers"
            found[actor.actor_name] = actor
    return found


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda event: event.actor_name)
def test_each_event_has_one_consumer_on_its_queue_taking_exactly_its_fields(event: Event):
    actor = consumers().get(event.actor_name)
    assert actor is not None, f"nobody consumes {event.actor_name}"
    assert actor.queue_name == event.queue
    parameters = inspect.signature(handler_of(actor)).parameters.values()
    keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword_only == set(event.schema().fields)


def test_no_consumer_listens_for_an_event_outside_the_contract():
    assert set(consumers()) <= {event.actor_name for event in ALL_EVENTS}
