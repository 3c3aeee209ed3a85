"""points' consumers: a confirmed service earns its volunteer points. Run with
``dramatiq services.points.actors:broker -Q points``."""

from services.points import ledger
from services.points.config import runtime
from shared import events
from shared.consumers import consumer

broker = runtime().broker

on_request_confirmed = consumer(runtime(), events.REQUEST_CONFIRMED)(
    ledger.credit_confirmed_service
)
