"""Unused points expire, where the community's policy says so, and never untold.

The rule. Points are used first in, first out: every point that leaves a member's account
(spent in the catalogue, given, donated, taken back by a reversal or an adjustment, expired
before) and every point a pending transfer holds (a reservation) counts against the oldest
points credited to them. Each credit (an earning posted, a gift received ...) is dated by the
day it was posted (UTC). Points credited on day ``d`` and not used by day ``d + N``
(``POINTS_EXPIRE_AFTER_DAYS``) expire that day. Nothing is computed but from the ledger's
entries: what of the points credited up to a day is unused is what they add up to less all the
member has used, since the oldest are used first.

Never untold. Each day's round tells each member, ``POINTS_EXPIRY_NOTICE_DAYS`` ahead at most,
how many points expire on which day (``points.expiring``), once per member and day. The notice
is a durable timer (``points-expiry:<account>:<day>``) that falls due on that day and then moves
what is still unused of it, at most what was announced, to the bank's issuance account (an
``expiry`` transfer ``expiry:<account>:<day>``, so a rerun moves nothing twice). Points already
due that no notice announced (the policy was just switched on, or a round was missed) are
announced for the last day of the notice period. Points are never taken on a day no notice
named, nor more than its notice said. Switching the policy off cancels the notices still to fall
due at the next round. Household accounts have no one to tell, so their points do not expire.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.points import ledger
from services.points.ledger import ISSUANCE_HOLDER, TransferOrder
from services.points.models import EXPIRY, HOLDER, ZERO, Account, Entry, Transfer, messaging, timers
from shared import notifications
from shared.clock import utcnow
from shared.people import ADDRESS
from shared.settings import Settings
from shared.timers import FIRED

log = structlog.get_logger(__name__)

# The durable timer of an announced expiry: it falls due on the day the points expire.
EXPIRY_DUE = "points.expiry"
_ADDRESS = re.compile(ADDRESS)


@dataclass(frozen=True)
class ExpiryPolicy:
    """What the community decided: after how many days unused points expire (None: never),
    and how many days ahead members are told."""

    after_days: int | None = None
    notice_days: int = 30

    def __post_init__(self) -> None:
        if self.after_days is not None and not 1 <= self.after_days <= 3660:
            raise ValueError("points expire after 1 to 3660 days, or never")
        if not 1 <= self.notice_days <= 366:
            raise ValueError("members are told 1 to 366 days ahead")

    @classmethod
    def of(cls, settings: Settings) -> ExpiryPolicy:
        """The policy the settings give (``POINTS_EXPIRE_AFTER_DAYS``,
        ``POINTS_EXPIRY_NOTICE_DAYS``)."""
        return cls(
            after_days=settings.points_expire_after_days,
            notice_days=settings.points_expiry_notice_days,
        )

    @property
    def is_on(self) -> bool:
        return self.after_days is not None


@dataclass(frozen=True)
class Expiry:
    """Points of a member that expire, or expired, on a day."""

    holder: str
    expires_on: date
    points: Decimal


@dataclass(frozen=True)
class Round:
    """What a day's round moved to the bank and what it announced."""

    expired: list[Expiry]
    announced: list[Expiry]


@dataclass(frozen=True)
class _Notice:
    key: str
    expiry: Expiry
    after_days: int
    is_pending: bool
    due_at: datetime


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def expiry_transfer_id(account_id: int, day: date) -> str:
    return f"expiry:{account_id}:{day.isoformat()}"


def _notice_key(account_id: int, day: date) -> str:
    return f"points-expiry:{account_id}:{day.isoformat()}"


def _used(session: Session, account: Account) -> Decimal:
    """All a member has used: every point that left the account, and what pending transfers
    hold from it."""
    left = session.scalar(
        select(func.coalesce(func.sum(Entry.amount), 0)).where(
            Entry.account_id == account.id, Entry.amount < 0
        )
    )
    return -Decimal(str(left or 0)) + account.debits_pending


def _credited_before(session: Session, account: Account, moment: datetime) -> Decimal:
    credited = session.scalar(
        select(func.coalesce(func.sum(Entry.amount), 0)).where(
            Entry.account_id == account.id, Entry.amount > 0, Entry.posted_at < moment
        )
    )
    return Decimal(str(credited or 0))


def _unused_due(session: Session, account: Account, *, on: date, after_days: int) -> Decimal:
    """What is unused of the points credited to ``account`` that expire by day ``on``."""
    credited = _credited_before(session, account, _start_of(on - timedelta(days=after_days - 1)))
    return max(ZERO, credited - _used(session, account)).quantize(ledger.CENT)


def _notices(session: Session, **where: Any) -> list[_Notice]:
    table = timers.timers
    query = select(table).where(table.c.what == EXPIRY_DUE)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    found = []
    for row in session.execute(query.order_by(table.c.due_at, table.c.key)):
        payload = row.payload
        found.append(
            _Notice(
                key=row.key,
                expiry=Expiry(
                    holder=payload["holder"],
                    expires_on=date.fromisoformat(payload["expires_on"]),
                    points=Decimal(payload["points"]),
                ),
                after_days=int(payload["after_days"]),
                is_pending=row.state != FIRED,
                due_at=row.due_at,
            )
        )
    return found


# Moving expired points to the bank


def _expiry_order(
    account: Account, expiry: Expiry, points: Decimal, after_days: int
) -> TransferOrder:
    since = expiry.expires_on - timedelta(days=after_days)
    return TransferOrder(
        id=expiry_transfer_id(account.id, expiry.expires_on),
        kind=EXPIRY,
        debit=account.holder,
        credit=ISSUANCE_HOLDER,
        amount=points,
        reason=f"Unused {after_days} days: points credited by {since.isoformat()} expire on "
        f"{expiry.expires_on.isoformat()}, as announced",
        memo=f"{points} of the {expiry.points} points announced to expire",
    )


def expire_announced(session: Session, *, expiry: Expiry, after_days: int) -> Transfer | None:
    """Move what is still unused of an announced expiry to the bank, at most what was
    announced; the same expiry again moves nothing more. None when nothing is left."""
    held = ledger.lock_accounts(session, expiry.holder, ISSUANCE_HOLDER)
    account = held[expiry.holder]
    transfer_id = expiry_transfer_id(account.id, expiry.expires_on)
    existing = ledger.find_transfer(session, transfer_id)
    if existing is not None:
        return existing
    due = _unused_due(session, account, on=expiry.expires_on, after_days=after_days)
    points = min(expiry.points, due, account.available)
    if points <= 0:
        log.info("points.expiry_nothing_left", holder=expiry.holder, day=str(expiry.expires_on))
        return None
    return ledger.create_transfer(session, order=_expiry_order(account, expiry, points, after_days))


@timers.handler(EXPIRY_DUE)
def on_expiry_due(session: Session, *, key: str, payload: dict[str, Any]) -> None:
    """An announced expiry falls due: its points still unused go to the bank."""
    expire_announced(
        session,
        expiry=Expiry(
            holder=payload["holder"],
            expires_on=date.fromisoformat(payload["expires_on"]),
            points=Decimal(payload["points"]),
        ),
        after_days=int(payload["after_days"]),
    )


# Announcing


def _members(session: Session) -> list[Account]:
    """Members with points to lose whom notify can reach."""
    query = select(Account).where(
        Account.kind == HOLDER, Account.balance - Account.debits_pending > 0
    )
    return [account for account in session.scalars(query) if _ADDRESS.fullmatch(account.holder)]


def _credits_by_day(
    session: Session, *, since: date, until: date
) -> dict[int, dict[date, Decimal]]:
    """Each member's credits on each day of ``[since, until]``, by account id."""
    query = select(Entry.account_id, Entry.posted_at, Entry.amount).where(
        Entry.amount > 0,
        Entry.posted_at >= _start_of(since),
        Entry.posted_at < _start_of(until + timedelta(days=1)),
    )
    days: dict[int, dict[date, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for account_id, posted_at, amount in session.execute(query):
        days[account_id][posted_at.astimezone(UTC).date()] += Decimal(str(amount))
    return days


def _to_announce(
    session: Session,
    account: Account,
    *,
    today: date,
    policy: ExpiryPolicy,
    credits: dict[date, Decimal],
    notices: Iterable[_Notice],
) -> list[Expiry]:
    """The expiries to announce to a member: what will be due by each of the next days and no
    notice covers yet (the oldest points are covered first), on its day; what is due already
    and untold, on the last day of the notice period."""
    after = policy.after_days
    assert after is not None
    used = _used(session, account)
    baseline = _credited_before(session, account, _start_of(today - timedelta(days=after - 1)))

    def due_by(day: date) -> Decimal:
        last_credit_day = day - timedelta(days=after)
        added = sum(
            (amount for credited_on, amount in credits.items() if credited_on <= last_credit_day),
            ZERO,
        )
        return max(ZERO, baseline + added - used)

    mine = [notice for notice in notices if notice.expiry.holder == account.holder]
    covered = sum((n.expiry.points for n in mine if n.is_pending), ZERO)
    told = {notice.expiry.expires_on for notice in mine}
    overdue = max(ZERO, due_by(today) - covered)
    covered += overdue
    found: dict[date, Decimal] = {}
    last = today + timedelta(days=policy.notice_days)
    for ahead in range(1, policy.notice_days + 1):
        day = today + timedelta(days=ahead)
        fresh = due_by(day) - covered
        if fresh > 0 and day not in told:
            found[day] = fresh
            covered += fresh
    if overdue > 0 and last not in told:
        found[last] = found.get(last, ZERO) + overdue
    return [
        Expiry(account.holder, day, points.quantize(ledger.CENT))
        for day, points in sorted(found.items())
    ]


def _planned(
    session: Session, *, policy: ExpiryPolicy, today: date
) -> list[tuple[Account, Expiry]]:
    after = policy.after_days
    assert after is not None
    credits = _credits_by_day(
        session,
        since=today - timedelta(days=after - 1),
        until=today + timedelta(days=policy.notice_days - after),
    )
    notices = _notices(session)
    return [
        (account, expiry)
        for account in _members(session)
        for expiry in _to_announce(
            session,
            account,
            today=today,
            policy=policy,
            credits=credits.get(account.id, {}),
            notices=notices,
        )
    ]


def _announce(session: Session, account: Account, expiry: Expiry, *, after_days: int) -> None:
    timers.schedule(
        session,
        due_at=_start_of(expiry.expires_on),
        what=EXPIRY_DUE,
        key=_notice_key(account.id, expiry.expires_on),
        payload={
            "holder": expiry.holder,
            "expires_on": expiry.expires_on.isoformat(),
            "points": str(expiry.points),
            "after_days": after_days,
        },
    )
    messaging.notify(
        session,
        notifications.POINTS_EXPIRING,
        recipient=expiry.holder,
        points=expiry.points,
        expires_on=expiry.expires_on,
        balance=account.balance,
    )
    log.info("points.expiry_announced", holder=expiry.holder, day=str(expiry.expires_on))


# A day's round


def _due_now(session: Session) -> list[_Notice]:
    return [notice for notice in _notices(session, state="pending") if notice.due_at <= utcnow()]


def plan_round(session: Session, *, policy: ExpiryPolicy) -> Round:
    """What a round now would move to the bank and announce; nothing is changed."""
    if not policy.is_on:
        return Round(expired=[], announced=[])
    expired = []
    for notice in _due_now(session):
        account = ledger.get_account(session, notice.expiry.holder)
        due = _unused_due(
            session, account, on=notice.expiry.expires_on, after_days=notice.after_days
        )
        points = min(notice.expiry.points, due, account.available)
        if points > 0:
            expired.append(Expiry(notice.expiry.holder, notice.expiry.expires_on, points))
    today = utcnow().date()
    announced = [expiry for _, expiry in _planned(session, policy=policy, today=today)]
    return Round(expired=expired, announced=announced)


def run_round(session: Session, *, policy: ExpiryPolicy) -> Round:
    """A day's round: move the announced expiries that fell due (the scheduler usually has),
    then announce what will expire within the notice period, each once. With the policy off,
    the expiries announced and not yet due are cancelled."""
    if not policy.is_on:
        for notice in _notices(session, state="pending"):
            timers.cancel(session, notice.key)
            log.info("points.expiry_cancelled", holder=notice.expiry.holder)
        return Round(expired=[], announced=[])
    expired = []
    for notice in _due_now(session):
        transfer = expire_announced(session, expiry=notice.expiry, after_days=notice.after_days)
        timers.cancel(session, notice.key)
        if transfer is not None:
            expired.append(Expiry(notice.expiry.holder, notice.expiry.expires_on, transfer.amount))
    today = utcnow().date()
    announced = []
    for account, expiry in _planned(session, policy=policy, today=today):
        _announce(session, account, expiry, after_days=policy.after_days or 0)
        announced.append(expiry)
    return Round(expired=expired, announced=announced)
