"""The services that make up Redvest, named once: their queues, ports and token audiences."""

from __future__ import annotations

SERVICES = ("intake", "dispatch", "points", "notify")
# The port each service's web process listens on by default (``make run``, compose).
DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "points": 8003, "notify": 8004}


def queue_of(service: str) -> str:
    """The broker queue a service's worker consumes: one per service, named after it."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; the services are {SERVICES}")
    return service
