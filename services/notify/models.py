"""Tables notify owns: message templates, the in-app inbox and the delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.database import UtcDateTime
from shared.messaging import Messaging
from shared.timers import Timers


class Base(DeclarativeBase):
    pass


messaging = Messaging(Base.metadata)
timers = Timers(Base.metadata, messaging=messaging)


class Template(Base):
    """What a notification says, by key (e.g. ``assignment.created``): staff may edit it."""

    __tablename__ = "templates"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class InboxMessage(Base):
    """A rendered notification waiting in a person's in-app inbox."""

    __tablename__ = "inbox_messages"
    __table_args__ = (Index("ix_inbox_messages_recipient_created", "recipient", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(150))
    template: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The message that asked for this notification: a second delivery of it finds this row.
    source_message_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class Delivery(Base):
    """One attempt to reach a recipient on a channel: the delivery log."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_at", "at"),
        Index("ix_deliveries_source_message_id", "source_message_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(150))
    channel: Mapped[str] = mapped_column(String(20))
    template: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    source_message_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
