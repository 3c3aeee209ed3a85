"""notify's consumer: every service's requests for a notification. Run with
``dramatiq services.notify.actors:broker -Q notify``."""

from services.notify import delivery
from services.notify.config import runtime
from shared import events
from shared.consumers import consumer

broker = runtime().broker

on_notification_requested = consumer(runtime(), events.NOTIFICATION_REQUESTED)(
    delivery.deliver_notification
)
