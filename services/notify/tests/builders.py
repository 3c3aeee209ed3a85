"""Small builders for notify's tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.notify import delivery
from services.notify.config import runtime
from services.notify.models import Delivery, InboxMessage, Template
from shared.auth import issue_token
from shared.context import new_id
from shared.messaging import utcnow

VOLUNTEER = "volunteer:v-17"
RESIDENT = "resident:r-501"
ACCEPTED_DATA = {"volunteer_name": "Wang Jun", "category": "knife_sharpening"}


def bearer(role: str, subject: str) -> dict[str, str]:
    token = issue_token(runtime().settings.auth_secret, subject=subject, role=role)
    return {"Authorization": f"Bearer {token}"}


def store_template(key: str, *, subject: str = "Hello", body: str = "Hello") -> None:
    """Store a template as given, bypassing the checks made when staff save one."""
    with runtime().db.transaction() as session:
        session.merge(
            Template(key=key, channel="inbox", subject=subject, body=body, updated_at=utcnow())
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
