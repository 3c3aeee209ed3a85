"""Tables intake owns: the grid, residents, the service catalogue, requests and their timeline,
and the webhooks other systems follow them by."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
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
    """Another system, a staff console or an administration tool, known by the hash of its
    API key: what it may do (its scopes, clients.SCOPES) and how often (its own rate limit,
    or the service's)."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="system")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    rate_limit: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Written at most once a minute: the time of a use within the last minute or so.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# A grid node's kinds, top down, and the title of the person responsible for each.
NODE_KINDS = ("community", "building", "unit", "household")
RESPONSIBLE = {
    "community": "duty officer",
    "building": "building leader",
    "unit": "unit leader",
    "household": "head of household",
}


class GridNode(Base):
    """A place on the grid: community → building → unit → household, named by its path.

    Levels below a node's own are empty strings, so that the unique path holds on both
    databases (NULLs would never collide).
    """

    __tablename__ = "grid_nodes"
    __table_args__ = (UniqueConstraint("community", "building", "unit", "household"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="household")
    community: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(32), default="")
    unit: Mapped[str] = mapped_column(String(32), default="")
    household: Mapped[str] = mapped_column(String(32), default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    responsible_name: Mapped[str | None] = mapped_column(String(100))
    responsible_phone: Mapped[str | None] = mapped_column(String(32))
    # A responsible person who is also a registered resident may confirm for a neighbour, and
    # as a grid leader reads the requests of the places they lead (looked up by this column).
    responsible_resident_id: Mapped[str | None] = mapped_column(String(64), index=True)

    @property
    def number(self) -> str:
        """A household's number within its unit."""
        return self.household

    @property
    def path(self) -> str:
        return "/".join(
            part for part in (self.community, self.building, self.unit, self.household) if part
        )


class Resident(Base):
    __tablename__ = "residents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    household_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(10), default="zh-CN")
    is_elderly: Mapped[bool] = mapped_column(Boolean, default=False)
    lives_alone: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    has_reduced_mobility: Mapped[bool] = mapped_column(Boolean, default=False)

    household: Mapped[GridNode] = relationship(lazy="joined")


class HealthNote(Base):
    """A note of the health register: read and written only by the health role."""

    __tablename__ = "health_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"), index=True)
    note: Mapped[str] = mapped_column(Text)
    written_by: Mapped[str] = mapped_column(String(150))
    written_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Category(Base):
    """An entry of the service catalogue: what residents may ask for."""

    __tablename__ = "categories"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The English name; the Chinese one beside it.
    name: Mapped[str] = mapped_column(String(100))
    name_zh: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    group: Mapped[str] = mapped_column(String(30), default="community_matters")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    default_priority: Mapped[str] = mapped_column(String(10), default="normal")
    # {priority: {"acknowledge_minutes": n, "resolve_minutes": n}} for every priority.
    deadlines: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sensitivity: Mapped[str] = mapped_column(String(20), default="none")
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notice: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ServiceRequest(Base):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_status_created", "status", "created_at"),
        # A place's requests, and beyond the place (a household's latest of one category,
        # which every submission looks for as a possible duplicate) one index seek, however
        # many requests the household has made.
        Index(
            "ix_requests_place_category",
            "community",
            "building",
            "unit",
            "household",
            "category",
            "created_at",
        ),
        # The lists' keyset orders: newest first, soonest due, most urgent.
        Index("ix_requests_created", "created_at", "id"),
        Index("ix_requests_updated", "updated_at", "id"),
        Index("ix_requests_due", "due_at", "id"),
        Index("ix_requests_urgency", "urgency", "due_at", "id"),
        # A community's newest, and a building's most urgent (in the sort's own directions),
        # read a page's rows however many requests there are; a building's by status and
        # deadline are counted from the index alone.
        # (And ix_requests_building_urgency, below the class: it names a column's direction.)
        Index("ix_requests_community_created", "community", "created_at", "id"),
        Index("ix_requests_building_status", "community", "building", "status", "due_at"),
        # The requests merged into one: only merged requests are in it. An index of every row
        # (all but a few have no duplicate_of) offered PostgreSQL, before it had statistics of
        # the table, a way to find "not merged" that read every request at each submission.
        Index(
            "ix_requests_duplicate_of",
            "duplicate_of",
            postgresql_where=text("duplicate_of IS NOT NULL"),
            sqlite_where=text("duplicate_of IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(ForeignKey("categories.code"))
    priority: Mapped[str] = mapped_column(String(10))
    # The priority as a number (urgent highest), for sorting.
    urgency: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(20))
    external_ref: Mapped[str | None] = mapped_column(String(100))
    submitted_by: Mapped[str] = mapped_column(String(100))
    # Filed by staff or another system for the resident, rather than by the resident.
    is_on_behalf: Mapped[bool] = mapped_column(Boolean, default=False)
    resident_id: Mapped[str | None] = mapped_column(ForeignKey("residents.id"), index=True)
    # Who reported it, when not a registered resident.
    reporter_name: Mapped[str | None] = mapped_column(String(100))
    reporter_phone: Mapped[str | None] = mapped_column(String(32))
    # Where it is: a household of the grid, or (until staff place it) the address as typed.
    community: Mapped[str | None] = mapped_column(String(64))
    building: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str | None] = mapped_column(String(32))
    household: Mapped[str | None] = mapped_column(String(32))
    address_text: Mapped[str | None] = mapped_column(String(200))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The category's deadlines for its priority, and the next one pending (FAR_FUTURE once
    # none is: the column sorts and compares without NULLs).
    acknowledge_by: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolve_by: Mapped[datetime | None] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    assignment_id: Mapped[str | None] = mapped_column(String(64))
    assignee_type: Mapped[str | None] = mapped_column(String(20))
    assignee_id: Mapped[str | None] = mapped_column(String(64), index=True)
    assignee_name: Mapped[str | None] = mapped_column(String(100))
    hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    # Group work: everyone who took part and their hours, as the completion named them (each
    # {"volunteer_id", "hours", "volunteer_name"}); None when the volunteer worked alone.
    participants: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # Who did each step, as addresses: no one who accepted or completed it may confirm it.
    accepted_by: Mapped[str | None] = mapped_column(String(150))
    completed_by: Mapped[str | None] = mapped_column(String(150))
    confirmed_by: Mapped[str | None] = mapped_column(String(150))
    # "resident", "staff", or "proxy: <relation>" for a neighbour who confirmed for them.
    confirmed_as: Mapped[str | None] = mapped_column(String(60))
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(String(1000))
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The request this one repeats: suggested when it was submitted, set when staff merge it.
    possible_duplicate_of: Mapped[str | None] = mapped_column(String(64))
    duplicate_of: Mapped[str | None] = mapped_column(ForeignKey("requests.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Bumped by every UPDATE of the row, which matches the version it read (SQLAlchemy's
    # version counter): the request's ETag, that an If-Match is held to.
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    timeline: Mapped[list[TimelineEntry]] = relationship(
        order_by="TimelineEntry.id", lazy="selectin", back_populates="request"
    )
    duplicates: Mapped[list[ServiceRequest]] = relationship(
        lazy="selectin", join_depth=1, order_by="ServiceRequest.created_at", viewonly=True
    )


Index(
    "ix_requests_building_urgency",
    ServiceRequest.community,
    ServiceRequest.building,
    ServiceRequest.urgency.desc(),
    ServiceRequest.due_at,
    ServiceRequest.id,
)


class TimelineEntry(Base):
    """One thing that happened to a request, in order: who did what, when, for whom to see."""

    __tablename__ = "request_timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    # The request's status once it happened, and what happened (a status change, a note ...).
    status: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(30), default="")
    actor: Mapped[str] = mapped_column(String(150), default="")
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When it was written (``at`` is when it happened, which news may tell late).
    recorded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # On PostgreSQL, the id of the transaction that wrote it (the column's default there, see
    # migration 0015); None on SQLite. Ids of entries are handed out as they are written, not
    # as their transactions commit, so the change feed goes by this: once every transaction
    # older than a given one has ended, no entry of theirs can still appear.
    # FetchedValue: the ORM leaves it out of its INSERTs, where it would write NULL.
    xid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())

    request: Mapped[ServiceRequest] = relationship(back_populates="timeline")

    __table_args__ = (
        Index(
            "ix_request_timeline_feed",
            "xid",
            "id",
            postgresql_where=text("xid IS NOT NULL"),
            sqlite_where=text("xid IS NOT NULL"),
        ),
    )


class WebhookSubscription(Base):
    """A receiver another system registered for the events of its own requests."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The API client it is for (``client:<name>``): the submitter of the requests it hears of.
    owner: Mapped[str] = mapped_column(String(110), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    # The secret before the last rotation, which also signs until ``previous_secret_until``.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(10), default="active")
    paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    paused_reason: Mapped[str | None] = mapped_column(String(500))
    # The receiver's current run of failed attempts, and when it began.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The last timeline entry written before it was made: it hears of those after.
    start_after: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(150))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    history: Mapped[list[WebhookChange]] = relationship(
        order_by="WebhookChange.id.desc()", lazy="selectin", viewonly=True
    )


class WebhookChange(Base):
    """What became of a subscription, newest last: made, changed, its secret rotated, paused
    (the owner reads why here) and resumed."""

    __tablename__ = "webhook_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(150))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDelivery(Base):
    """One event for one subscription, tried until it is delivered or given up. The deliveries
    of one request to one subscription go out one at a time, in the order of their ids."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_chain", "subscription_id", "request_id", "id"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    request_id: Mapped[str] = mapped_column(String(64))
    # The timeline entry it tells of: also its cursor in the change feed.
    event_id: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # While being sent: when a sender that has not recorded an outcome is taken for dead.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The delivery this one sends again, when the owner asked for a replay.
    replay_of: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    attempt_log: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", lazy="select", viewonly=True
    )


class WebhookAttempt(Base):
    """One try of a delivery: what the receiver answered, how fast, or what went wrong."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")


class WebhookFeed(Base):
    """How far the webhooks have read the timeline, and the ids below that not yet seen
    (written by transactions still open, on PostgreSQL), looked for again for a while."""

    __tablename__ = "webhook_feed"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # {entry id: when it was first missed}
    gaps: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
