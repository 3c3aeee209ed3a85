"""Structured logs: one JSON object a line, carrying the bound correlation and causation ids."""

from __future__ import annotations

import logging
import sys

import structlog

from shared.settings import Settings

_configured = False


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library through one JSON (or console) renderer."""
    global _configured
    if _configured:
        return
    _configured = True

    def add_service(
        _: object, __: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("service", settings.service)
        return event

    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("pika", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
