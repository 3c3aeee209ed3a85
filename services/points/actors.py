"""points' consumers: the hours of a service reported done are held as pending points, and a
confirmed service earns its volunteer points.

Run with ``dramatiq services.points.actors:start --queues points``: the dramatiq CLI calls
``start``, which declares these consumers on the worker's broker.
"""

from services.points import handlers
from services.points.config import runtime
from shared import events
from shared.consumers import Consumers
from shared.runtime import start_worker

CONSUMERS = Consumers(
    "points",
    (events.REQUEST_COMPLETED, handlers.on_request_completed),
    (events.REQUEST_CONFIRMED, handlers.on_request_confirmed),
)


def start() -> None:
    """The worker's entry point: points' consumers on the process's broker."""
    start_worker(runtime(), CONSUMERS)
