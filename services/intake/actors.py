"""intake's consumers: dispatch's news about each request, the moral bank's refusals, and its
own webhook deliveries as they fall due.

Run with ``dramatiq services.intake.actors:start --queues intake``: the dramatiq CLI calls
``start``, which declares these consumers on the worker's broker.
"""

from services.intake import handlers, webhooks
from services.intake.config import runtime
from services.intake.destinations import destinations_for
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
    (events.WEBHOOK_DELIVERY_DUE, handlers.on_webhook_delivery_due),
)


def start() -> None:
    """The worker's entry point: intake's consumers on the process's broker, and the sender
    of the webhook deliveries they claim."""
    service = runtime()
    start_worker(service, CONSUMERS)
    webhooks.Sender(
        service.db,
        destinations=destinations_for(
            service.settings.environment, trusted_hosts=service.settings.webhook_trusted_hosts
        ),
    ).attach()
