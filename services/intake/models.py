"""Tables intake owns: the grid, residents, the service catalogue, requests and their timeline."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.database import UtcDateTime
from shared.messaging import Messaging
from shared.timers import Timers


class Base(DeclarativeBase):
    pass


messaging = Messaging(Base.metadata)
timers = Timers(Base.metadata, messaging=messaging)


class ApiClient(Base):
    """Another system or a staff console, known by the hash of its API key."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="system")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Household(Base):
    """A household on the grid: community → building → unit → household."""

    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("community", "building", "unit", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(32))


class Resident(Base):
    __tablename__ = "residents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    phone: Mapped[str | None] = mapped_column(String(32))
    is_elderly: Mapped[bool] = mapped_column(Boolean, default=False)
    lives_alone: Mapped[bool] = mapped_column(Boolean, default=False)

    household: Mapped[Household] = relationship(lazy="joined")


class Category(Base):
    """An entry of the service catalogue: what residents may ask for."""

    __tablename__ = "categories"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    default_priority: Mapped[str] = mapped_column(String(10), default="normal")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class ServiceRequest(Base):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_status_created", "status", "created_at"),
        Index("ix_requests_location", "community", "building"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(ForeignKey("categories.code"))
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(20))
    external_ref: Mapped[str | None] = mapped_column(String(100))
    submitted_by: Mapped[str] = mapped_column(String(100))
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"))
    community: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(32))
    household: Mapped[str] = mapped_column(String(32))
    assignment_id: Mapped[str | None] = mapped_column(String(64))
    assignee_type: Mapped[str | None] = mapped_column(String(20))
    assignee_id: Mapped[str | None] = mapped_column(String(64))
    assignee_name: Mapped[str | None] = mapped_column(String(100))
    hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    # Who did each step, as addresses: no one who accepted or completed it may confirm it.
    accepted_by: Mapped[str | None] = mapped_column(String(150))
    completed_by: Mapped[str | None] = mapped_column(String(150))
    confirmed_by: Mapped[str | None] = mapped_column(String(150))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    timeline: Mapped[list[TimelineEntry]] = relationship(
        order_by="TimelineEntry.id", lazy="selectin", back_populates="request"
    )


class TimelineEntry(Base):
    """One thing that happened to a request, in order."""

    __tablename__ = "request_timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UtcDateTime)

    request: Mapped[ServiceRequest] = relationship(back_populates="timeline")
