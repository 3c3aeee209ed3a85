"""Service hours recognised: a volunteer's certificate of their confirmed hours by category,
and honour rolls of the volunteers who gave the most hours in a period, of a team or of all.

Hours count once confirmed, in the period their earning was posted: credited at once, or the
pending earning posted (the hours confirmed, where fewer were confirmed than reported). An
earning that was reversed counts for nothing, whenever it was reversed: it should never have
been. Only what points was told is known: the team an earning's service was done for, the
community it was done in and the volunteer's name come with the report of the service done,
and are missing where it did not say them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, case, cast, exists, func, select
from sqlalchemy.orm import Session, aliased

from services.points.ledger import CENT, check_identifier, get_account
from services.points.models import EARN, Account, Entry, Transfer, TransferResolution
from services.points.periods import Period, period
from services.points.statements import read_one_snapshot
from shared.clock import utcnow
from shared.errors import Invalid

MAX_ROLL = 100
_reversal = aliased(Transfer)
# The hours a posted earning stands for.
_HOURS = func.coalesce(
    case((Transfer.is_pending, TransferResolution.hours), else_=Transfer.hours), 0
)


def _cents(value: Any) -> ColumnElement[int]:
    """A decimal column as whole cents: sums of them are exact on SQLite too."""
    return cast(func.round(value * 100), Integer)


def _hours(cents: Any) -> Decimal:
    return (Decimal(int(cents or 0)) / 100).quantize(CENT)


def _earned(within: Period) -> Select[Any]:
    """The credit entries of earnings posted within the period and never reversed."""
    return (
        select(Entry.account_id)
        .join(Transfer, Transfer.id == Entry.transfer_id)
        .outerjoin(TransferResolution, TransferResolution.transfer_id == Transfer.id)
        .where(
            Transfer.kind == EARN,
            Entry.account_id == Transfer.credit_account_id,
            Entry.posted_at >= within.starts,
            Entry.posted_at < within.ends,
            ~exists().where(_reversal.reverses_id == Transfer.id),
        )
    )


# Certificates


@dataclass(frozen=True)
class CategoryHours:
    """The confirmed hours of one category of service."""

    category: str
    services: int
    hours: Decimal
    points: Decimal


@dataclass(frozen=True)
class Certificate:
    """A volunteer's confirmed service hours in a period, by category."""

    holder: str
    name: str | None
    period: Period
    categories: list[CategoryHours]
    communities: list[str]
    issued_at: datetime

    @property
    def total_hours(self) -> Decimal:
        return sum((line.hours for line in self.categories), Decimal("0.00"))

    @property
    def total_points(self) -> Decimal:
        return sum((line.points for line in self.categories), Decimal("0.00"))

    @property
    def total_services(self) -> int:
        return sum(line.services for line in self.categories)


def certificate_of(
    session: Session, *, holder: str, first: date, last: date, zone: str = "UTC"
) -> Certificate:
    """The certificate of ``holder``'s confirmed service hours for the days ``first`` to
    ``last`` in ``zone``."""
    within = period(first=first, last=last, zone=zone)
    if not holder.startswith("volunteer:"):
        raise Invalid("Only a volunteer's service hours are certified", field="holder")
    read_one_snapshot(session)
    account = get_account(session, holder)
    earned = _earned(within).where(Entry.account_id == account.id)
    category = func.coalesce(Transfer.category, "")
    rows = session.execute(
        earned.with_only_columns(
            category,
            func.count(Entry.id),
            func.sum(_cents(_HOURS)),
            func.sum(_cents(Entry.amount)),
        )
        .group_by(category)
        .order_by(category)
    ).all()
    communities = session.scalars(
        earned.with_only_columns(Transfer.community)
        .where(Transfer.community.is_not(None))
        .distinct()
        .order_by(Transfer.community)
    ).all()
    return Certificate(
        holder=account.holder,
        name=account.name,
        period=within,
        categories=[
            CategoryHours(
                category=name or "uncategorised",
                services=int(count),
                hours=_hours(hours),
                points=_hours(points),
            )
            for name, count, hours, points in rows
        ],
        communities=[name for name in communities if name],
        issued_at=utcnow(),
    )


# Honour rolls


@dataclass(frozen=True)
class Honour:
    """A volunteer's place on an honour roll."""

    rank: int
    holder: str
    name: str | None
    services: int
    hours: Decimal
    points: Decimal


@dataclass(frozen=True)
class HonourRoll:
    """The volunteers who gave the most confirmed hours in a period, of a team or of all."""

    period: Period
    team_id: str | None
    honours: list[Honour]


def honour_roll(
    session: Session,
    *,
    first: date,
    last: date,
    zone: str = "UTC",
    team_id: str | None = None,
    limit: int = 10,
) -> HonourRoll:
    """The ``limit`` volunteers with the most confirmed hours from ``first`` to ``last`` in
    ``zone`` (of ``team_id``'s services only, if given): by hours, then points, then holder,
    so that equal totals always come in the same order."""
    within = period(first=first, last=last, zone=zone)
    if team_id is not None:
        check_identifier(team_id, "team")
    if not 1 <= limit <= MAX_ROLL:
        raise Invalid(f"A roll lists 1 to {MAX_ROLL} volunteers", field="limit")
    read_one_snapshot(session)
    hours, points = func.sum(_cents(_HOURS)), func.sum(_cents(Entry.amount))
    query = (
        _earned(within)
        .join(Account, Account.id == Entry.account_id)
        .with_only_columns(Account.holder, Account.name, func.count(Entry.id), hours, points)
        .group_by(Account.holder, Account.name)
        .order_by(hours.desc(), points.desc(), Account.holder)
        .limit(limit)
    )
    if team_id is not None:
        query = query.where(Transfer.team_id == team_id)
    honours = [
        Honour(
            rank=rank,
            holder=holder,
            name=name,
            services=int(count),
            hours=_hours(hours_cents),
            points=_hours(points_cents),
        )
        for rank, (holder, name, count, hours_cents, points_cents) in enumerate(
            session.execute(query), start=1
        )
    ]
    return HonourRoll(period=within, team_id=team_id, honours=honours)
