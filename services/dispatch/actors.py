"""dispatch's consumers: requests submitted through intake, confirmed, withdrawn or reopened.

Run with ``dramatiq services.dispatch.actors:start --queues dispatch``: the dramatiq CLI calls
``start``, which declares these consumers on the worker's broker.
"""

from services.dispatch import handlers
from services.dispatch.config import runtime
from shared import events
from shared.consumers import Consumers
from shared.runtime import start_worker

CONSUMERS = Consumers(
    "dispatch",
    (events.REQUEST_SUBMITTED, handlers.on_request_submitted),
    (events.REQUEST_CONFIRMED, handlers.on_request_confirmed),
    (events.REQUEST_WITHDRAWN, handlers.on_request_withdrawn),
    (events.REQUEST_REOPENED, handlers.on_request_reopened),
)


def start() -> None:
    """The worker's entry point: dispatch's consumers on the process's broker."""
    start_worker(runtime(), CONSUMERS)
