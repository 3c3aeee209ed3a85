"""The moral bank's ledger: points move only by double-entry transfers, each keyed by the fact
that caused it, and a transfer once written is never edited; corrections are new transfers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import cast

import structlog
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from services.points.models import (
    HOLDER,
    ISSUANCE,
    Account,
    EarningRate,
    Entry,
    Transfer,
    messaging,
)
from services.points.policy import no_account, no_transfer
from shared import events, notifications
from shared.clock import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.paging import fetch_page
from shared.people import address, role_of

log = structlog.get_logger(__name__)

ISSUANCE_HOLDER = "bank:issuance"
EARN = "earn"
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# A day of service at the highest rate must fit a balance many times over (Numeric(12, 2)).
MAX_RATE = Decimal("10000.00")
# Ids become part of holders, transfer ids and notification recipients: keep them plain.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CATEGORY = re.compile(events.CATEGORY_CODE)


def volunteer_holder(volunteer_id: str) -> str:
    return address("volunteer", volunteer_id)


def earn_transfer_id(request_id: str) -> str:
    return f"earn:{request_id}"


def _check_identifier(value: str, field: str) -> None:
    if not _IDENTIFIER.match(value):
        raise Invalid(f"{field} {value!r} must be 1 to 64 letters, digits or . _ : -", field=field)


def _check_points(value: Decimal, field: str, *, maximum: Decimal) -> None:
    if not value.is_finite() or value <= 0 or value > maximum:
        raise Invalid(f"{field} must be more than 0 and at most {maximum}", field=field)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise Invalid(f"{field} may have at most 2 decimal places", field=field)


# Earning rates


def set_rate(session: Session, *, category: str, points_per_hour: Decimal) -> EarningRate:
    """Set how many points an hour of service in ``category`` earns from now on."""
    if not _CATEGORY.match(category):
        raise Invalid(f"Category {category!r} is not a catalogue code", field="category")
    _check_points(points_per_hour, "points_per_hour", maximum=MAX_RATE)
    points_per_hour = points_per_hour.quantize(CENT)
    rate = session.get(EarningRate, category, with_for_update=True)
    if rate is None:
        rate = EarningRate(category=category, points_per_hour=points_per_hour, updated_at=utcnow())
        session.add(rate)
    else:
        rate.points_per_hour = points_per_hour
        rate.updated_at = utcnow()
    session.flush()
    return rate


def list_rates(session: Session) -> list[EarningRate]:
    return list(session.scalars(select(EarningRate).order_by(EarningRate.category)))


def rate_for(session: Session, category: str) -> EarningRate:
    rate = session.get(EarningRate, category)
    if rate is None:
        raise NotFound(
            f"No earning rate for category {category!r}: set one, then replay the message",
            field="category",
        )
    return rate


# Accounts


def _find_account(session: Session, holder: str) -> Account | None:
    return session.scalars(select(Account).filter_by(holder=holder)).first()


def open_account(session: Session, *, holder: str, kind: str = HOLDER) -> Account:
    """The account of ``holder``, opened empty on first use."""
    account = _find_account(session, holder)
    if account is not None:
        return account
    try:
        with session.begin_nested():
            account = Account(holder=holder, kind=kind, balance=ZERO, created_at=utcnow())
            session.add(account)
    except IntegrityError:
        # A concurrent transaction opened it first; ours waited for it and can use it now.
        account = _find_account(session, holder)
        if account is None:
            raise
    return account


def get_account(session: Session, holder: str) -> Account:
    """An account."""
    account = _find_account(session, holder)
    if account is None:
        raise no_account(holder)
    return account


def list_entries(
    session: Session, *, holder: str, offset: int, limit: int
) -> tuple[list[Entry], int]:
    """A page of an account's entries, newest first, and how many it has in all."""
    account = get_account(session, holder)
    query = select(Entry).where(Entry.account_id == account.id).order_by(Entry.id.desc())
    return fetch_page(session, query, offset=offset, limit=limit)


def get_transfer(session: Session, transfer_id: str) -> Transfer:
    """A transfer."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise no_transfer(transfer_id)
    return transfer


# Transfers


def _lock(session: Session, *accounts: Account) -> None:
    """Lock the accounts' rows (in id order, so two transfers never deadlock) and reload them."""
    _held(session, *(account.holder for account in accounts))


_accounts_held = (
    select(Account)
    .where(Account.holder.in_(bindparam("holders", expanding=True)))
    .order_by(Account.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _held(session: Session, *holders: str) -> dict[str, Account]:
    """The accounts of ``holders`` that exist, locked in id order and reloaded, by holder."""
    found = session.scalars(_accounts_held, {"holders": list(holders)})
    return {account.holder: account for account in found}


_transfers = cast(Table, Transfer.__table__)
_entries = cast(Table, Entry.__table__)
_is_transferred = select(_transfers.c.id).where(_transfers.c.id == bindparam("transfer_id"))


def _transfer_if_any(session: Session, transfer_id: str) -> Transfer | None:
    # Most credits find none: a plain look-up, and the transfer loaded only when there is one.
    if session.execute(_is_transferred, {"transfer_id": transfer_id}).first() is None:
        return None
    return session.get(Transfer, transfer_id)


def _post(
    session: Session,
    *,
    transfer_id: str,
    kind: str,
    amount: Decimal,
    debit: Account,
    credit: Account,
    memo: str,
    request_id: str | None = None,
) -> Transfer:
    """Write a transfer and its two entries; the caller holds both accounts' locks."""
    if debit.kind == HOLDER and debit.balance < amount:
        raise Conflict(f"{debit.holder} has {debit.balance} points; {amount} are needed")
    row = {
        "id": transfer_id,
        "kind": kind,
        "amount": amount,
        "debit_account_id": debit.id,
        "credit_account_id": credit.id,
        "memo": memo,
        "request_id": request_id,
        "created_at": utcnow(),
    }
    # Plain INSERTs (the entries in one) rather than the ORM's unit of work, which cost a third
    # of a credit; the transfer is then put in the session as loaded.
    session.execute(insert(_transfers), row)
    session.execute(
        insert(_entries),
        [
            {"transfer_id": transfer_id, "account_id": debit.id, "amount": -amount},
            {"transfer_id": transfer_id, "account_id": credit.id, "amount": amount},
        ],
    )
    transfer = Transfer(**row, debit_account=debit, credit_account=credit)
    make_transient_to_detached(transfer)
    session.add(transfer)
    debit.balance -= amount
    credit.balance += amount
    session.flush()
    return transfer


def credit_earned_points(
    session: Session, *, request_id: str, volunteer_id: str, category: str, hours: Decimal
) -> Transfer:
    """Credit a volunteer for a confirmed service, once per request whatever the deliveries."""
    _check_identifier(request_id, "request_id")
    _check_identifier(volunteer_id, "volunteer_id")
    transfer_id = earn_transfer_id(request_id)
    holder = volunteer_holder(volunteer_id)
    # Every credit locks the issuance account before it looks for its transfer, so of two
    # credits of one request the second waits for the first, then finds its transfer.
    held = _held(session, ISSUANCE_HOLDER, holder)
    if len(held) < 2:
        # A first credit in the bank, or the volunteer's first: open what is missing (and look
        # first, so that a request already credited opens nothing), then lock both.
        existing = _transfer_if_any(session, transfer_id)
        if existing is not None:
            return _already_credited(existing, volunteer_id=volunteer_id)
        held = {
            ISSUANCE_HOLDER: open_account(session, holder=ISSUANCE_HOLDER, kind=ISSUANCE),
            holder: open_account(session, holder=holder),
        }
        _lock(session, *held.values())
    # Another confirmation of the same request may have committed while we waited for the lock.
    existing = _transfer_if_any(session, transfer_id)
    if existing is not None:
        return _already_credited(existing, volunteer_id=volunteer_id)
    rate = rate_for(session, category)
    amount = (hours * rate.points_per_hour).quantize(CENT, rounding=ROUND_HALF_UP)
    if amount <= 0:
        raise Invalid(
            f"{hours} hour(s) at {rate.points_per_hour} points/hour earn no points", field="hours"
        )
    issuance, volunteer = held[ISSUANCE_HOLDER], held[holder]
    transfer = _post(
        session,
        transfer_id=transfer_id,
        kind=EARN,
        amount=amount,
        debit=issuance,
        credit=volunteer,
        request_id=request_id,
        memo=f"{hours} h of {category} at {rate.points_per_hour} points/h",
    )
    messaging.notify(
        session,
        notifications.POINTS_CREDITED,
        recipient=volunteer.holder,
        request_id=request_id,
        points=amount,
        balance=volunteer.balance,
        hours=hours,
        category=category,
    )
    log.info("points.credited", transfer_id=transfer_id, amount=str(amount))
    return transfer


def _already_credited(transfer: Transfer, *, volunteer_id: str) -> Transfer:
    if transfer.credit_account.holder != volunteer_holder(volunteer_id):
        # Left for staff to correct with a new transfer: the ledger is never edited.
        log.warning(
            "points.credited_to_another_volunteer",
            transfer_id=transfer.id,
            credited=transfer.credit_account.holder,
            claimed=volunteer_id,
        )
    else:
        log.info("points.already_credited", transfer_id=transfer.id)
    return transfer


@dataclass(frozen=True)
class Parties:
    """Who did each step of a service, as addresses (None where it is not known)."""

    confirmed_by: str
    accepted_by: str | None
    completed_by: str | None


# Who may confirm a service so that it mints points: never one who did the work.
CONFIRMING_ROLES = ("resident", "staff")


def why_not_minted(*, volunteer_id: str, parties: Parties) -> str | None:
    """Why confirmed hours must not become points (separation of duties), or None."""
    confirmer = parties.confirmed_by
    if role_of(confirmer) not in CONFIRMING_ROLES:
        return f"it was confirmed by {confirmer}, who is neither the resident nor staff"
    doers = {
        "the volunteer credited": volunteer_holder(volunteer_id),
        "the one who accepted it": parties.accepted_by,
        "the one who completed it": parties.completed_by,
    }
    same = [role for role, who in doers.items() if who == confirmer]
    if same:
        return (
            f"it was confirmed by {confirmer}, who is also {' and '.join(same)}: "
            "no one may both do a service and confirm it"
        )
    return None


def credit_confirmed_service(
    session: Session,
    *,
    request_id: str,
    volunteer_id: str,
    category: str,
    hours: Decimal,
    parties: Parties,
) -> Transfer | None:
    """A confirmed service earns its volunteer points, unless one person stands on both sides;
    then nothing is minted and the request is told why."""
    _check_identifier(request_id, "request_id")
    _check_identifier(volunteer_id, "volunteer_id")
    reason = why_not_minted(volunteer_id=volunteer_id, parties=parties)
    if reason is None:
        return credit_earned_points(
            session,
            request_id=request_id,
            volunteer_id=volunteer_id,
            category=category,
            hours=hours,
        )
    log.warning("points.refused", request_id=request_id, reason=reason)
    messaging.stage(
        session,
        events.EARNING_REFUSED,
        {
            "request_id": request_id,
            "volunteer_id": volunteer_id,
            "reason": reason,
            "refused_at": utcnow(),
        },
    )
    return None
