"""notify's consumers: every service's requests for a notification.

Run with ``dramatiq services.notify.actors:start --queues notify``: the dramatiq CLI calls
``start``, which declares these consumers on the worker's broker.
"""

from services.notify import handlers
from services.notify.config import runtime
from shared import events
from shared.consumers import Consumers
from shared.runtime import start_worker

CONSUMERS = Consumers(
    "notify",
    (events.NOTIFICATION_REQUESTED, handlers.on_notification_requested),
)


def start() -> None:
    """The worker's entry point: notify's consumers on the process's broker."""
    start_worker(runtime(), CONSUMERS)
