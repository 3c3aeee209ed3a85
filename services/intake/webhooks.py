"""Webhooks: the receivers systems register for their requests' events, and deliveries to them."""

from __future__ import annotations

import json
import re
import secrets
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, lazyload

from services.intake.destinations import Destinations, check_receiver
from services.intake.models import (
    ApiClient,
    ServiceRequest,
    TimelineEntry,
    WebhookAttempt,
    WebhookChange,
    WebhookDelivery,
    WebhookFeed,
    WebhookSubscription,
    messaging,
    timers,
)
from services.intake.policy import POLICY
from services.intake.sending import EXCERPT_CHARS, TIMEOUT_S, Claim, Outcome, post
from shared import events
from shared.auth import Principal
from shared.clock import utcnow
from shared.database import Database
from shared.errors import Conflict, Invalid, NotFound
from shared.people import address
from shared.policy import SYSTEM

log = structlog.get_logger(__name__)

ACTIVE = "active"
PAUSED = "paused"
PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
DELIVERY_STATES = (PENDING, SENDING, DELIVERED, FAILED)
_OPEN = (PENDING, SENDING)

# The kinds of event a subscription may ask for, each named for the timeline entries it tells
# of (by their action): what happened to a request, not its notes.
EVENT_TYPES: dict[str, str] = {
    "submitted": "request.submitted",
    "triage": "request.triaged",
    "assigned": "request.assigned",
    "needs_triage": "request.unrouted",
    "accepted": "request.accepted",
    "start": "request.started",
    "escalate": "request.escalated",
    "completed": "request.completed",
    "confirm": "request.confirmed",
    "close": "request.closed",
    "cancel": "request.cancelled",
    "reject": "request.rejected",
    "merge": "request.merged",
    "reopen": "request.reopened",
}
EVENTS = tuple(EVENT_TYPES.values())
MAX_SUBSCRIPTIONS = 10
MAX_REPLAY = 1000
MAX_OVERLAP = timedelta(days=7)
HISTORY_SHOWN = 20
SECRET_PREFIX = "whsec_"
INTAKE = "system:intake"

# What the scheduler and the workers do with timers: read the timeline, and announce a
# delivery that fell due (to be tried, or again after a lost announcement or a dead sender).
FAN_OUT = "webhooks.fan-out"
FAN_OUT_KEY = "webhooks:fan-out"
FAN_OUT_EVERY = timedelta(seconds=1)
FAN_OUT_BATCH = 500
DUE = "webhooks.delivery-due"
FEED = "timeline"
# On PostgreSQL a transaction may commit its timeline entry after one with a higher id: ids the
# fan-out passed without seeing are looked for again this long (and at most this many).
GAP_WAIT = timedelta(minutes=5)
MAX_GAPS = 1000
# How long a worker may take to send a claimed delivery and record the outcome before it is
# taken for dead and the delivery claimed again.
LEASE = timedelta(minutes=1)
# Session.info key: the deliveries the session's transaction claimed, sent once it commits.
CLAIMED = "redvest.webhooks.claimed"


@dataclass(frozen=True)
class Retries:
    """How a failed delivery is tried again, and when a receiver that keeps failing is paused:
    after ``pause_after_failures`` failed attempts in a row spanning ``pause_after`` or more."""

    backoff: tuple[timedelta, ...] = (
        timedelta(seconds=30),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(minutes=30),
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(hours=4),
        timedelta(hours=8),
    )
    max_attempts: int = 10
    pause_after_failures: int = 10
    pause_after: timedelta = timedelta(hours=1)

    def wait_after(self, attempts: int) -> timedelta:
        """How long to wait after a delivery's ``attempts``-th failed attempt."""
        return self.backoff[min(attempts, len(self.backoff)) - 1]


RETRIES = Retries()


# Subscriptions.

# Whoever may see a subscription may act on it: every webhook operation has the one rule of
# policy.py (staff, or the system that owns it).
_ON_A_SUBSCRIPTION = "requests.Webhook.get"
_CREATE = "requests.Webhooks.post"
_ID = re.compile(r"[0-9a-f]{32}")
_DELIVERY_ID = re.compile(r"[0-9]{1,18}")


def new_secret() -> str:
    """A new secret to sign a subscription's deliveries with."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def no_subscription(subscription_id: str) -> NotFound:
    """The answer for a subscription that does not exist, or is another system's."""
    return NotFound(f"No webhook subscription {subscription_id[:100]}")


def _actor(principal: Principal) -> str:
    return address("system" if principal.is_system else principal.role, principal.subject)


def _note(
    session: Session, subscription: WebhookSubscription, action: str, note: str, actor: str
) -> None:
    session.add(
        WebhookChange(
            subscription_id=subscription.id, action=action, note=note, actor=actor, at=utcnow()
        )
    )


def _shown(session: Session, subscription: WebhookSubscription) -> WebhookSubscription:
    """The subscription with its history as now written, for the caller to be shown."""
    session.flush()
    session.refresh(subscription, attribute_names=["history"])
    return subscription


def _held(
    session: Session, subscription_id: str, by: Principal, *, for_update: bool = True
) -> WebhookSubscription:
    """The subscription (locked, to change it) if ``by`` may act on it, else as if none."""
    found = None
    if _ID.fullmatch(subscription_id):
        found = session.get(
            WebhookSubscription,
            subscription_id,
            with_for_update=for_update or None,
            populate_existing=for_update,
        )
    if found is None:
        raise no_subscription(subscription_id)
    POLICY.check_owner(_ON_A_SUBSCRIPTION, by, found, hidden_as=no_subscription(subscription_id))
    return found


def _no_client(owner: str) -> NotFound:
    return NotFound(f"No API client {owner[:120]} of the system role", field="owner")


def _held_client(session: Session, owner: str) -> ApiClient | None:
    """The owner's API client, its row locked until commit: the creations of one owner's
    subscriptions take turns, so that each counts what the one before added."""
    if not owner.startswith("client:"):
        return None
    return session.scalars(
        select(ApiClient).filter_by(name=owner.removeprefix("client:")).with_for_update()
    ).first()


def _owner(session: Session, by: Principal, owner: str | None) -> str:
    """Whose requests the subscription hears of: a system's own; staff name the client. The
    owner's client is held until commit (``_held_client``)."""
    if by.role == SYSTEM:
        owner = by.subject if owner is None else owner
        POLICY.check_owner(_CREATE, by, {"owner": owner}, hidden_as=_no_client(owner))
        _held_client(session, owner)
        return owner
    if owner is None:
        raise Invalid("Name the API client the receiver is for, as client:<name>", field="owner")
    client = _held_client(session, owner)
    if client is None or client.revoked_at is not None or client.role != SYSTEM:
        raise _no_client(owner)
    return owner


def _events(chosen: Sequence[str] | None) -> list[str]:
    if chosen is None:
        return list(EVENTS)
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown or not chosen:
        raise Invalid(f"Events are some of {', '.join(EVENTS)}", field="events")
    return [event for event in EVENTS if event in chosen]


def create_subscription(
    session: Session,
    *,
    by: Principal,
    url: str,
    destinations: Destinations,
    events: Sequence[str] | None = None,
    description: str = "",
    owner: str | None = None,
) -> WebhookSubscription:
    """Register a receiver for the events of the owner's requests from now on; its secret
    (``.secret``) is for the caller to keep: it is never shown again."""
    owner = _owner(session, by, owner)
    # Counted with the owner's client held: two creations at once cannot both see room for one.
    held = session.scalar(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(WebhookSubscription.owner == owner)
    )
    if (held or 0) >= MAX_SUBSCRIPTIONS:
        raise Conflict(f"{owner} has {MAX_SUBSCRIPTIONS} webhook subscriptions: remove one first")
    now = utcnow()
    subscription = WebhookSubscription(
        id=uuid.uuid4().hex,
        owner=owner,
        url=check_receiver(url, destinations),
        description=description,
        events=_events(events),
        secret=new_secret(),
        status=ACTIVE,
        consecutive_failures=0,
        start_after=session.scalar(select(func.max(TimelineEntry.id))) or 0,
        created_by=_actor(by),
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    session.flush()
    _note(session, subscription, "created", f"Receiver {url}", subscription.created_by)
    timers.schedule(session, due_at=now, what=FAN_OUT, key=FAN_OUT_KEY)
    return _shown(session, subscription)


def list_subscriptions(session: Session, *, owner: str | None = None) -> list[WebhookSubscription]:
    """The subscriptions of ``owner``, or everyone's; oldest first."""
    query = select(WebhookSubscription).order_by(WebhookSubscription.created_at)
    if owner is not None:
        query = query.where(WebhookSubscription.owner == owner)
    return list(session.scalars(query))


def get_subscription(
    session: Session, *, subscription_id: str, by: Principal, for_update: bool = False
) -> WebhookSubscription:
    """The subscription, if ``by`` may see it; ``for_update`` locks it until commit."""
    return _held(session, subscription_id, by, for_update=for_update)


def update_subscription(
    session: Session,
    *,
    subscription_id: str,
    by: Principal,
    destinations: Destinations,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
) -> WebhookSubscription:
    """Point the subscription at another receiver, or change the events it asks for."""
    subscription = _held(session, subscription_id, by)
    changed = []
    if url is not None and url != subscription.url:
        subscription.url = check_receiver(url, destinations)
        changed.append(f"receiver {url}")
    if events is not None:
        subscription.events = _events(events)
        changed.append("events " + ", ".join(subscription.events))
    if description is not None:
        subscription.description = description
    if changed:
        subscription.updated_at = utcnow()
        _note(session, subscription, "changed", "; ".join(changed), _actor(by))
    return _shown(session, subscription)


def remove_subscription(
    session: Session, *, subscription_id: str, by: Principal
) -> WebhookSubscription:
    """Remove the subscription with its deliveries and their log: nothing more is sent; the
    subscription as it was."""
    subscription = _held(session, subscription_id, by)
    deliveries = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_id == subscription.id
    )
    for delivery_id in session.scalars(deliveries.where(WebhookDelivery.state.in_(_OPEN))):
        timers.cancel(session, _timer_key(delivery_id))
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
    )
    session.execute(delete(WebhookChange).where(WebhookChange.subscription_id == subscription.id))
    session.delete(subscription)
    log.info("webhook.removed", subscription_id=subscription.id, by=_actor(by))
    return subscription


def rotate_secret(
    session: Session, *, subscription_id: str, by: Principal, overlap: timedelta
) -> WebhookSubscription:
    """A new secret (``.secret``, shown once); the old one still signs, beside it, for
    ``overlap``, so that the receiver can switch in its own time."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise Invalid(f"The overlap is 0 to {MAX_OVERLAP.days} days", field="overlap_minutes")
    subscription = _held(session, subscription_id, by)
    now = utcnow()
    if overlap:
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_until = now + overlap
    else:
        subscription.previous_secret = subscription.previous_secret_until = None
    subscription.secret = new_secret()
    subscription.updated_at = now
    note = "New secret"
    if overlap:
        note += f"; the previous one signs too until {(now + overlap).isoformat()}"
    _note(session, subscription, "secret_rotated", note, _actor(by))
    return _shown(session, subscription)


def resume_subscription(
    session: Session, *, subscription_id: str, by: Principal
) -> WebhookSubscription:
    """Send again to a paused receiver: what waited goes out first, in order."""
    subscription = _held(session, subscription_id, by)
    if subscription.status != PAUSED:
        raise Conflict(f"Webhook subscription {subscription_id} is not paused")
    now = utcnow()
    subscription.status = ACTIVE
    subscription.paused_at = subscription.paused_reason = None
    subscription.consecutive_failures = 0
    subscription.failing_since = None
    subscription.updated_at = now
    _note(session, subscription, "resumed", "Resumed", _actor(by))
    for head in _heads(session, subscription.id):
        if head.state == PENDING:
            head.next_attempt_at = now
        _wake(session, head, now=now)
    return _shown(session, subscription)


def _pause(session: Session, subscription: WebhookSubscription, reason: str) -> None:
    now = utcnow()
    subscription.status = PAUSED
    subscription.paused_at = now
    subscription.paused_reason = reason[:500]
    subscription.updated_at = now
    _note(session, subscription, "paused", reason, INTAKE)
    log.warning("webhook.paused", subscription_id=subscription.id, reason=reason)


def signing_keys(subscription: WebhookSubscription, *, at: datetime) -> list[str]:
    """The secrets that sign what is sent at ``at``: the current one, and the previous one
    while its overlap lasts."""
    keys = [subscription.secret]
    until = subscription.previous_secret_until
    if subscription.previous_secret and until is not None and at < until:
        keys.append(subscription.previous_secret)
    return keys


# Deliveries. Those of one request to one subscription form a chain, sent one at a time in the
# order things happened.


def _timer_key(delivery_id: int) -> str:
    return f"webhook-delivery:{delivery_id}"


def _chain_head(session: Session, subscription_id: str, request_id: str) -> int | None:
    """The delivery of a request's chain that goes next: the oldest not done with."""
    found: int | None = session.scalar(
        select(func.min(WebhookDelivery.id)).where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.request_id == request_id,
            WebhookDelivery.state.in_(_OPEN),
        )
    )
    return found


def _heads(session: Session, subscription_id: str) -> list[WebhookDelivery]:
    firsts = (
        select(func.min(WebhookDelivery.id))
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.state.in_(_OPEN),
        )
        .group_by(WebhookDelivery.request_id)
    )
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.id.in_(firsts))
            .order_by(WebhookDelivery.id)
        )
    )


def _wake(session: Session, delivery: WebhookDelivery, *, now: datetime) -> None:
    """Announce a chain's next delivery to the workers once it is due (one being sent, once
    its sender's lease runs out), with a timer that announces it again should this
    announcement come to nothing."""
    due = (delivery.next_attempt_at if delivery.state == PENDING else delivery.lease_until) or now
    if due <= now:
        messaging.stage(session, events.WEBHOOK_DELIVERY_DUE, {"delivery_id": delivery.id})
        due = now + LEASE
    timers.schedule(
        session,
        due_at=due,
        what=DUE,
        key=_timer_key(delivery.id),
        payload={"delivery_id": delivery.id},
    )


def _wake_next(session: Session, subscription: WebhookSubscription, request_id: str) -> None:
    head = _chain_head(session, subscription.id, request_id)
    if head is None or subscription.status != ACTIVE:
        return
    delivery = session.get(WebhookDelivery, head)
    if delivery is not None and delivery.state == PENDING:
        _wake(session, delivery, now=utcnow())


def _add_delivery(
    session: Session,
    subscription: WebhookSubscription,
    *,
    request_id: str,
    event_id: str,
    event_type: str,
    payload: Mapping[str, Any],
    replay_of: int | None = None,
) -> WebhookDelivery:
    now = utcnow()
    delivery = WebhookDelivery(
        subscription_id=subscription.id,
        request_id=request_id,
        event_id=event_id,
        event_type=event_type,
        payload=dict(payload),
        state=PENDING,
        attempts=0,
        next_attempt_at=now,
        replay_of=replay_of,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    if subscription.status == ACTIVE and _chain_head(session, subscription.id, request_id) == (
        delivery.id
    ):
        _wake(session, delivery, now=now)
    return delivery


def _delivery_of(
    session: Session, subscription: WebhookSubscription, delivery_id: str
) -> WebhookDelivery:
    found = None
    if _DELIVERY_ID.fullmatch(delivery_id):
        found = session.get(WebhookDelivery, int(delivery_id))
    if found is None or found.subscription_id != subscription.id:
        raise NotFound(f"No delivery {delivery_id[:100]} of webhook subscription {subscription.id}")
    return found


def list_deliveries(
    session: Session,
    *,
    subscription_id: str,
    by: Principal,
    offset: int,
    limit: int,
    state: str | None = None,
    request_id: str | None = None,
) -> tuple[list[WebhookDelivery], int]:
    """A page of the subscription's deliveries, newest first, and how many there are."""
    subscription = _held(session, subscription_id, by, for_update=False)
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    if request_id is not None:
        query = query.where(WebhookDelivery.request_id == request_id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    page = session.scalars(
        query.order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit)
    ).all()
    return list(page), int(total or 0)


def get_delivery(
    session: Session, *, subscription_id: str, delivery_id: str, by: Principal
) -> WebhookDelivery:
    """A delivery with the log of its attempts."""
    subscription = _held(session, subscription_id, by, for_update=False)
    delivery = _delivery_of(session, subscription, delivery_id)
    session.refresh(delivery, attribute_names=["attempt_log"])
    return delivery


def replay_delivery(
    session: Session, *, subscription_id: str, delivery_id: str, by: Principal
) -> WebhookDelivery:
    """Send a delivery again, as a new delivery after those of its request still waiting."""
    subscription = _held(session, subscription_id, by)
    return _replay(session, subscription, _delivery_of(session, subscription, delivery_id))


def _replay(
    session: Session, subscription: WebhookSubscription, original: WebhookDelivery
) -> WebhookDelivery:
    return _add_delivery(
        session,
        subscription,
        request_id=original.request_id,
        event_id=original.event_id,
        event_type=original.event_type,
        payload=original.payload,
        replay_of=original.id,
    )


def replay_deliveries(
    session: Session,
    *,
    subscription_id: str,
    by: Principal,
    since: datetime,
    until: datetime | None = None,
    only_failed: bool = False,
) -> list[WebhookDelivery]:
    """Send again, in their order, the deliveries first made from ``since`` to ``until`` (now if
    not given), or only those of them given up on."""
    until = until or utcnow()
    if until <= since:
        raise Invalid(
            "until must be after since: the span replayed runs from since to until", field="until"
        )
    subscription = _held(session, subscription_id, by)
    query = select(WebhookDelivery).where(
        WebhookDelivery.subscription_id == subscription.id,
        WebhookDelivery.replay_of.is_(None),
        WebhookDelivery.created_at >= since,
        WebhookDelivery.created_at <= until,
    )
    if only_failed:
        query = query.where(WebhookDelivery.state == FAILED)
    originals = list(session.scalars(query.order_by(WebhookDelivery.id).limit(MAX_REPLAY + 1)))
    if len(originals) > MAX_REPLAY:
        raise Invalid(
            f"More than {MAX_REPLAY} deliveries were made in that time: replay a shorter one",
            field="since",
        )
    return [_replay(session, subscription, original) for original in originals]


# Reading the timeline. What happens to a request is on its timeline: the scheduler's fan-out
# reads it past its position, as a system polling the change feed would, and writes a delivery
# for each subscription that wants the entry.


@dataclass(frozen=True)
class FanOut:
    """What one pass over the timeline did."""

    entries: int
    deliveries: int
    is_behind: bool
    has_subscriptions: bool


def _event_type(action: str, note: str) -> str | None:
    # requests.py keeps news it ignored on the timeline as such ("Ignored assignment ..."):
    # nothing happened to the request, so nothing is told.
    if note.startswith("Ignored"):
        return None
    return EVENT_TYPES.get(action)


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None or moment.year >= 9999 else moment.isoformat()


def _payload(entry: Any, event_type: str, request: ServiceRequest) -> dict[str, Any]:
    """What a receiver is sent: the event, and the request as it stood when it was read."""
    assignee = None
    if request.assignee_id is not None:
        assignee = {
            "type": request.assignee_type,
            "id": request.assignee_id,
            "name": request.assignee_name,
        }
    return {
        "id": str(entry.id),
        "type": event_type,
        "occurred_at": entry.at.isoformat(),
        "data": {
            "request_id": request.id,
            "status": entry.status,
            "note": entry.note,
            "public": entry.is_public,
            "actor": entry.actor,
            "request": {
                "id": request.id,
                "external_ref": request.external_ref,
                "category": request.category,
                "priority": request.priority,
                "status": request.status,
                "assignee": assignee,
                "due_at": _stamp(request.due_at),
                "updated_at": request.updated_at.isoformat(),
            },
        },
    }


def _feed(session: Session, now: datetime) -> WebhookFeed:
    feed = session.get(WebhookFeed, FEED, with_for_update=True, populate_existing=True)
    if feed is None:
        feed = WebhookFeed(name=FEED, position=0, gaps={}, updated_at=now)
        session.add(feed)
        session.flush()
    return feed


def fan_out(session: Session, *, batch: int = FAN_OUT_BATCH) -> FanOut:
    """Read the timeline past the feed's position (and the ids passed without being seen), and
    write a delivery of each entry for each subscription of its request's submitter that wants
    it; the first of each chain is announced."""
    now = utcnow()
    feed = _feed(session, now)
    floor = session.scalar(select(func.min(WebhookSubscription.start_after)))
    if floor is None:
        # Nobody listens: what is written meanwhile is no one's news.
        feed.position = session.scalar(select(func.max(TimelineEntry.id))) or feed.position
        feed.gaps, feed.updated_at = {}, now
        return FanOut(0, 0, is_behind=False, has_subscriptions=False)
    position = max(feed.position, floor)
    gaps = {
        int(entry_id): since
        for entry_id, since in feed.gaps.items()
        if int(entry_id) > floor and datetime.fromisoformat(since) > now - GAP_WAIT
    }
    t, r = TimelineEntry, ServiceRequest
    rows = session.execute(
        select(t.id, t.request_id, t.status, t.action, t.note, t.actor, t.is_public, t.at)
        .add_columns(r.submitted_by)
        .join(r, r.id == t.request_id)
        .where(or_(t.id > position, t.id.in_(sorted(gaps))))
        .order_by(t.id)
        .limit(batch)
    ).all()
    fresh = [row.id for row in rows if row.id > position]
    if fresh:
        seen = set(fresh)
        for missed in range(max(position + 1, fresh[-1] - MAX_GAPS), fresh[-1]):
            if missed not in seen:
                gaps[missed] = now.isoformat()
        position = fresh[-1]
    for row in rows:
        gaps.pop(row.id, None)
    feed.position, feed.updated_at = position, now
    feed.gaps = {str(entry_id): gaps[entry_id] for entry_id in sorted(gaps)[-MAX_GAPS:]}
    written = _deliver_entries(session, rows)
    return FanOut(len(rows), written, is_behind=len(rows) == batch, has_subscriptions=True)


def _deliver_entries(session: Session, rows: Sequence[Any]) -> int:
    typed = [(row, kind) for row in rows if (kind := _event_type(row.action, row.note))]
    owners = {row.submitted_by for row, _ in typed}
    if not owners:
        return 0
    # Held in a fixed order, as everything that changes a subscription's deliveries holds it.
    subscriptions = session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.owner.in_(owners))
        .order_by(WebhookSubscription.id)
        .with_for_update()
    ).all()
    wanted = [
        (row, kind, subscription)
        for row, kind in typed
        for subscription in subscriptions
        if subscription.owner == row.submitted_by
        and kind in subscription.events
        and row.id > subscription.start_after
    ]
    if not wanted:
        return 0
    request_ids = {row.request_id for row, _, _ in wanted}
    found = session.scalars(
        select(ServiceRequest)
        .where(ServiceRequest.id.in_(request_ids))
        .options(lazyload(ServiceRequest.timeline), lazyload(ServiceRequest.duplicates))
    )
    requests = {request.id: request for request in found}
    for row, kind, subscription in wanted:
        _add_delivery(
            session,
            subscription,
            request_id=row.request_id,
            event_id=str(row.id),
            event_type=kind,
            payload=_payload(row, kind, requests[row.request_id]),
        )
    return len(wanted)


@timers.handler(FAN_OUT)
def _fan_out_when_due(session: Session, *, key: str, payload: Mapping[str, Any]) -> None:
    done = fan_out(session)
    if done.has_subscriptions:
        wait = timedelta(0) if done.is_behind else FAN_OUT_EVERY
        timers.schedule(session, due_at=utcnow() + wait, what=FAN_OUT, key=FAN_OUT_KEY)


timers.stages(DUE, events.WEBHOOK_DELIVERY_DUE)


# Claims and attempts. A delivery goes out from a worker, never from the request that changed
# the state:
# 1. the first of a chain is announced on intake's own queue (``webhook.delivery_due``), with a
#    timer that announces it again should that come to nothing;
# 2. a worker claims it in a short transaction (``claim_delivery``), moving the timer to the end
#    of its lease, in case the worker dies while sending;
# 3. once that commits, the worker's ``Sender`` POSTs it, signed (``sending.post``), outside any
#    transaction, and records the outcome (``record_attempt``): delivered, tried again after a
#    backoff, given up after ``max_attempts``, or the subscription paused when its receiver
#    keeps failing.


def _body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def claim_delivery(session: Session, *, delivery_id: int, lease: timedelta = LEASE) -> Claim | None:
    """Take a due delivery to send it once this transaction commits (``Sender``); None when it
    is not due, not next in its chain, being sent by a live worker, done with, or its
    subscription is paused or gone."""
    found = session.get(WebhookDelivery, delivery_id)
    if found is None:
        return None
    # The subscription is held before its delivery, as everywhere else.
    subscription = session.get(
        WebhookSubscription, found.subscription_id, with_for_update=True, populate_existing=True
    )
    delivery = session.get(
        WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True
    )
    now = utcnow()
    if subscription is None or delivery is None or subscription.status != ACTIVE:
        return None
    is_due = (delivery.state == PENDING and (delivery.next_attempt_at or now) <= now) or (
        delivery.state == SENDING and (delivery.lease_until or now) <= now
    )
    if not is_due or _chain_head(session, subscription.id, delivery.request_id) != delivery.id:
        return None
    client = session.scalar(
        select(ApiClient).where(ApiClient.name == subscription.owner.removeprefix("client:"))
    )
    if client is None or client.revoked_at is not None:
        _pause(session, subscription, f"The API client {subscription.owner} is revoked")
        return None
    if delivery.state == SENDING:
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=delivery.attempts,
                at=now,
                error="No outcome was recorded before the sender's lease ran out: sent again",
                response_excerpt="",
            )
        )
    delivery.state = SENDING
    delivery.attempts += 1
    delivery.lease_until = now + lease
    timers.schedule(
        session,
        due_at=delivery.lease_until,
        what=DUE,
        key=_timer_key(delivery.id),
        payload={"delivery_id": delivery.id},
    )
    claim = Claim(
        delivery_id=delivery.id,
        attempt=delivery.attempts,
        claimed_at=now,
        subscription_id=subscription.id,
        url=subscription.url,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        body=_body(delivery.payload),
        keys=tuple(signing_keys(subscription, at=now)),
    )
    session.info.setdefault(CLAIMED, []).append(claim)
    return claim


def _printable(text: str, most: int) -> str:
    # PostgreSQL stores no NUL in text; a receiver's answer may hold anything.
    return text[:most].replace("\x00", "\ufffd")


def record_attempt(
    session: Session, *, claim: Claim, outcome: Outcome, retries: Retries = RETRIES
) -> None:
    """Log an attempt and settle what follows: the chain moves on, the delivery is tried
    again after its backoff or given up, or the subscription is paused."""
    if session.get(WebhookSubscription, claim.subscription_id) is None:
        return
    subscription = session.get_one(
        WebhookSubscription, claim.subscription_id, with_for_update=True, populate_existing=True
    )
    delivery = session.get(
        WebhookDelivery, claim.delivery_id, with_for_update=True, populate_existing=True
    )
    if delivery is None:
        return
    now = utcnow()
    error = None if outcome.error is None else _printable(outcome.error, 2000)
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=claim.attempt,
            at=claim.claimed_at,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=error,
            response_excerpt=_printable(outcome.excerpt, EXCERPT_CHARS),
        )
    )
    if delivery.state != SENDING or delivery.attempts != claim.attempt:
        return  # a sender taken for dead answered late: another attempt has it now
    delivery.last_status_code, delivery.last_error = outcome.status_code, error
    delivery.lease_until = None
    if outcome.is_delivered:
        delivery.state, delivery.delivered_at, delivery.next_attempt_at = DELIVERED, now, None
        timers.cancel(session, _timer_key(delivery.id))
        subscription.consecutive_failures = 0
        subscription.failing_since = None
        subscription.last_success_at = now
        log.info("webhook.delivered", delivery_id=delivery.id, attempt=claim.attempt)
        _wake_next(session, subscription, delivery.request_id)
        return
    subscription.consecutive_failures += 1
    subscription.failing_since = subscription.failing_since or now
    subscription.last_failure_at = now
    failing_for = now - subscription.failing_since
    what = f"HTTP {outcome.status_code}" if outcome.error is None else outcome.error
    log.warning(
        "webhook.attempt_failed", delivery_id=delivery.id, attempt=claim.attempt, error=what
    )
    if (
        subscription.status == ACTIVE
        and subscription.consecutive_failures >= retries.pause_after_failures
        and failing_for >= retries.pause_after
    ):
        _pause(
            session,
            subscription,
            f"Paused after {subscription.consecutive_failures} failed attempts in a row over "
            f"{_duration(failing_for)}; the last: {_printable(what, 300)}",
        )
    if subscription.status != ACTIVE:
        # Nothing is given up on while paused: it all waits, in order, for the owner to resume.
        delivery.state, delivery.next_attempt_at = PENDING, now
        timers.cancel(session, _timer_key(delivery.id))
    elif delivery.attempts >= retries.max_attempts:
        delivery.state, delivery.next_attempt_at = FAILED, None
        timers.cancel(session, _timer_key(delivery.id))
        log.warning("webhook.given_up", delivery_id=delivery.id, attempts=delivery.attempts)
        _wake_next(session, subscription, delivery.request_id)
    else:
        delivery.state = PENDING
        delivery.next_attempt_at = now + retries.wait_after(delivery.attempts)
        _wake(session, delivery, now=now)


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


@dataclass
class Sender:
    """Sends the deliveries a transaction claimed, in the thread that committed it, once it has
    let go of the write lock; then records each outcome in a transaction of its own.

    A worker attaches one to its database. Should it die before recording an outcome, the
    delivery's lease runs out and its timer announces it again.
    """

    db: Database
    destinations: Destinations
    timeout_s: float = TIMEOUT_S
    retries: Retries = RETRIES
    tls: ssl.SSLContext = field(default_factory=ssl.create_default_context)

    def attach(self) -> Sender:
        self.db.after_write.append(self._released)
        return self

    def detach(self) -> None:
        self.db.after_write.remove(self._released)

    def _released(self, session: Session) -> None:
        for claim in session.info.pop(CLAIMED, []):
            self.send(claim)

    def send(self, claim: Claim) -> Outcome:
        """POST ``claim`` to its receiver and record what came of it."""
        outcome = post(
            claim, destinations=self.destinations, timeout_s=self.timeout_s, tls=self.tls
        )
        try:
            with self.db.transaction() as session:
                record_attempt(session, claim=claim, outcome=outcome, retries=self.retries)
        except Exception:
            # Its lease will run out and it will be sent again.
            log.exception("webhook.record_failed", delivery_id=claim.delivery_id)
        return outcome
