"""The catalogue and redemptions: points exchanged for a haircut, or rice and oil.

A redemption reserves in one transaction both the item (its stock, where stock is counted) and
the points (a pending ``redeem`` transfer from the member to the redemption sink), so that
neither can be promised twice. It is fulfilled at the handover (the transfer is posted) or
cancelled (the transfer voided, the stock put back), by staff, by the member, or when it is not
collected within ``HOLD``. Too few points available, too little stock, more than one person may
have, or an item not to be had now: refused with the reason, and nothing changes.

Every redemption of an item takes the item's row lock before the accounts' (the ledger's), so
redemptions of one item queue, and two never both take its last one or go past a limit.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from services.points import ledger
from services.points.ledger import SINK_HOLDER, Refused, TransferExists, TransferOrder
from services.points.models import (
    CANCELLED,
    FULFILLED,
    HOLDER,
    ITEM_KINDS,
    REDEEM,
    RESERVED,
    CatalogueItem,
    Redemption,
    timers,
)
from shared.clock import utcnow
from shared.errors import Invalid, NotFound
from shared.paging import fetch_page

log = structlog.get_logger(__name__)

# A reservation not collected in this time is cancelled, and what it held released.
HOLD = timedelta(days=14)
EXPIRE = "redemption.expire"
MAX_QUANTITY = 100
MAX_STOCK = 1_000_000
MAX_PERIOD_DAYS = 3660
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def no_item(item_id: str) -> NotFound:
    return NotFound(f"No catalogue item {item_id!r}", field="item_id")


def no_redemption(redemption_id: str) -> NotFound:
    """The answer for a redemption that does not exist, or is another member's."""
    return NotFound(f"No redemption {redemption_id!r}")


def _expiry_key(redemption_id: str) -> str:
    return f"redemption:{redemption_id}:expire"


# The catalogue


def put_item(
    session: Session,
    *,
    item_id: str,
    name: str,
    kind: str,
    price: Decimal,
    stock: int | None = None,
    limit_per_person: int | None = None,
    limit_period_days: int | None = None,
    available_from: datetime | None = None,
    available_until: datetime | None = None,
    is_active: bool = True,
) -> CatalogueItem:
    """Add an item to the catalogue, or change it: its price, stock, limit and window."""
    if not _IDENTIFIER.fullmatch(item_id):
        raise Invalid(f"Item id {item_id!r} must be 1 to 64 letters, digits or . _ : -")
    if not name.strip() or len(name) > 100:
        raise Invalid("An item's name is 1 to 100 characters", field="name")
    if kind not in ITEM_KINDS:
        raise Invalid(f"An item is one of {list(ITEM_KINDS)}", field="kind")
    ledger.check_points(price, "price", maximum=ledger.MAX_AMOUNT)
    if stock is not None and not 0 <= stock <= MAX_STOCK:
        raise Invalid(f"Stock is 0 to {MAX_STOCK}", field="stock")
    if limit_per_person is not None and not 1 <= limit_per_person <= MAX_QUANTITY:
        raise Invalid(f"A limit is 1 to {MAX_QUANTITY}", field="limit_per_person")
    if limit_period_days is not None:
        if limit_per_person is None:
            raise Invalid("A period is the period of a limit", field="limit_period_days")
        if not 1 <= limit_period_days <= MAX_PERIOD_DAYS:
            raise Invalid(f"A period is 1 to {MAX_PERIOD_DAYS} days", field="limit_period_days")
    for moment, field in ((available_from, "available_from"), (available_until, "available_until")):
        if moment is not None and moment.tzinfo is None:
            raise Invalid("A time needs its zone", field=field)
    if available_from and available_until and available_until <= available_from:
        raise Invalid(
            "An item is available until after it is available from", field="available_until"
        )
    values: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "price": price.quantize(ledger.CENT),
        "stock": stock,
        "limit_per_person": limit_per_person,
        "limit_period_days": limit_period_days,
        "available_from": available_from,
        "available_until": available_until,
        "is_active": is_active,
        "updated_at": utcnow(),
    }
    item = session.get(CatalogueItem, item_id, with_for_update=True)
    if item is None:
        item = CatalogueItem(id=item_id, **values)
        session.add(item)
    else:
        for key, value in values.items():
            setattr(item, key, value)
    session.flush()
    return item


def get_item(session: Session, item_id: str) -> CatalogueItem:
    item = session.get(CatalogueItem, item_id)
    if item is None:
        raise no_item(item_id)
    return item


def list_items(
    session: Session, *, offset: int, limit: int, kind: str | None = None
) -> tuple[list[CatalogueItem], int]:
    """A page of the catalogue's active items, by name."""
    query = (
        select(CatalogueItem)
        .where(CatalogueItem.is_active)
        .order_by(CatalogueItem.name, CatalogueItem.id)
    )
    if kind is not None:
        query = query.where(CatalogueItem.kind == kind)
    return fetch_page(session, query, offset=offset, limit=limit)


# Redemptions


def _locked_item(session: Session, item_id: str) -> CatalogueItem:
    item = session.get(CatalogueItem, item_id, with_for_update=True, populate_existing=True)
    if item is None:
        raise no_item(item_id)
    return item


def _why_not_to_be_had(item: CatalogueItem, now: datetime) -> str | None:
    if not item.is_active:
        return f"{item.name} is no longer in the catalogue"
    if item.available_from is not None and now < item.available_from:
        return f"{item.name} can be had from {item.available_from:%Y-%m-%d %H:%M} UTC"
    if item.available_until is not None and now >= item.available_until:
        return f"{item.name} could be had until {item.available_until:%Y-%m-%d %H:%M} UTC"
    return None


def _had_already(session: Session, item: CatalogueItem, holder: str, now: datetime) -> int:
    """How many of ``item`` ``holder`` has reserved or had within the item's limit period."""
    query = select(func.coalesce(func.sum(Redemption.quantity), 0)).where(
        Redemption.item_id == item.id,
        Redemption.holder == holder,
        Redemption.status.in_((RESERVED, FULFILLED)),
    )
    if item.limit_period_days is not None:
        query = query.where(Redemption.created_at > now - timedelta(days=item.limit_period_days))
    return int(session.scalar(query) or 0)


def _same_redemption(
    existing: Redemption, *, item_id: str, holder: str, quantity: int
) -> Redemption:
    if existing.holder != holder:
        # Another member's: say nothing of what they took.
        raise Refused("id_taken", f"Id {existing.id!r} is taken: redeem with a new one")
    for field, stored, given in (
        ("item_id", existing.item_id, item_id),
        ("holder", existing.holder, holder),
        ("quantity", existing.quantity, quantity),
    ):
        if stored != given:
            log.error(
                "points.redemption_exists_differently", redemption_id=existing.id, field=field
            )
            raise TransferExists(existing.id, field, stored, given, what="redemption")
    return existing


def redeem(
    session: Session,
    *,
    redemption_id: str,
    item_id: str,
    holder: str,
    quantity: int = 1,
    operator: str | None = None,
) -> Redemption:
    """Reserve ``quantity`` of an item for ``holder``: its stock and their points, together."""
    if not _IDENTIFIER.fullmatch(redemption_id):
        raise Invalid(
            f"Redemption id {redemption_id!r} must be 1 to 64 letters, digits or . _ : -",
            field="id",
        )
    if not 1 <= quantity <= MAX_QUANTITY:
        raise Invalid(f"A quantity is 1 to {MAX_QUANTITY}", field="quantity")
    if ledger.account_kind(holder) != HOLDER:
        raise Invalid("Only a member's points buy from the catalogue", field="holder")
    item = _locked_item(session, item_id)
    existing = session.get(Redemption, redemption_id)
    if existing is not None:
        return _same_redemption(existing, item_id=item_id, holder=holder, quantity=quantity)
    now = utcnow()
    reason = _why_not_to_be_had(item, now)
    if reason is not None:
        raise Refused("not_available", reason, field="item_id")
    if item.stock is not None and item.stock < quantity:
        raise Refused(
            "out_of_stock",
            f"{item.name}: {item.stock} left, {quantity} asked for",
            field="quantity",
        )
    if item.limit_per_person is not None:
        had = _had_already(session, item, holder, now)
        if had + quantity > item.limit_per_person:
            period = (
                f" in {item.limit_period_days} days" if item.limit_period_days is not None else ""
            )
            raise Refused(
                "exceeds_limit",
                f"{item.name}: at most {item.limit_per_person} per person{period}; "
                f"{holder} has {had} already",
                field="quantity",
            )
    points = item.price * quantity
    transfer = ledger.create_transfer(
        session,
        order=TransferOrder(
            id=f"redeem:{redemption_id}",
            kind=REDEEM,
            debit=holder,
            credit=SINK_HOLDER,
            amount=points,
            is_pending=True,
            operator=operator,
            memo=f"{quantity} x {item.name} ({item.id}) at {item.price}",
        ),
    )
    if item.stock is not None:
        item.stock -= quantity
    redemption = Redemption(
        id=redemption_id,
        item=item,
        holder=holder,
        quantity=quantity,
        points=points,
        status=RESERVED,
        transfer_id=transfer.id,
        operator=operator,
        created_at=now,
    )
    session.add(redemption)
    timers.schedule(
        session,
        due_at=now + HOLD,
        what=EXPIRE,
        key=_expiry_key(redemption_id),
        payload={"redemption_id": redemption_id},
    )
    session.flush()
    log.info("points.reserved", redemption_id=redemption_id, item_id=item.id, points=str(points))
    return redemption


def get_redemption(session: Session, redemption_id: str) -> Redemption:
    redemption = session.get(Redemption, redemption_id)
    if redemption is None:
        raise no_redemption(redemption_id)
    return redemption


def list_redemptions(
    session: Session,
    *,
    offset: int,
    limit: int,
    holder: str | None = None,
    item_id: str | None = None,
    status: str | None = None,
) -> tuple[list[Redemption], int]:
    """A page of redemptions, newest first."""
    query: Select[Any] = select(Redemption).order_by(
        Redemption.created_at.desc(), Redemption.id.desc()
    )
    for column, value in (
        (Redemption.holder, holder),
        (Redemption.item_id, item_id),
        (Redemption.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    return fetch_page(session, query, offset=offset, limit=limit)


def _held_redemption(session: Session, redemption_id: str) -> Redemption:
    """A redemption with its item's lock held, read after the lock."""
    found = get_redemption(session, redemption_id)
    _locked_item(session, found.item_id)
    session.refresh(found)
    return found


def refuse_if_owned(session: Session, transfer_id: str) -> None:
    """Refuse to resolve by hand a transfer that holds a redemption's points: posting or
    voiding it alone would leave the redemption reserved, or hand the item over for a part
    of its price. The redemption's own fulfilment and cancellation resolve it."""
    owner = session.scalars(select(Redemption.id).where(Redemption.transfer_id == transfer_id))
    redemption_id = owner.first()
    if redemption_id is not None:
        raise Refused(
            "owned_by_redemption",
            f"Transfer {transfer_id!r} holds the points of redemption {redemption_id!r}: "
            f"fulfil or cancel the redemption (/v1/redemptions/{redemption_id}/fulfilment or "
            "/cancellation) rather than the transfer",
        )


def fulfil(session: Session, *, redemption_id: str, operator: str | None = None) -> Redemption:
    """The item is handed over: the points held for it are posted."""
    redemption = _held_redemption(session, redemption_id)
    if redemption.status == FULFILLED:
        return redemption
    if redemption.status == CANCELLED:
        raise Refused("redemption_cancelled", f"Redemption {redemption_id!r} was cancelled")
    ledger.post_pending(session, transfer_id=redemption.transfer_id, operator=operator)
    redemption.status = FULFILLED
    redemption.ended_at = utcnow()
    timers.cancel(session, _expiry_key(redemption_id))
    session.flush()
    return redemption


def cancel(
    session: Session, *, redemption_id: str, reason: str, operator: str | None = None
) -> Redemption:
    """The item will not be handed over: the points are released and the stock put back."""
    if not reason.strip():
        raise Invalid("Say why it is cancelled", field="reason")
    redemption = _held_redemption(session, redemption_id)
    if redemption.status == CANCELLED:
        return redemption
    if redemption.status == FULFILLED:
        raise Refused(
            "redemption_fulfilled",
            f"Redemption {redemption_id!r} was handed over: reverse its transfer instead",
        )
    ledger.void_pending(
        session, transfer_id=redemption.transfer_id, reason=reason, operator=operator
    )
    item = redemption.item
    if item.stock is not None:
        item.stock += redemption.quantity
    redemption.status = CANCELLED
    redemption.reason = reason
    redemption.ended_at = utcnow()
    timers.cancel(session, _expiry_key(redemption_id))
    session.flush()
    return redemption


@timers.handler(EXPIRE)
def expire(session: Session, *, key: str, payload: dict[str, Any]) -> None:
    """A reservation not collected in time is cancelled."""
    redemption = _held_redemption(session, payload["redemption_id"])
    if redemption.status == RESERVED:
        cancel(
            session,
            redemption_id=redemption.id,
            reason=f"Not collected within {HOLD.days} days",
        )
