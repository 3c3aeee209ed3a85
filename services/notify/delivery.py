"""Notifications: templates rendered in a sandbox, delivered on a channel, logged.

The in-app inbox is the only channel today. Each channel is one function in ``CHANNELS``
that takes the rendered message, so e-mail, IM or SMS can be added beside it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, cast

import jinja2
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from sqlalchemy import Select, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from services.notify.models import Delivery, InboxMessage, Template
from services.notify.policy import no_message
from services.notify.sandbox import LimitedEnvironment, LimitExceeded, static_limit_problems
from shared.clock import utcnow
from shared.database import DirectStatement
from shared.errors import Invalid, NotFound
from shared.notifications import KINDS, NotificationKind
from shared.paging import fetch_page

INBOX = "inbox"
DELIVERED = "delivered"
FAILED = "failed"
DELIVERY_STATUSES = (DELIVERED, FAILED)
TEMPLATE_KEY = re.compile(r"^[a-z][a-z0-9_.]*$")
# The longest each part may render: a subject is a line, a body a short message.
MAX_LENGTHS = {"subject": 200, "body": 10_000}


@dataclass(frozen=True)
class DefaultTemplate:
    key: str
    subject: str
    body: str
    channel: str = INBOX


# What a fresh deployment says; staff may edit the stored copies, which are never overwritten.
DEFAULT_TEMPLATES = (
    DefaultTemplate(
        key="assignment.created",
        subject="New {{ category }} request",
        body="New {{ category }} request: {{ summary }}\n"
        "At building {{ location.building }}, unit {{ location.unit }}, "
        "household {{ location.household }}.",
    ),
    DefaultTemplate(
        key="request.accepted",
        subject="Your {{ category }} request was accepted",
        body="{{ volunteer_name }} accepted your {{ category }} request.",
    ),
    DefaultTemplate(
        key="request.completed",
        subject="Please confirm your {{ category }} request",
        body="{{ volunteer_name }} reports your {{ category }} request done "
        "({{ hours }} hour(s)). Please confirm it, so the volunteer's hours count.",
    ),
    DefaultTemplate(
        key="points.credited",
        subject="{{ points }} points credited",
        body="You earned {{ points }} points for {{ hours }} hour(s) of {{ category }}. "
        "Your balance is {{ balance }} points.",
    ),
    DefaultTemplate(
        key="points.expiring",
        subject="{{ points }} points expire on {{ expires_on }}",
        body="{{ points }} of your points have gone unused for long and expire on "
        "{{ expires_on }}, unless you use them before. Your balance is {{ balance }} points.",
    ),
)


class TemplateError(Invalid):
    """A template does not parse, or cannot be rendered with the data it was given."""

    code = "template-error"
    title = "Template error"


class UnsafeTemplate(TemplateError):
    """A template reaches for something the sandbox forbids (e.g. ``__class__``)."""

    code = "unsafe-template"
    title = "Unsafe template"


class _CompiledOnce(LimitedEnvironment):
    """The sandbox, compiling each template text once: a worker renders the same few texts
    over and over, and compiling one cost more than the rest of a delivery."""

    def from_string(
        self,
        source: str | nodes.Template,
        globals: MutableMapping[str, Any] | None = None,
        template_class: type[jinja2.Template] | None = None,
    ) -> jinja2.Template:
        if isinstance(source, str) and globals is None and template_class is None:
            return _compiled(self, source)
        return super().from_string(source, globals, template_class)


# Keyed by the text itself, so an edited template is simply another entry; a compiled
# template renders in several threads at once, each on its own budget.
@lru_cache(maxsize=256)
def _compiled(environment: LimitedEnvironment, source: str) -> jinja2.Template:
    return LimitedEnvironment.from_string(environment, source)


# Plain text: nothing is HTML-escaped; a variable the data does not carry is an error,
# never a silent blank in a message sent to a resident. Staff edit the templates and workers
# render them, so rendering is also bounded in time and size (see sandbox).
_environment = _CompiledOnce(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _private_names(tree: nodes.Template) -> list[str]:
    """Attributes and keys starting with ``_`` that the template names literally."""
    names = {node.attr for node in tree.find_all(nodes.Getattr)}
    names |= {
        node.arg.value
        for node in tree.find_all(nodes.Getitem)
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)
    }
    return sorted(name for name in names if name.startswith("_"))


def check_template_source(part: str, source: str) -> None:
    """Refuse template text that does not parse, is unsafe or is sure to render too much."""
    try:
        tree = _environment.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(
            f"The template {part} does not parse: {error.message} (line {error.lineno})",
            field=part,
            errors={part: [f"{error.message} (line {error.lineno})"]},
        ) from error
    except LimitExceeded as error:
        # Nested too deep to parse safely: refused before any tree is built or walked.
        raise TemplateError(
            f"The template {part} is too costly to render: {error}",
            field=part,
            errors={part: [str(error)]},
        ) from error
    private = _private_names(tree)
    if private:
        message = f"access to {', '.join(map(repr, private))} is not allowed in a template"
        raise UnsafeTemplate(
            f"The template {part} is unsafe: {message}", field=part, errors={part: [message]}
        )
    problems = static_limit_problems(tree, max_length=MAX_LENGTHS[part])
    if problems:
        raise TemplateError(
            f"The template {part} is too costly to render: {'; '.join(problems)}",
            field=part,
            errors={part: problems},
        )


def render(template: Template, data: Mapping[str, Any]) -> Rendered:
    """Render a template's subject and body with ``data`` in the sandbox."""
    return _render(template.key, {"subject": template.subject, "body": template.body}, data)


def _render(key: str, sources: Mapping[str, str], data: Mapping[str, Any]) -> Rendered:
    parts = {}
    for part, max_length in MAX_LENGTHS.items():
        try:
            parts[part] = _environment.render_limited(sources[part], data, max_length=max_length)
        except LimitExceeded as error:
            raise TemplateError(
                f"Template {key!r} {part} is too costly to render: {error}", field=part
            ) from error
        except SecurityError as error:
            raise UnsafeTemplate(
                f"Template {key!r} {part} is unsafe: {error}", field=part
            ) from error
        except UndefinedError as error:
            raise TemplateError(
                f"Template {key!r} {part} needs data the message did not carry: {error}",
                field=part,
            ) from error
        # Whatever else a stored template does wrong, retrying will not mend it.
        except Exception as error:
            raise TemplateError(
                f"Template {key!r} {part} cannot be rendered: {type(error).__name__}: {error}",
                field=part,
            ) from error
    return Rendered(subject=parts["subject"], body=parts["body"])


def get_template(session: Session, key: str) -> Template:
    """The template stored under ``key``; NotFound when there is none."""
    template = session.get(Template, key)
    if template is None:
        raise NotFound(f"No template {key!r}", field="template")
    return template


def list_templates(session: Session) -> list[Template]:
    """Every stored template, by key."""
    return list(session.scalars(select(Template).order_by(Template.key)))


def _kind(key: str) -> NotificationKind:
    kind = KINDS.get(key)
    if kind is None:
        raise Invalid(
            f"No kind of notification {key!r}: a template is written for one of "
            f"{', '.join(sorted(KINDS))}",
            field="key",
        )
    return kind


def check_renders(key: str, *, subject: str, body: str) -> None:
    """Refuse a template that cannot render its kind's fields: it is tried on sample values
    of every declared field, under the sandbox's limits."""
    kind = _kind(key)
    try:
        _render(key, {"subject": subject, "body": body}, kind.sample())
    except TemplateError as error:
        part = str(error.extra.get("field", "body"))
        declared = ", ".join(sorted(kind.fields))
        raise type(error)(
            f"{error.detail} (a {key} notification carries: {declared})",
            field=part,
            errors={part: [error.detail]},
        ) from error


def save_template(
    session: Session, *, key: str, subject: str, body: str, channel: str = INBOX
) -> Template:
    """Create or replace a template, once its subject and body parse, are safe and render
    the fields its kind of notification carries."""
    if not TEMPLATE_KEY.fullmatch(key):
        raise Invalid(f"Template key {key!r} must match {TEMPLATE_KEY.pattern}", field="key")
    _channel(channel)
    check_template_source("subject", subject)
    check_template_source("body", body)
    check_renders(key, subject=subject, body=body)
    template = session.get(Template, key)
    if template is None:
        template = Template(key=key, channel=channel)
        session.add(template)
    template.subject, template.body, template.updated_at = subject, body, utcnow()
    session.flush()
    return template


def ensure_default_templates(session: Session) -> list[str]:
    """Create the default templates that are missing; edited ones are left as they are."""
    for default in DEFAULT_TEMPLATES:
        if session.get(Template, default.key) is None:
            save_template(
                session,
                key=default.key,
                subject=default.subject,
                body=default.body,
                channel=default.channel,
            )
    return [default.key for default in DEFAULT_TEMPLATES]


class Channel(Protocol):
    """Puts a rendered message in front of its recipient.

    The inbox cannot refuse a message; channels that can (e-mail, SMS) will log ``failed``.
    """

    def __call__(
        self,
        session: Session,
        *,
        recipient: str,
        template: Template,
        message: Rendered,
        data: Mapping[str, Any],
        source_message_id: str,
    ) -> None: ...


# Plain INSERTs: the ORM's unit of work cost a notification more than its rendering.
_insert_inbox_message = DirectStatement(insert(cast(Table, InboxMessage.__table__)))
_insert_delivery = DirectStatement(insert(cast(Table, Delivery.__table__)))


def _deliver_to_inbox(
    session: Session,
    *,
    recipient: str,
    template: Template,
    message: Rendered,
    data: Mapping[str, Any],
    source_message_id: str,
) -> None:
    _insert_inbox_message.execute(
        session,
        {
            "id": uuid.uuid4().hex,
            "recipient": recipient,
            "template": template.key,
            "subject": message.subject,
            "body": message.body,
            "data": dict(data),
            "source_message_id": source_message_id,
            "created_at": utcnow(),
            "read_at": None,
        },
    )


CHANNELS: dict[str, Channel] = {INBOX: _deliver_to_inbox}


def _channel(name: str) -> Channel:
    channel = CHANNELS.get(name)
    if channel is None:
        raise Invalid(
            f"Unknown channel {name!r}; notify delivers to: {', '.join(CHANNELS)}", field="channel"
        )
    return channel


_delivered = (
    select(Delivery.id)
    .where(
        Delivery.source_message_id == bindparam("source_message_id"),
        Delivery.status == DELIVERED,
    )
    .exists()
)
# Whether the message was delivered already, and the template to render it with, in one
# statement: every notification asks both.
_TEMPLATE_COLUMNS = ("key", "channel", "subject", "body", "updated_at")
_template_unless_delivered = DirectStatement(
    select(
        *(getattr(Template, name) for name in _TEMPLATE_COLUMNS), _delivered.label("is_delivered")
    ).where(Template.key == bindparam("key"))
)


def send_notification(
    session: Session,
    *,
    recipient: str,
    kind: str,
    data: Mapping[str, Any],
    source_message_id: str,
    channel: str = INBOX,
) -> Delivery | None:
    """Render the template of ``kind`` for ``recipient``, deliver it on ``channel`` and log it.

    Returns None when the message ``source_message_id`` was already delivered.
    """
    deliver = _channel(channel)
    found = _template_unless_delivered.first(
        session, {"key": kind, "source_message_id": source_message_id}
    )
    if found is None:
        if session.scalar(select(_delivered), {"source_message_id": source_message_id}):
            return None
        raise NotFound(f"No template {kind!r}", field="template")
    *columns, is_delivered = found
    if is_delivered:
        return None
    # Read as plain columns (loading it costs the ORM more than the rest of a notification).
    stored = Template(**dict(zip(_TEMPLATE_COLUMNS, columns, strict=True)))
    # The message picks the channel; a template is written for one, so it must be that one.
    if stored.channel != channel:
        raise NotFound(
            f"No template {kind!r} for the {channel} channel "
            f"(it is written for the {stored.channel} channel)",
            field="template",
        )
    message = render(stored, data)
    deliver(
        session,
        recipient=recipient,
        template=stored,
        message=message,
        data=data,
        source_message_id=source_message_id,
    )
    logged = {
        "id": uuid.uuid4().hex,
        "recipient": recipient,
        "channel": channel,
        "template": stored.key,
        "status": DELIVERED,
        "error": None,
        "source_message_id": source_message_id,
        "at": utcnow(),
    }
    _insert_delivery.execute(session, logged)
    return Delivery(**logged)


def list_inbox(
    session: Session,
    *,
    recipient: str,
    is_unread_only: bool = False,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[InboxMessage], int]:
    """A page of a recipient's inbox, newest first, and how many messages match in all."""
    where: Select[Any] = select(InboxMessage).where(InboxMessage.recipient == recipient)
    if is_unread_only:
        where = where.where(InboxMessage.read_at.is_(None))
    query = where.order_by(InboxMessage.created_at.desc(), InboxMessage.id)
    return fetch_page(session, query, offset=offset, limit=limit)


def mark_read(session: Session, *, recipient: str, message_id: str) -> InboxMessage:
    """Mark a message of the inbox read; reading it again keeps the first time."""
    message = session.get(InboxMessage, message_id)
    if message is None or message.recipient != recipient:
        raise no_message(recipient, message_id)
    if message.read_at is None:
        message.read_at = utcnow()
    return message


def list_deliveries(
    session: Session,
    *,
    recipient: str | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[Delivery], int]:
    """A page of the delivery log, newest first, and how many entries match in all."""
    where: Select[Any] = select(Delivery)
    if recipient is not None:
        where = where.where(Delivery.recipient == recipient)
    if status is not None:
        where = where.where(Delivery.status == status)
    query = where.order_by(Delivery.at.desc(), Delivery.id)
    return fetch_page(session, query, offset=offset, limit=limit)
