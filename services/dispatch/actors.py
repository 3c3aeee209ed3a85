"""dispatch's consumers: requests submitted through intake. Run with
``dramatiq services.dispatch.actors:broker -Q dispatch``."""

from services.dispatch import routing
from services.dispatch.config import runtime
from shared import events
from shared.consumers import consumer

broker = runtime().broker

on_request_submitted = consumer(runtime(), events.REQUEST_SUBMITTED)(routing.assign_request)
