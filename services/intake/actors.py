"""intake's consumers: dispatch's news about each request. Run with
``dramatiq services.intake.actors:broker -Q intake``."""

from services.intake import requests
from services.intake.config import runtime
from shared import events
from shared.consumers import consumer

broker = runtime().broker

on_request_assigned = consumer(runtime(), events.REQUEST_ASSIGNED)(requests.record_assignment)
on_request_unrouted = consumer(runtime(), events.REQUEST_UNROUTED)(requests.record_unrouted)
on_request_accepted = consumer(runtime(), events.REQUEST_ACCEPTED)(requests.record_acceptance)
on_request_completed = consumer(runtime(), events.REQUEST_COMPLETED)(requests.record_completion)
