"""Members give their own points: donations to the community pool, and gifts to the family the
community office has recorded for them (points passed to a parent, say).

A donation or a gift is a transfer like any other, keyed by the id its giver chose
(``donate:<id>``, ``gift:<id>``): asking again with the same id and fields finds it, with other
fields is refused. An id some other member's giving already took is refused without saying
whose it is. Gifts go only to recorded family, so that points stay a thanks for service and
never become a currency between strangers; a gift is at most ``GivingPolicy.max_gift`` and one
member's gifts at most ``max_gifts_per_period`` in any ``period``. Donations have no cap: what
reaches the pool is paid out again only by staff, for work they name. Points held by a pending
transfer (a redemption reserved) cannot be given.

Both lock the giver's account before they count what it gave, so two gifts at once never pass
the cap together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.points import ledger
from services.points.ledger import POOL_HOLDER, Refused, TransferOrder
from services.points.models import DONATE, GIFT, HOLDER, Account, FamilyLink, Transfer
from shared.clock import utcnow
from shared.errors import Invalid, NotFound

log = structlog.get_logger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_RELATION = 50


@dataclass(frozen=True)
class GivingPolicy:
    """How much a member may give their family: at most ``max_gift`` at a time and
    ``max_gifts_per_period`` in any ``period``."""

    max_gift: Decimal = Decimal("200.00")
    max_gifts_per_period: Decimal = Decimal("500.00")
    period: timedelta = field(default=timedelta(days=30))

    def __post_init__(self) -> None:
        if not Decimal(0) < self.max_gift <= self.max_gifts_per_period:
            raise ValueError("a gift's cap is above 0 and at most the cap of a period's gifts")
        if self.period < timedelta(days=1):
            raise ValueError("the period of the gifts' cap is a day at the least")


def _member(holder: str, field: str) -> str:
    try:
        kind = ledger.account_kind(holder)
    except Invalid as error:
        raise Invalid(error.detail, field=field) from None
    if kind != HOLDER:
        raise Invalid(f"{holder} is the bank's, not a member's", field=field)
    return holder


def _check_id(value: str) -> None:
    if not _IDENTIFIER.fullmatch(value):
        raise Invalid(f"Id {value!r} must be 1 to 64 letters, digits or . _ : -", field="id")


def _held(session: Session, order: TransferOrder) -> tuple[dict[str, Account], Transfer | None]:
    """Lock both accounts and look for a transfer under the order's id: the giver's own (the
    same fields or refused, as the ledger says), or someone else's (refused, naming no one)."""
    held, existing = ledger.hold_for(session, order.id, order.debit, order.credit)
    if existing is None:
        return held, None
    if existing.debit != order.debit:
        raise Refused("id_taken", f"Id {order.id.split(':', 1)[1]!r} is taken: give with a new one")
    return held, ledger.same_transfer(existing, order)


def donate(
    session: Session,
    *,
    donation_id: str,
    holder: str,
    amount: Decimal,
    memo: str | None = None,
    operator: str | None = None,
) -> Transfer:
    """Give ``amount`` of ``holder``'s available points to the community pool."""
    _check_id(donation_id)
    order = ledger.checked(
        TransferOrder(
            id=f"donate:{donation_id}",
            kind=DONATE,
            debit=_member(holder, "holder"),
            credit=POOL_HOLDER,
            amount=amount,
            operator=operator,
            memo=memo or "Donated to the community pool",
        )
    )
    held, existing = _held(session, order)
    if existing is not None:
        return existing
    transfer = ledger.write_transfer(
        session, order=order, debit=held[order.debit], credit=held[order.credit]
    )
    log.info("points.donated", transfer_id=transfer.id, amount=str(order.amount))
    return transfer


def _gifts_within(session: Session, holder_id: int, policy: GivingPolicy) -> Decimal:
    since = utcnow() - policy.period
    total = session.scalar(
        select(func.sum(Transfer.amount)).where(
            Transfer.kind == GIFT,
            Transfer.debit_account_id == holder_id,
            Transfer.created_at > since,
        )
    )
    return Decimal(str(total or 0)).quantize(ledger.CENT)


def give(
    session: Session,
    *,
    gift_id: str,
    holder: str,
    relative: str,
    amount: Decimal,
    policy: GivingPolicy,
    memo: str | None = None,
    operator: str | None = None,
) -> Transfer:
    """Give ``amount`` of ``holder``'s available points to ``relative``, recorded as their
    family, within the caps of ``policy``."""
    _check_id(gift_id)
    _member(holder, "holder")
    _member(relative, "to")
    ledger.check_points(amount, "amount", maximum=ledger.MAX_AMOUNT)
    if amount > policy.max_gift:
        raise Invalid(f"A gift is at most {policy.max_gift} points", field="amount")
    order = ledger.checked(
        TransferOrder(
            id=f"gift:{gift_id}",
            kind=GIFT,
            debit=holder,
            credit=relative,
            amount=amount,
            operator=operator,
            memo=memo or f"A gift to {relative}",
        )
    )
    held, existing = _held(session, order)
    if existing is not None:
        return existing
    if session.get(FamilyLink, (holder, relative)) is None:
        raise Refused(
            "not_family",
            f"{relative} is not recorded as {holder}'s family: points are given only to "
            "family, whom the community office records",
            field="to",
        )
    given = _gifts_within(session, held[holder].id, policy)
    if given + order.amount > policy.max_gifts_per_period:
        raise Refused(
            "exceeds_gift_limit",
            f"{holder} gave {given} points in the last {policy.period.days} days; at most "
            f"{policy.max_gifts_per_period} may be given in any {policy.period.days} days",
            field="amount",
        )
    transfer = ledger.write_transfer(
        session, order=order, debit=held[holder], credit=held[relative]
    )
    log.info("points.gift_given", transfer_id=transfer.id, amount=str(order.amount))
    return transfer


# The family register


def no_relative(holder: str, relative: str) -> NotFound:
    return NotFound(f"{relative!r} is not recorded as {holder!r}'s family", field="relative")


def record_relative(
    session: Session,
    *,
    holder: str,
    relative: str,
    relation: str,
    recorded_by: str | None = None,
) -> FamilyLink:
    """Record ``relative`` as family ``holder`` may give points to, or say how they are
    related anew."""
    _member(holder, "holder")
    _member(relative, "relative")
    if holder == relative:
        raise Invalid("A member is not their own family", field="relative")
    relation = " ".join(relation.split())
    if not 1 <= len(relation) <= MAX_RELATION:
        raise Invalid(f"A relation is 1 to {MAX_RELATION} characters", field="relation")
    link = session.get(FamilyLink, (holder, relative), with_for_update=True)
    if link is None:
        link = FamilyLink(holder=holder, relative=relative)
        session.add(link)
    link.relation = relation
    link.recorded_by = recorded_by
    link.recorded_at = utcnow()
    session.flush()
    return link


def forget_relative(session: Session, *, holder: str, relative: str) -> FamilyLink:
    """No longer let ``holder`` give points to ``relative``; gifts already given stand. The
    link forgotten is returned."""
    link = session.get(FamilyLink, (holder, relative), with_for_update=True)
    if link is None:
        raise no_relative(holder, relative)
    session.delete(link)
    session.flush()
    return link


def list_family(session: Session, *, holder: str) -> list[FamilyLink]:
    """Whom ``holder`` may give points to, by address."""
    _member(holder, "holder")
    return list(
        session.scalars(
            select(FamilyLink).where(FamilyLink.holder == holder).order_by(FamilyLink.relative)
        )
    )
