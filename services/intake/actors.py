"""intake's consumers: dispatch's news about each request, and the moral bank's refusals.

Run with ``dramatiq services.intake.actors:start --queues intake``: the dramatiq CLI calls
``start``, which declares these consumers on the worker's broker.
"""

from services.intake import handlers
from services.intake.config import runtime
from shared import events
from shared.consumers import Consumers
from shared.runtime import start_worker

CONSUMERS = Consumers(
    "intake",
    (events.REQUEST_ASSIGNED, handlers.on_request_assigned),
    (events.REQUEST_UNROUTED, handlers.on_request_unrouted),
    (events.REQUEST_ACCEPTED, handlers.on_request_accepted),
    (events.REQUEST_COMPLETED, handlers.on_request_completed),
    (events.EARNING_REFUSED, handlers.on_earning_refused),
)


def start() -> None:
    """The worker's entry point: intake's consumers on the process's broker."""
    start_worker(runtime(), CONSUMERS)
