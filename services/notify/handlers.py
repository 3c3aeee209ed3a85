"""notify's handlers: each event it subscribes to, translated into a call of its domain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from services.notify import delivery
from shared.consumers import Received


def on_notification_requested(
    session: Session,
    received: Received,
    *,
    recipient: str,
    template: str,
    data: Mapping[str, Any],
    channel: str,
) -> None:
    delivery.send_notification(
        session,
        recipient=recipient,
        kind=template,
        data=data,
        # The contract lets a publisher send an empty channel; that has always meant the inbox.
        channel=channel or delivery.INBOX,
        # The message that asked is the notification's identity: a redelivery finds it sent.
        source_message_id=received.message_id,
    )
