"""Small builders for notify's tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from services.notify import delivery
from services.notify.config import runtime
from services.notify.models import Delivery, InboxMessage, Template
from services.notify.sandbox import MAX_DEPTH, MAX_STEPS
from shared.auth import issue_token
from shared.clock import utcnow
from shared.context import new_id
from shared.notifications import (
    ASSIGNMENT_CREATED,
    POINTS_CREDITED,
    REQUEST_ACCEPTED,
    REQUEST_COMPLETED,
    NotificationKind,
)

VOLUNTEER = "volunteer:v-17"
RESIDENT = "resident:r-501"
LOCATION = {"community": "changshan-garden", "building": "3", "unit": "2", "household": "501"}

# Data of every field of each kind, as a publisher would send it for story 3.
EXAMPLES: dict[str, dict[str, Any]] = {
    ASSIGNMENT_CREATED.key: {
        "request_id": "req-778",
        "assignment_id": "asg-1",
        "category": "knife_sharpening",
        "summary": "Two knives",
        "location": LOCATION,
        "priority": "normal",
    },
    REQUEST_ACCEPTED.key: {
        "request_id": "req-778",
        "volunteer_name": "Wang Jun",
        "category": "knife_sharpening",
        "summary": "Two knives",
    },
    REQUEST_COMPLETED.key: {
        "request_id": "req-778",
        "volunteer_name": "Wang Jun",
        "category": "knife_sharpening",
        "hours": "1.50",
    },
    POINTS_CREDITED.key: {
        "request_id": "req-778",
        "points": "15",
        "balance": "135",
        "hours": "1.50",
        "category": "knife_sharpening",
    },
}


def data_for(kind: NotificationKind, **changes: Any) -> dict[str, Any]:
    """A notification's data as notify receives it: the kind's example with ``changes``."""
    return kind.check({**EXAMPLES[kind.key], **changes})


ACCEPTED_DATA = data_for(REQUEST_ACCEPTED)


@dataclass(frozen=True)
class BadTemplate:
    """A template notify refuses: the kind it is written for, its text, the part at fault
    and the reason given."""

    kind: NotificationKind
    subject: str
    body: str
    part: str
    reason: str
    error: type[delivery.TemplateError] = delivery.TemplateError
    # Changes to the kind's example data that make rendering fail (none: it always fails).
    changes: Mapping[str, Any] = field(default_factory=dict)


# Templates whose rendering costs too much whatever the data: refused when saved, and when an
# old row holding one is rendered.
COSTLY_TEMPLATES = {
    "a range longer than the sandbox allows": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        "body",
        "range() may hold at most 1000 items",
    ),
    "the power operator": BadTemplate(
        REQUEST_ACCEPTED, "Hi", "{{ 'x' * 10**9 }}", "body", "** operator is not allowed"
    ),
    "a string doubled in a loop": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "body",
        "builds a value longer than 10000",
    ),
    "loops that run too long": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
        "body",
        f"more than {MAX_STEPS} loop iterations and calls",
    ),
    **{
        what: BadTemplate(REQUEST_ACCEPTED, "Hi", body, "body", reason)
        for what, body, reason in [
            (
                "a trillion slices drawn through other filters",
                "{{ [1]|slice(1000000000000)|select|list|length }}",
                "asks for a width or count of 1000000000000",
            ),
            (
                "batches of ten million",
                "{{ [1]|batch(10000000, 0)|list|length }}",
                "asks for a width or count of 10000000",
            ),
            (
                "lists summed into one",
                "{{ ([[1] * 9999] * 300)|sum(start=[]) }}",
                "sum adds numbers only",
            ),
            (
                "a join past the size limit",
                "{{ ([('x' * 9999)] * 100)|join }}",
                "builds a value longer than 10000",
            ),
            (
                "a join method past the size limit",
                "{{ ','.join(['x' * 9999] * 100) }}",
                "builds a value longer than 10000",
            ),
            (
                "a replacement past the size limit",
                "{{ ('x' * 9999)|replace('x', 'y' * 9999) }}",
                "builds a value longer than 10000",
            ),
            (
                "a replace method past the size limit",
                "{{ ('x' * 9999).replace('x', 'yy') }}",
                "builds a value longer than 10000",
            ),
            (
                "JSON indented wide",
                "{{ ([1] * 9999)|tojson(indent=9999) }}",
                "repeats 9999 characters on every line",
            ),
            (
                "a long indent on every line",
                "{{ ('x\n' * 5000)|indent('y' * 9999) }}",
                "repeats 9999 characters on every line",
            ),
            (
                "generators chained past the step limit",
                "{{ ([1] * 9999)|select|select|select|list|length }}",
                f"more than {MAX_STEPS} loop iterations and calls",
            ),
            (
                "a translation table",
                "{{ 'abc'.translate({97: 'x' * 9999}) }}",
                "translate() is not allowed",
            ),
        ]
    },
    "a body longer than 10,000 characters": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{% for a in range(1000) %}{{ 'x' * 100 }}{% endfor %}",
        "body",
        "renders more than 10000 characters",
    ),
    "a subject longer than 200 characters": BadTemplate(
        REQUEST_ACCEPTED,
        "{{ category * 201 }}",
        "Hi",
        "subject",
        "renders more than 200 characters",
    ),
    **{
        f"{what} nested 80 deep": BadTemplate(
            REQUEST_ACCEPTED, "Hi", body, "body", f"more than {MAX_DEPTH} levels deep"
        )
        for what, body in (
            ("blocks", "{% if category %}" * 80 + "x" + "{% endif %}" * 80),
            ("parentheses", "{{ " + "(" * 80 + "category" + ")" * 80 + " }}"),
            ("lists", "{{ " + "[" * 80 + "]" * 80 + " }}"),
            ("operators", "{{ 1" + " + 1" * 2000 + " }}"),
            ("attributes", "{{ category" + ".x" * 2000 + " }}"),
        )
    },
    "a macro calling itself": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}",
        "body",
        f"it nests calls more than {MAX_DEPTH} deep",
    ),
}

# Templates that render the sample of their kind within the limits, so saving accepts them,
# but cost too much with some data: rendering is the last line of defence.
COSTLY_WITH_SOME_DATA = {
    "a string repeated past the size limit": BadTemplate(
        REQUEST_COMPLETED,
        "Hi",
        "{{ 'x' * (hours|int) }}",
        "body",
        "repeats a value of length 1 1000000000 times",
        changes={"hours": "1000000000"},
    ),
    "a padding width past the size limit": BadTemplate(
        REQUEST_COMPLETED,
        "Hi",
        "{{ volunteer_name|center(hours|int) }}",
        "body",
        "width or count of 1000000000",
        changes={"hours": "1000000000"},
    ),
}

# Templates that reach for Python's internals: refused when saved, and when rendered.
UNSAFE_TEMPLATES = {
    "class internals named in the text": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "body",
        "'__class__'",
        delivery.UnsafeTemplate,
    ),
    "a private attribute reached through a filter": BadTemplate(
        REQUEST_ACCEPTED,
        "Hi",
        "{{ volunteer_name|attr('__class__') }}",
        "body",
        "attribute '__class__'",
        delivery.UnsafeTemplate,
    ),
}

# A template using a variable its kind does not declare.
UNDECLARED_VARIABLE = BadTemplate(
    REQUEST_ACCEPTED,
    "Hi",
    "{{ volunteer_name }} ({{ volunteer_phone }}) accepted your request.",
    "body",
    "'volunteer_phone' is undefined",
)

# Every template refused when saved because rendering it would fail whatever the data.
REFUSED_WHEN_SAVED = {
    **COSTLY_TEMPLATES,
    **UNSAFE_TEMPLATES,
    "a variable its kind does not declare": UNDECLARED_VARIABLE,
}

# Templates refused on saving from their text alone: (subject, body, the part at fault, the reason).
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
    "blocks nested 80 deep": (
        "Hi",
        "{% if points %}" * 80 + "x" + "{% endif %}" * 80,
        "body",
        f"it nests blocks, expressions or brackets more than {MAX_DEPTH} levels deep",
    ),
    "parentheses nested 80 deep": (
        "{{ " + "(" * 80 + "points" + ")" * 80 + " }}",
        "Hi",
        "subject",
        f"it nests blocks, expressions or brackets more than {MAX_DEPTH} levels deep",
    ),
}

DEFAULTS = {default.key: default for default in delivery.DEFAULT_TEMPLATES}


def bearer(role: str, subject: str) -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}


def store_template(
    key: str, *, subject: str = "Hello", body: str = "Hello", channel: str = "inbox"
) -> None:
    """Store a template as given, bypassing the checks made when staff save one, as a row
    stored before those checks existed would be."""
    with runtime().db.transaction() as session:
        session.merge(
            Template(key=key, channel=channel, subject=subject, body=body, updated_at=utcnow())
        )


def remove_template(key: str) -> None:
    with runtime().db.transaction() as session:
        session.delete(delivery.get_template(session, key))


def stored_template(key: str) -> Template | None:
    with runtime().db.read() as session:
        return session.get(Template, key)


def notify(
    recipient: str = RESIDENT, kind: NotificationKind = REQUEST_ACCEPTED, **changes: Any
) -> str:
    """Deliver a notification of ``kind`` as the consumer would, with the kind's example data
    and ``changes``; returns the source message id."""
    source = new_id()
    with runtime().db.transaction() as session:
        delivery.send_notification(
            session,
            recipient=recipient,
            kind=kind.key,
            data=data_for(kind, **changes),
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
