"""Small builders for notify's tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.notify import delivery
from services.notify.config import runtime
from services.notify.models import Delivery, InboxMessage, Template
from services.notify.sandbox import MAX_STEPS
from shared.auth import issue_token
from shared.context import new_id
from shared.messaging import utcnow

VOLUNTEER = "volunteer:v-17"
RESIDENT = "resident:r-501"
ACCEPTED_DATA = {"volunteer_name": "Wang Jun", "category": "knife_sharpening"}

# Templates that rendering refuses: (subject, body, data, the part at fault, the reason).
COSTLY_TEMPLATES = {
    "a range longer than the sandbox allows": (
        "Hi",
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        {},
        "body",
        "range() may hold at most 1000 items",
    ),
    "the power operator": ("Hi", "{{ 'x' * 10**9 }}", {}, "body", "** operator is not allowed"),
    "a string repeated past the size limit": (
        "Hi",
        "{{ 'x' * times }}",
        {"times": 10**9},
        "body",
        "repeats a value of length 1 1000000000 times",
    ),
    "a string doubled in a loop": (
        "Hi",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        {},
        "body",
        "builds a value longer than 10000",
    ),
    "a padding width past the size limit": (
        "Hi",
        "{{ name|center(width) }}",
        {"name": "Wang", "width": 10**9},
        "body",
        "width of 1000000000",
    ),
    "loops that run too long": (
        "Hi",
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
        {},
        "body",
        f"more than {MAX_STEPS} loop iterations and calls",
    ),
    "a body longer than 10,000 characters": (
        "Hi",
        "{% for a in range(1000) %}{{ 'x' * 100 }}{% endfor %}",
        {},
        "body",
        "renders more than 10000 characters",
    ),
    "a subject longer than 200 characters": (
        "{{ name * 201 }}",
        "Hi",
        {"name": "x"},
        "subject",
        "renders more than 200 characters",
    ),
}

# Templates refused when saved: (subject, body, the part at fault, the reason).
STATICALLY_COSTLY = {
    "the power operator": ("Hi", "{{ points ** 2 }}", "body", "** operator is not allowed"),
    "a range longer than the sandbox allows": (
        "{% for i in range(5000) %}!{% endfor %}",
        "Hi",
        "subject",
        "range() may hold at most 1000 items, not 5000",
    ),
    "a constant string repeated past the size limit": (
        "Hi",
        "{{ '-' * 1000000 }}",
        "body",
        "repeats a value of length 1 1000000 times",
    ),
    "a subject whose text alone is too long": (
        "x" * 300,
        "Hi",
        "subject",
        "its text alone is 300 characters, more than 200",
    ),
}


def bearer(role: str, subject: str) -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}


def store_template(
    key: str, *, subject: str = "Hello", body: str = "Hello", channel: str = "inbox"
) -> None:
    """Store a template as given, bypassing the checks made when staff save one."""
    with runtime().db.transaction() as session:
        session.merge(
            Template(key=key, channel=channel, subject=subject, body=body, updated_at=utcnow())
        )


def notify(
    recipient: str = RESIDENT,
    template: str = "request.accepted",
    data: dict[str, Any] | None = None,
) -> str:
    """Deliver a notification as the consumer would; returns the source message id."""
    source = new_id()
    with runtime().db.transaction() as session:
        delivery.send_notification(
            session,
            recipient=recipient,
            template=template,
            data=ACCEPTED_DATA if data is None else data,
            source_message_id=source,
        )
    return source


def inbox_of(recipient: str) -> list[InboxMessage]:
    with runtime().db.read() as session:
        query = select(InboxMessage).where(InboxMessage.recipient == recipient)
        return list(session.scalars(query.order_by(InboxMessage.created_at)))


def delivery_log() -> list[Delivery]:
    with runtime().db.read() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.at)))
