"""The moral bank's ledger: points move only by double-entry transfers, each keyed by the fact
that caused it, and a transfer once written is never edited; corrections are new transfers.

Accounts. Each member has one, opened on first use: a volunteer (``volunteer:<id>``), or a
household where the community pools points (``household:<id>``). The bank has three: the
issuance account (``bank:issuance``), the only one that goes below zero, whose debt is every
point it issued; the community pool (``bank:pool``); the redemption sink
(``bank:redemptions``), where redeemed points end.

Balances. An account's balance is its credits posted less its debits posted, kept equal to the
sum of its entries; what pending transfers hold is kept beside it (``debits_pending``,
``credits_pending``). What a member may spend is the balance less the pending debits, and it is
never below zero: on SQLite every writer holds the database's one write lock from its first
statement, on PostgreSQL a transfer opens any missing account and locks both accounts' rows
(``FOR UPDATE``, in id order, so two transfers never deadlock) before it reads them, and a
CHECK constraint refuses a row that would break the rule whatever the code does.

Transfers. A transfer's id is its idempotency key, derived from the business fact that causes
it (``earn:<request id>``). The same id with the same fields is the transfer that exists
(success, nothing changes); with any field different it is refused as
``exists_with_different_<field>``: a 409 naming the field, or a dead letter, never applied.
Each code says why points moved and between which kinds of account (``MOVES``).

Two phases. A pending transfer moves nothing yet: it holds its amount as a pending debit and a
pending credit. It ends once, in one resolution: posted in whole or in part (the rest is
released), voided, or, at its timeout, posted or voided as it said when it was written (a
durable timer). Transfers in a batch marked ``is_linked`` succeed or fail together with the
next one.

Reversals. A posted transfer, or the posted part of a pending one, is reversed at most once,
with a reason, by a new ``reversal`` transfer moving the same amount back. Points already
spent are not clawed back: a reversal takes back the whole amount or nothing, and when the
account it takes from has fewer points available (spent, redeemed or held by a pending
transfer since), it is refused and nothing changes; staff then release what holds the points,
or adjust by what can be taken back, with a reason. A reversal is never itself reversed: it is
corrected by an adjustment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

import structlog
from sqlalchemy import Select, Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from services.points.models import (
    ADJUST,
    CODES,
    DONATE,
    EARN,
    EXPIRED,
    EXPIRY,
    GIFT,
    HOLDER,
    ISSUANCE,
    POOL,
    POST,
    POSTED,
    REDEEM,
    REVERSAL,
    SINK,
    VOID,
    VOIDED,
    ZERO,
    Account,
    EarningRate,
    EarningRateChange,
    Entry,
    Transfer,
    TransferResolution,
    messaging,
    timers,
)
from services.points.policy import no_account, no_transfer
from shared import events, notifications
from shared.clock import utcnow
from shared.database import as_loaded
from shared.errors import Conflict, DomainError, Invalid, NotFound
from shared.paging import fetch_page
from shared.people import ADDRESS, address

log = structlog.get_logger(__name__)

ISSUANCE_HOLDER = "bank:issuance"
POOL_HOLDER = "bank:pool"
SINK_HOLDER = "bank:redemptions"
BANK_ACCOUNTS = {ISSUANCE_HOLDER: ISSUANCE, POOL_HOLDER: POOL, SINK_HOLDER: SINK}
MEMBER_ROLES = ("volunteer", "household")
CENT = Decimal("0.01")
# A day of service at the highest rate must fit a balance many times over (Numeric(12, 2)).
MAX_RATE = Decimal("10000.00")
MAX_AMOUNT = Decimal("1000000.00")
MAX_TIMEOUT = timedelta(days=366)
MAX_TEXT = 500
# Ids become part of holders, transfer ids and notification recipients: keep them plain.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Room is left for the ``reversal:`` a reversal's id adds (the column holds 100).
_TRANSFER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")
_CATEGORY = re.compile(events.CATEGORY_CODE)
_ADDRESS = re.compile(ADDRESS)

# Which kinds of account each code moves points between: (debited, credited).
MOVES: dict[str, frozenset[tuple[str, str]]] = {
    EARN: frozenset({(ISSUANCE, HOLDER)}),
    REDEEM: frozenset({(HOLDER, SINK)}),
    ADJUST: frozenset({(ISSUANCE, HOLDER), (HOLDER, ISSUANCE), (ISSUANCE, POOL), (POOL, ISSUANCE)}),
    DONATE: frozenset({(HOLDER, POOL)}),
    GIFT: frozenset({(HOLDER, HOLDER), (POOL, HOLDER)}),
    EXPIRY: frozenset({(HOLDER, ISSUANCE), (POOL, ISSUANCE)}),
}
# Codes whose transfers must say why.
NEEDS_REASON = frozenset({ADJUST, EXPIRY, REVERSAL})
# The durable timer that ends a pending transfer still unresolved at its timeout.
TIMEOUT = "transfer.timeout"
# Results of a transfer in a batch, besides the refusals' own.
CREATED = "created"
EXISTS = "exists"
LINKED_EVENT_FAILED = "linked_event_failed"
LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"


class Refused(Conflict):
    """The ledger refuses a transfer as it stands; ``result`` names why, as a batch reports it."""

    def __init__(self, result: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.result = result
        self.code = result.replace("_", "-")


class TransferExists(Refused):
    """An id already names a transfer (or another thing keyed the same way, ``what``) that
    differs in ``field``."""

    def __init__(
        self, key: str, field: str, stored: Any, given: Any, *, what: str = "transfer"
    ) -> None:
        super().__init__(
            f"exists_with_different_{field}",
            f"{what.capitalize()} {key!r} exists with {field} {stored!r}, not {given!r}: "
            f"an id names one {what}, so it is not applied",
            field=field,
        )


def volunteer_holder(volunteer_id: str) -> str:
    return address("volunteer", volunteer_id)


def household_holder(household_id: str) -> str:
    check_identifier(household_id, "household_id")
    return f"household:{household_id}"


def earn_transfer_id(request_id: str) -> str:
    return f"earn:{request_id}"


def reversal_id(transfer_id: str) -> str:
    return f"reversal:{transfer_id}"


# How the ids the service gives the transfers it writes itself begin: earnings (``earn:`` the
# assigned volunteer's, ``earn.<n>:`` group work's others), reversals, redemptions, donations,
# gifts, expiries and the benchmark's. A transfer written by hand under one of them would
# stand in the way of the real one, which would then be refused as a different transfer.
RESERVED_PREFIXES = (
    "earn:",
    "earn.",
    "reversal:",
    "redeem:",
    "donate:",
    "gift:",
    "expiry:",
    "bench:",
)


def reserved_prefix(transfer_id: str) -> str | None:
    """The reserved prefix ``transfer_id`` starts with, in any case, or None."""
    lowered = transfer_id.lower()
    return next((prefix for prefix in RESERVED_PREFIXES if lowered.startswith(prefix)), None)


def why_reserved(prefix: str) -> str:
    """Why an id starting ``prefix`` is not for a transfer written by hand."""
    return (
        f"Ids starting {prefix!r} are reserved: the service gives them to the transfers it "
        f"writes itself, so name a transfer written by hand otherwise (reserved: "
        f"{', '.join(RESERVED_PREFIXES)})"
    )


def _timeout_key(transfer_id: str) -> str:
    return f"transfer:{transfer_id}:timeout"


def check_identifier(value: str, field: str) -> None:
    if not _IDENTIFIER.fullmatch(value):
        raise Invalid(f"{field} {value!r} must be 1 to 64 letters, digits or . _ : -", field=field)


def check_points(value: Decimal, field: str, *, maximum: Decimal) -> None:
    if not value.is_finite() or value <= 0 or value > maximum:
        raise Invalid(f"{field} must be more than 0 and at most {maximum}", field=field)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise Invalid(f"{field} may have at most 2 decimal places", field=field)


def _check_text(value: str | None, field: str, *, is_required: bool = False) -> None:
    if value is None or not value.strip():
        if is_required:
            raise Invalid(f"{field} is required: say why", field=field)
        return
    if len(value) > MAX_TEXT:
        raise Invalid(f"{field} is at most {MAX_TEXT} characters", field=field)


def points_for(hours: Decimal, rate: Decimal) -> Decimal:
    """What ``hours`` earn at ``rate`` points an hour, to the cent, half up."""
    return (hours * rate).quantize(CENT, rounding=ROUND_HALF_UP)


# Earning rates


def _check_category(category: str) -> None:
    if not _CATEGORY.fullmatch(category):
        raise Invalid(f"Category {category!r} is not a catalogue code", field="category")


def set_rate(
    session: Session, *, category: str, points_per_hour: Decimal, set_by: str | None = None
) -> EarningRate:
    """Set how many points an hour of service in ``category`` earns from now on."""
    _check_category(category)
    check_points(points_per_hour, "points_per_hour", maximum=MAX_RATE)
    points_per_hour = points_per_hour.quantize(CENT)
    now = utcnow()
    rate = session.get(EarningRate, category, with_for_update=True)
    if rate is not None and rate.points_per_hour == points_per_hour:
        return rate
    if rate is None:
        rate = EarningRate(category=category, points_per_hour=points_per_hour, updated_at=now)
        session.add(rate)
    else:
        rate.points_per_hour = points_per_hour
        rate.updated_at = now
    session.add(
        EarningRateChange(
            category=category, points_per_hour=points_per_hour, set_at=now, set_by=set_by
        )
    )
    session.flush()
    return rate


def list_rates(session: Session) -> list[EarningRate]:
    return list(session.scalars(select(EarningRate).order_by(EarningRate.category)))


def list_rate_changes(
    session: Session, *, category: str, offset: int, limit: int
) -> tuple[list[EarningRateChange], int]:
    """A page of the rates a category was given, newest first, and how many in all."""
    _check_category(category)
    query = (
        select(EarningRateChange)
        .where(EarningRateChange.category == category)
        .order_by(EarningRateChange.id.desc())
    )
    return fetch_page(session, query, offset=offset, limit=limit)


def rate_for(session: Session, category: str) -> EarningRate:
    rate = session.get(EarningRate, category)
    if rate is None:
        raise NotFound(
            f"No earning rate for category {category!r}: set one, then replay the message",
            field="category",
        )
    return rate


# Accounts


def account_kind(holder: str) -> str:
    """The kind of account ``holder`` names; Invalid when it names none."""
    bank = BANK_ACCOUNTS.get(holder)
    if bank is not None:
        return bank
    role, _, subject = holder.partition(":")
    if role in MEMBER_ROLES and _IDENTIFIER.fullmatch(subject):
        return HOLDER
    raise Invalid(
        f"{holder!r} names no account: volunteer:<id>, household:<id> or one of the bank's "
        f"({', '.join(sorted(BANK_ACCOUNTS))})",
        field="holder",
    )


def _find_account(session: Session, holder: str) -> Account | None:
    return session.scalars(select(Account).filter_by(holder=holder)).first()


def open_account(session: Session, *, holder: str, kind: str | None = None) -> Account:
    """The account of ``holder``, opened empty on first use."""
    expected = account_kind(holder)
    if kind is not None and kind != expected:
        raise Invalid(f"{holder!r} is an account of kind {expected!r}, not {kind!r}")
    account = _find_account(session, holder)
    if account is not None:
        return account
    try:
        with session.begin_nested():
            account = Account(
                holder=holder,
                kind=expected,
                balance=ZERO,
                debits_pending=ZERO,
                credits_pending=ZERO,
                created_at=utcnow(),
            )
            session.add(account)
    except IntegrityError:
        # A concurrent transaction opened it first; ours waited for it and can use it now.
        account = _find_account(session, holder)
        if account is None:
            raise
    return account


def name_holder(account: Account, name: str) -> None:
    """Keep the name the service that knows people gives ``account``'s holder."""
    name = " ".join(name.split())[:100]
    if name and account.name != name:
        account.name = name


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


def lock_accounts(session: Session, *holders: str) -> dict[str, Account]:
    """The accounts of ``holders``, opened if missing, locked in id order, by holder."""
    held = _held(session, *holders)
    if len(held) < len(set(holders)):
        for holder in holders:
            if holder not in held:
                open_account(session, holder=holder)
        held = _held(session, *holders)
    return held


# Transfers


def get_transfer(session: Session, transfer_id: str) -> Transfer:
    """A transfer."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None:
        raise no_transfer(transfer_id)
    return transfer


def list_transfers(
    session: Session,
    *,
    offset: int,
    limit: int,
    holder: str | None = None,
    kind: str | None = None,
    request_id: str | None = None,
) -> tuple[list[Transfer], int]:
    """A page of transfers, newest first, on an account, of a code or for a request."""
    query: Select[Any] = select(Transfer).order_by(Transfer.created_at.desc(), Transfer.id.desc())
    if holder is not None:
        account = _find_account(session, holder)
        if account is None:
            return [], 0
        query = query.where(
            or_(Transfer.debit_account_id == account.id, Transfer.credit_account_id == account.id)
        )
    if kind is not None:
        query = query.where(Transfer.kind == kind)
    if request_id is not None:
        query = query.where(Transfer.request_id == request_id)
    return fetch_page(session, query, offset=offset, limit=limit)


_accounts = cast(Table, Account.__table__)
_transfers = cast(Table, Transfer.__table__)
_entries = cast(Table, Entry.__table__)
_is_transferred = select(_transfers.c.id).where(_transfers.c.id == bindparam("transfer_id"))


def find_transfer(session: Session, transfer_id: str) -> Transfer | None:
    """The transfer ``transfer_id`` names, if there is one."""
    # Most transfers find none: a plain look-up, and the transfer loaded only when there is one.
    if session.execute(_is_transferred, {"transfer_id": transfer_id}).first() is None:
        return None
    return session.get(Transfer, transfer_id)


@dataclass(frozen=True)
class TransferOrder:
    """A transfer asked for: what a transfer is written from, and what an existing one under
    the same id must match."""

    id: str
    kind: str
    debit: str
    credit: str
    amount: Decimal
    is_pending: bool = False
    timeout: timedelta | None = None
    on_timeout: str | None = None
    request_id: str | None = None
    category: str | None = None
    hours: Decimal | None = None
    rate: Decimal | None = None
    operator: str | None = None
    reason: str | None = None
    memo: str = ""
    # Where an earning's service was done: the team it was done for, the community it was in.
    team_id: str | None = None
    community: str | None = None
    # In a batch: succeeds or fails together with the next order.
    is_linked: bool = False


def _kind_of(holder: str, side: str) -> str:
    try:
        return account_kind(holder)
    except Invalid as error:
        raise Invalid(error.detail, field=side) from None


def checked(
    order: TransferOrder, *, is_reversal: bool = False, by_hand: bool = False
) -> TransferOrder:
    """``order`` if the ledger can write it, its numbers to the cent; Invalid otherwise.
    Written ``by_hand`` (by staff), its id may not start as the service's own do."""
    prefix = reserved_prefix(order.id) if by_hand else None
    if prefix is not None:
        raise Invalid(why_reserved(prefix), field="id")
    if not _TRANSFER_ID.fullmatch(order.id) and not (
        is_reversal and order.id.startswith("reversal:")
    ):
        raise Invalid(f"Transfer id {order.id!r} must be 1 to 80 letters, digits or . _ : -")
    if order.kind not in CODES or (order.kind == REVERSAL) != is_reversal:
        codes = [code for code in CODES if code != REVERSAL]
        raise Invalid(f"A transfer's kind is one of {codes}", field="kind")
    check_points(order.amount, "amount", maximum=MAX_AMOUNT)
    if order.debit == order.credit:
        raise Invalid("A transfer moves points between two different accounts", field="credit")
    kinds = (_kind_of(order.debit, "debit"), _kind_of(order.credit, "credit"))
    if not is_reversal and kinds not in MOVES[order.kind]:
        raise Invalid(
            f"A {order.kind} transfer does not move points from a {kinds[0]} account to a "
            f"{kinds[1]} account",
            field="kind",
        )
    # What the community gave its pool is paid out only for work that is named.
    needs_reason = order.kind in NEEDS_REASON or (kinds[0] == POOL and not is_reversal)
    timeout_s, on_timeout = None, None
    if order.timeout is not None:
        if not order.is_pending:
            raise Invalid("Only a pending transfer has a timeout", field="timeout")
        if not timedelta(seconds=1) <= order.timeout <= MAX_TIMEOUT:
            raise Invalid(f"A timeout is 1 second to {MAX_TIMEOUT.days} days", field="timeout")
        timeout_s = int(order.timeout.total_seconds())
        on_timeout = order.on_timeout or VOID
        if on_timeout not in (POST, VOID):
            raise Invalid("At its timeout a transfer is posted or voided", field="on_timeout")
    elif order.on_timeout is not None:
        raise Invalid("Only a transfer with a timeout says what its timeout does", field="timeout")
    if order.request_id is not None:
        check_identifier(order.request_id, "request_id")
    if order.category is not None and not _CATEGORY.fullmatch(order.category):
        raise Invalid(f"Category {order.category!r} is not a catalogue code", field="category")
    if order.hours is not None:
        check_points(order.hours, "hours", maximum=Decimal(24))
    if order.rate is not None:
        check_points(order.rate, "rate", maximum=MAX_RATE)
    if order.kind == EARN and None in (order.request_id, order.category, order.hours, order.rate):
        raise Invalid("An earning names its request, category, hours and rate", field="request_id")
    if order.operator is not None and not _ADDRESS.fullmatch(order.operator):
        raise Invalid(f"Operator {order.operator!r} is not an address", field="operator")
    if order.team_id is not None:
        check_identifier(order.team_id, "team_id")
    if order.community is not None and not 1 <= len(order.community.strip()) <= 64:
        raise Invalid("A community's name is 1 to 64 characters", field="community")
    _check_text(order.reason, "reason", is_required=needs_reason)
    _check_text(order.memo, "memo")
    return replace(
        order,
        amount=order.amount.quantize(CENT),
        hours=order.hours.quantize(CENT) if order.hours is not None else None,
        rate=order.rate.quantize(CENT) if order.rate is not None else None,
        timeout=timedelta(seconds=timeout_s) if timeout_s is not None else None,
        on_timeout=on_timeout,
    )


def same_transfer(existing: Transfer, order: TransferOrder) -> Transfer:
    """``existing`` when ``order`` asks for exactly it; TransferExists naming the first field
    that differs otherwise (logged: it is never applied)."""
    _check_same(existing.id, _stored_fields(existing), _given_fields(order))
    return existing


def _stored_fields(existing: Any) -> dict[str, Any]:
    """What an order under an existing transfer's id must match: from a Transfer, or from a
    row of the transfers table with its accounts' holders as ``debit`` and ``credit``."""
    timeout = existing.timeout_s
    return {
        "kind": existing.kind,
        "debit": existing.debit,
        "credit": existing.credit,
        "pending": existing.is_pending,
        "timeout": timedelta(seconds=timeout) if timeout is not None else None,
        "on_timeout": existing.on_timeout,
        "request_id": existing.request_id,
        "category": existing.category,
        # What an amount is made of before the amount, so that the cause is named.
        "hours": existing.hours,
        "rate": existing.rate,
        "amount": existing.amount,
        "operator": existing.operator,
        "reason": existing.reason,
        "memo": existing.memo or "",
        "team_id": existing.team_id,
        "community": existing.community,
    }


def _given_fields(order: TransferOrder) -> dict[str, Any]:
    """What a checked order asks for, field by field as ``_stored_fields`` names them."""
    return {
        "kind": order.kind,
        "debit": order.debit,
        "credit": order.credit,
        "pending": order.is_pending,
        "timeout": order.timeout,
        "on_timeout": order.on_timeout,
        "request_id": order.request_id,
        "category": order.category,
        "hours": order.hours,
        "rate": order.rate,
        "amount": order.amount,
        "operator": order.operator,
        "reason": order.reason,
        "memo": order.memo or "",
        "team_id": order.team_id,
        "community": order.community,
    }


def _check_same(transfer_id: str, stored: dict[str, Any], given: dict[str, Any]) -> None:
    for field, value in stored.items():
        if value != given[field]:
            log.error(
                "points.transfer_exists_differently",
                transfer_id=transfer_id,
                field=field,
                stored=str(value),
                given=str(given[field]),
            )
            raise TransferExists(transfer_id, field, _shown(value), _shown(given[field]))
    log.info("points.transfer_exists", transfer_id=transfer_id)


def _shown(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal | timedelta) else value


def _check_available(account: Account | _Position, amount: Decimal) -> None:
    if account.kind != ISSUANCE and account.available < amount:
        raise Refused(
            "exceeds_available",
            f"{account.holder} has {account.available} points available; {amount} are needed",
            field="amount",
        )


def _transfer_row(
    order: TransferOrder,
    *,
    debit_id: int,
    credit_id: int,
    at: datetime,
    reverses_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": order.id,
        "kind": order.kind,
        "amount": order.amount,
        "debit_account_id": debit_id,
        "credit_account_id": credit_id,
        "memo": order.memo,
        "request_id": order.request_id,
        "created_at": at,
        "is_pending": order.is_pending,
        "timeout_s": int(order.timeout.total_seconds()) if order.timeout is not None else None,
        "on_timeout": order.on_timeout,
        "category": order.category,
        "hours": order.hours,
        "rate": order.rate,
        "operator": order.operator,
        "reason": order.reason,
        "reverses_id": reverses_id,
        "team_id": order.team_id,
        "community": order.community,
    }


def _entry_rows(
    transfer_id: str, *, debit_id: int, credit_id: int, amount: Decimal, at: datetime
) -> list[dict[str, Any]]:
    """The two entries of ``amount`` moving from one account to the other at ``at``."""
    return [
        {"transfer_id": transfer_id, "account_id": debit_id, "amount": -amount, "posted_at": at},
        {"transfer_id": transfer_id, "account_id": credit_id, "amount": amount, "posted_at": at},
    ]


def _written(session: Session, order: TransferOrder, *, at: datetime, logger: Any = log) -> None:
    """What follows writing a transfer, besides its rows: the timer that ends it if it is
    pending with a timeout, and the log line."""
    if order.is_pending and order.timeout is not None:
        timers.schedule(
            session,
            due_at=at + order.timeout,
            what=TIMEOUT,
            key=_timeout_key(order.id),
            payload={"transfer_id": order.id},
        )
    logger.info(
        "points.transferred",
        transfer_id=order.id,
        kind=order.kind,
        amount=str(order.amount),
        is_pending=order.is_pending,
    )


def write_transfer(
    session: Session,
    *,
    order: TransferOrder,
    debit: Account,
    credit: Account,
    reverses_id: str | None = None,
) -> Transfer:
    """Write a checked order as a new transfer, with its entries unless it is pending; the
    caller holds both accounts' locks and found no transfer under the order's id."""
    _check_available(debit, order.amount)
    now = utcnow()
    row = _transfer_row(
        order, debit_id=debit.id, credit_id=credit.id, at=now, reverses_id=reverses_id
    )
    # Plain INSERTs (the entries in one) rather than the ORM's unit of work, which cost a third
    # of a credit; the transfer is then put in the session as loaded.
    session.execute(insert(_transfers), row)
    if order.is_pending:
        debit.debits_pending += order.amount
        credit.credits_pending += order.amount
    else:
        _move(session, order.id, debit, credit, order.amount, at=now)
    transfer = as_loaded(
        session, Transfer(**row), debit_account=debit, credit_account=credit, resolution=None
    )
    _written(session, order, at=now)
    session.flush()
    if order.kind == EARN and not order.is_pending:
        _announce_earned(
            session,
            order,
            recipient=credit.holder,
            balance=credit.balance,
            amount=order.amount,
            hours=order.hours,
        )
    return transfer


def _move(
    session: Session,
    transfer_id: str,
    debit: Account,
    credit: Account,
    amount: Decimal,
    *,
    at: datetime,
) -> None:
    """Post ``amount`` from ``debit`` to ``credit`` at ``at``: the two entries and both
    balances."""
    session.execute(
        insert(_entries),
        _entry_rows(transfer_id, debit_id=debit.id, credit_id=credit.id, amount=amount, at=at),
    )
    debit.balance -= amount
    credit.balance += amount


def _announce_earned(
    session: Session,
    earned: Transfer | TransferOrder,
    *,
    recipient: str,
    balance: Decimal,
    amount: Decimal,
    hours: Decimal | None,
) -> None:
    """Ask notify to tell the volunteer what an earning credited them for ``hours``, leaving
    them ``balance``."""
    if hours is None or earned.rate is None or earned.request_id is None:
        return
    messaging.notify(
        session,
        notifications.POINTS_CREDITED,
        recipient=recipient,
        request_id=earned.request_id,
        points=amount,
        balance=balance,
        hours=hours,
        category=earned.category,
    )


def hold_for(
    session: Session, transfer_id: str, *holders: str
) -> tuple[dict[str, Account], Transfer | None]:
    """Lock the accounts of ``holders`` (opening any missing) and look for ``transfer_id``
    under the locks, so that of two writers of one id the second finds the first's transfer.
    When an account is missing and the transfer exists already, nothing is opened or locked."""
    held = _held(session, *holders)
    if len(held) < len(set(holders)):
        # Look first, so that asking again for a transfer that exists opens nothing.
        existing = find_transfer(session, transfer_id)
        if existing is not None:
            return {}, existing
        held = lock_accounts(session, *holders)
    return held, find_transfer(session, transfer_id)


def _create(
    session: Session, order: TransferOrder, *, by_hand: bool = False
) -> tuple[Transfer, bool]:
    order = checked(order, by_hand=by_hand)
    held, existing = hold_for(session, order.id, order.debit, order.credit)
    if existing is not None:
        return same_transfer(existing, order), False
    debit, credit = held[order.debit], held[order.credit]
    return write_transfer(session, order=order, debit=debit, credit=credit), True


def create_transfer(session: Session, *, order: TransferOrder, by_hand: bool = False) -> Transfer:
    """Write the transfer ``order`` asks for, or find it written already; ``by_hand`` when
    staff wrote it, whose ids may not start as the service's own do."""
    transfer, _ = _create(session, order, by_hand=by_hand)
    return transfer


@dataclass(frozen=True)
class TransferResult:
    """What became of one order of a batch: created, exists, or why it was refused."""

    id: str
    result: str
    detail: str | None = None

    @property
    def is_ok(self) -> bool:
        return self.result in (CREATED, EXISTS)


# An order of a batch: its id, and the order checked or why it cannot be written.
_Asked = tuple[str, TransferOrder | DomainError]


def create_transfers(session: Session, *, orders: Sequence[TransferOrder]) -> list[TransferResult]:
    """Write a batch of transfers in the caller's transaction, one result per order in order:
    each order stands alone, except a chain of orders marked ``is_linked`` with the order
    after the last of them, which all succeed or all fail.

    The batch meets every rule a transfer meets alone, and costs a few statements whatever its
    size: its accounts are locked once (in id order) and its ids looked for once under the
    locks; what becomes of each order is worked out in memory, order after order, against the
    balances read; then the transfers and their entries are inserted together and each account
    is written once. The accounts a batch opens are those of the transfers it writes."""
    chains: list[list[_Asked]] = []
    chain: list[TransferOrder] = []
    for order in orders:
        chain.append(order)
        if not order.is_linked:
            chains.append([(order.id, _checked_or_why_not(order)) for order in chain])
            chain = []
    valid = [order for each in chains for _, order in each if isinstance(order, TransferOrder)]
    holders = sorted({holder for order in valid for holder in (order.debit, order.credit)})
    ids = sorted({order.id for order in valid})
    opened: set[str] = set()
    while True:
        held = _held(session, *holders) if holders else {}
        settled = _settle(chains, held, _existing_transfers(session, ids) if ids else {})
        needed = {holder for order, _ in settled.writes for holder in (order.debit, order.credit)}
        missing = needed - held.keys()
        if not missing:
            break
        # Opened, then read again under the locks with everything else: an account another
        # transaction opened meanwhile may hold points, or the transfer this one was to write.
        opened |= _open_accounts(session, missing)
    if opened - needed:
        _close_unused(session, held, opened - needed)
    _write_settled(session, settled, held)
    return settled.results + [
        TransferResult(order.id, LINKED_EVENT_CHAIN_OPEN, "the batch ends inside a linked chain")
        for order in chain
    ]


def _checked_or_why_not(order: TransferOrder) -> TransferOrder | DomainError:
    try:
        return checked(order)
    except DomainError as error:
        return error


@dataclass(slots=True)
class _Position:
    """An account as a batch sees it: read under its lock, moved in memory, written once."""

    holder: str
    kind: str
    balance: Decimal = ZERO
    debits_pending: Decimal = ZERO
    credits_pending: Decimal = ZERO

    @property
    def available(self) -> Decimal:
        return self.balance - self.debits_pending


@dataclass(frozen=True)
class _Settled:
    """What a batch comes to: a result per order of its closed chains; the orders to write,
    in order, each with its credit account's balance once it is written; where each account
    ends."""

    results: list[TransferResult]
    writes: list[tuple[TransferOrder, Decimal]]
    positions: dict[str, _Position]


def _settle(
    chains: list[list[_Asked]],
    held: dict[str, Account],
    existing: dict[str, Any],
) -> _Settled:
    """Work out, in memory and in order, what becomes of each order of ``chains`` given the
    accounts ``held`` and the transfers ``existing`` under the batch's ids, as writing them
    one by one would (an account not yet opened holds nothing)."""
    positions = {
        holder: _Position(
            holder, account.kind, account.balance, account.debits_pending, account.credits_pending
        )
        for holder, account in held.items()
    }
    results: list[TransferResult] = []
    writes: list[tuple[TransferOrder, Decimal]] = []
    written: dict[str, TransferOrder] = {}
    for chain in chains:
        # A chain that fails leaves the accounts as they were before it.
        saved = _saved(positions, chain) if len(chain) > 1 else {}
        first_write = len(writes)
        done: list[TransferResult] = []
        try:
            for _, order in chain:
                done.append(_settle_order(order, positions, writes, written, existing))
        except DomainError as error:
            failed = len(done)
            for order, _ in writes[first_write:]:
                del written[order.id]
            del writes[first_write:]
            for holder, position in saved.items():
                if position is None:
                    positions.pop(holder, None)
                else:
                    positions[holder] = position
            own = TransferResult(
                chain[failed][0], getattr(error, "result", error.code), error.detail
            )
            results.extend(
                own if index == failed else TransferResult(transfer_id, LINKED_EVENT_FAILED)
                for index, (transfer_id, _) in enumerate(chain)
            )
            continue
        results.extend(done)
    return _Settled(results, writes, positions)


def _saved(positions: dict[str, _Position], chain: list[_Asked]) -> dict[str, _Position | None]:
    holders = {
        holder
        for _, order in chain
        if isinstance(order, TransferOrder)
        for holder in (order.debit, order.credit)
    }
    return {
        holder: replace(positions[holder]) if holder in positions else None for holder in holders
    }


def _settle_order(
    order: TransferOrder | DomainError,
    positions: dict[str, _Position],
    writes: list[tuple[TransferOrder, Decimal]],
    written: dict[str, TransferOrder],
    existing: dict[str, Any],
) -> TransferResult:
    """What becomes of one order of the batch, the positions moved if it is written; the
    DomainError that refuses it otherwise."""
    if isinstance(order, DomainError):
        raise order
    earlier = written.get(order.id)
    if earlier is not None:
        _check_same(order.id, _given_fields(earlier), _given_fields(order))
        return TransferResult(order.id, EXISTS)
    row = existing.get(order.id)
    if row is not None:
        _check_same(order.id, _stored_fields(row), _given_fields(order))
        return TransferResult(order.id, EXISTS)
    debit = _position(positions, order.debit)
    credit = _position(positions, order.credit)
    _check_available(debit, order.amount)
    if order.is_pending:
        debit.debits_pending += order.amount
        credit.credits_pending += order.amount
    else:
        debit.balance -= order.amount
        credit.balance += order.amount
    written[order.id] = order
    writes.append((order, credit.balance))
    return TransferResult(order.id, CREATED)


def _position(positions: dict[str, _Position], holder: str) -> _Position:
    position = positions.get(holder)
    if position is None:
        position = positions[holder] = _Position(holder, account_kind(holder))
    return position


_debit_accounts = _accounts.alias("debit_account")
_credit_accounts = _accounts.alias("credit_account")
_transfers_named = (
    select(
        _transfers,
        _debit_accounts.c.holder.label("debit"),
        _credit_accounts.c.holder.label("credit"),
    )
    .select_from(
        _transfers.join(
            _debit_accounts, _debit_accounts.c.id == _transfers.c.debit_account_id
        ).join(_credit_accounts, _credit_accounts.c.id == _transfers.c.credit_account_id)
    )
    .where(_transfers.c.id.in_(bindparam("ids", expanding=True)))
)


def _existing_transfers(session: Session, ids: list[str]) -> dict[str, Any]:
    """The transfers under ``ids`` that exist, as rows naming their accounts' holders, by id."""
    return {row.id: row for row in session.execute(_transfers_named, {"ids": ids})}


# An account another transaction opens meanwhile is not opened twice: the insert waits for
# that transaction and leaves its account be.
_OPEN_ONCE = {
    name: dialect.insert(_accounts)
    .on_conflict_do_nothing(index_elements=[_accounts.c.holder])
    .returning(_accounts.c.holder)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _open_accounts(session: Session, holders: set[str]) -> set[str]:
    """Open the accounts of ``holders``, empty; the holders whose accounts this transaction
    opened (another may have opened some first)."""
    now = utcnow()
    rows = [
        {
            "holder": holder,
            "kind": account_kind(holder),
            "balance": ZERO,
            "debits_pending": ZERO,
            "credits_pending": ZERO,
            "created_at": now,
        }
        # In one order: two batches opening the same accounts wait on each other, never deadlock.
        for holder in sorted(holders)
    ]
    statement = _OPEN_ONCE[session.get_bind().dialect.name].values(rows)
    return set(session.scalars(statement))


def _close_unused(session: Session, held: dict[str, Account], holders: set[str]) -> None:
    """Remove the accounts of ``holders`` this batch opened and then wrote nothing to (what
    another transaction wrote meanwhile changed what the batch comes to): a refused order
    opens nothing."""
    session.execute(delete(_accounts).where(_accounts.c.holder.in_(holders)))
    for holder in holders:
        session.expunge(held.pop(holder))


_account_moved = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"))
    .values(
        balance=bindparam("new_balance"),
        debits_pending=bindparam("new_debits_pending"),
        credits_pending=bindparam("new_credits_pending"),
    )
)


def _state(account: Account | _Position) -> dict[str, Decimal]:
    return {
        "balance": account.balance,
        "debits_pending": account.debits_pending,
        "credits_pending": account.credits_pending,
    }


def _write_settled(session: Session, settled: _Settled, held: dict[str, Account]) -> None:
    """Write what a batch came to: its transfers and entries in one INSERT each, each
    account it moved once, then what follows each transfer."""
    if not settled.writes:
        return
    transfer_rows: list[dict[str, Any]] = []
    entry_rows: list[dict[str, Any]] = []
    written_at: list[datetime] = []
    for order, _ in settled.writes:
        now = utcnow()
        debit_id, credit_id = held[order.debit].id, held[order.credit].id
        transfer_rows.append(_transfer_row(order, debit_id=debit_id, credit_id=credit_id, at=now))
        if not order.is_pending:
            entry_rows.extend(
                _entry_rows(
                    order.id, debit_id=debit_id, credit_id=credit_id, amount=order.amount, at=now
                )
            )
        written_at.append(now)
    session.execute(insert(_transfers), transfer_rows)
    if entry_rows:
        session.execute(insert(_entries), entry_rows)
    moved: list[dict[str, Any]] = []
    for holder, position in settled.positions.items():
        account = held.get(holder)  # None: not opened, so the batch wrote nothing to it
        state = _state(position)
        if account is None or _state(account) == state:
            continue
        moved.append({"account_id": account.id, **{f"new_{k}": v for k, v in state.items()}})
        # The UPDATE below writes it: the session is told so, rather than asked to write it.
        for name, value in state.items():
            set_committed_value(account, name, value)
    if moved:
        session.execute(_account_moved, moved)
    logger = log.bind()
    for (order, credit_balance), now in zip(settled.writes, written_at, strict=True):
        _written(session, order, at=now, logger=logger)
        if order.kind == EARN and not order.is_pending:
            _announce_earned(
                session,
                order,
                recipient=order.credit,
                balance=credit_balance,
                amount=order.amount,
                hours=order.hours,
            )


# Pending transfers


def _pending_held(session: Session, transfer_id: str) -> Transfer:
    """A pending transfer with its accounts locked and its resolution, if any, read after."""
    transfer = get_transfer(session, transfer_id)
    if not transfer.is_pending:
        raise Refused(
            "transfer_not_pending", f"Transfer {transfer_id!r} was posted when it was written"
        )
    _held(session, transfer.debit_account.holder, transfer.credit_account.holder)
    # Read again now that the locks are ours: another posting may have committed meanwhile.
    resolution = session.get(TransferResolution, transfer_id, populate_existing=True)
    set_committed_value(transfer, "resolution", resolution)
    return transfer


def _already_ended(transfer: Transfer) -> Refused:
    outcome = transfer.status
    result = (
        "pending_transfer_expired" if outcome == EXPIRED else f"pending_transfer_already_{outcome}"
    )
    return Refused(result, f"Pending transfer {transfer.id!r} was {outcome} already")


def _posted_already(
    transfer: Transfer, resolution: TransferResolution, posted: Decimal, reason: str | None
) -> Transfer:
    """A posting of an ended transfer: the same posting asked again (a retry) is answered with
    the transfer as it is; any other is refused, since a posting is never changed: all of it
    after a part, another part, another reason, or a transfer that was voided or expired."""
    if resolution.outcome != POSTED:
        raise _already_ended(transfer)
    if posted != resolution.amount:
        raise Refused(
            "pending_transfer_already_posted",
            f"Pending transfer {transfer.id!r} was posted already, {resolution.amount} of its "
            f"{transfer.amount} points, not {posted}: a posting is not changed (reverse the "
            "transfer to undo it)",
            field="amount",
        )
    if reason is not None and reason != resolution.reason:
        raise TransferExists(transfer.id, "reason", resolution.reason, reason)
    log.info("points.already_posted", transfer_id=transfer.id)
    return transfer


def _hours_posted(transfer: Transfer, amount: Decimal, hours: Decimal | None) -> Decimal | None:
    """The hours posting ``amount`` of a transfer that prices hours stands for: ``hours``
    where the caller knows them, else all of them or the part ``amount`` pays at its rate."""
    if transfer.hours is None or amount == 0:
        return None
    if hours is not None:
        return hours.quantize(CENT)
    if amount == transfer.amount or not transfer.rate:
        return transfer.hours
    return (amount / transfer.rate).quantize(CENT, rounding=ROUND_HALF_UP)


def _resolve(
    session: Session,
    transfer: Transfer,
    *,
    outcome: str,
    amount: Decimal,
    operator: str | None,
    reason: str | None,
    hours: Decimal | None = None,
) -> None:
    """End a pending transfer: release what it held, post ``amount`` of it (for ``hours``,
    where it prices hours and the caller knows them), record how."""
    now = utcnow()
    debit, credit = transfer.debit_account, transfer.credit_account
    debit.debits_pending -= transfer.amount
    credit.credits_pending -= transfer.amount
    if amount > 0:
        _move(session, transfer.id, debit, credit, amount, at=now)
    resolution = TransferResolution(
        transfer_id=transfer.id,
        outcome=outcome,
        amount=amount,
        operator=operator,
        reason=reason,
        resolved_at=now,
        hours=_hours_posted(transfer, amount, hours),
    )
    session.add(resolution)
    set_committed_value(transfer, "resolution", resolution)
    if transfer.timeout_s is not None:
        timers.cancel(session, _timeout_key(transfer.id))
    session.flush()
    if transfer.kind == EARN and amount > 0:
        credit = transfer.credit_account
        _announce_earned(
            session,
            transfer,
            recipient=credit.holder,
            balance=credit.balance,
            amount=amount,
            hours=resolution.hours,
        )
    log.info("points.resolved", transfer_id=transfer.id, outcome=outcome, amount=str(amount))


def post_pending(
    session: Session,
    *,
    transfer_id: str,
    amount: Decimal | None = None,
    operator: str | None = None,
    reason: str | None = None,
    hours: Decimal | None = None,
) -> Transfer:
    """Post a pending transfer, in whole or (with ``amount``) in part, releasing the rest;
    ``hours`` says what a part of an earning stands for, where the caller knows."""
    if amount is not None:
        check_points(amount, "amount", maximum=MAX_AMOUNT)
    _check_text(reason, "reason")
    transfer = _pending_held(session, transfer_id)
    posted = transfer.amount if amount is None else amount.quantize(CENT)
    if transfer.resolution is not None:
        return _posted_already(transfer, transfer.resolution, posted, reason)
    if posted > transfer.amount:
        raise Refused(
            "exceeds_pending_amount",
            f"Transfer {transfer_id!r} holds {transfer.amount} points; {posted} cannot be posted",
            field="amount",
        )
    _resolve(
        session,
        transfer,
        outcome=POSTED,
        amount=posted,
        operator=operator,
        reason=reason,
        hours=hours,
    )
    return transfer


def void_pending(
    session: Session, *, transfer_id: str, reason: str, operator: str | None = None
) -> Transfer:
    """Void a pending transfer: what it held is released, nothing moves."""
    return _release_pending(
        session, transfer_id=transfer_id, reason=reason, outcome=VOIDED, operator=operator
    )


def expire_pending(session: Session, *, transfer_id: str, reason: str) -> Transfer:
    """End a pending transfer at a deadline that is not its own (that of the set of earnings it
    belongs to) as its own timeout would void it: released, nothing moves, expired."""
    return _release_pending(
        session, transfer_id=transfer_id, reason=reason, outcome=EXPIRED, operator=None
    )


def _release_pending(
    session: Session, *, transfer_id: str, reason: str, outcome: str, operator: str | None
) -> Transfer:
    """End a pending transfer with nothing moved; ended so already, with this reason: as it is."""
    _check_text(reason, "reason", is_required=True)
    transfer = _pending_held(session, transfer_id)
    resolution = transfer.resolution
    if resolution is not None:
        if resolution.outcome != outcome:
            raise _already_ended(transfer)
        if resolution.reason != reason:
            raise TransferExists(transfer_id, "reason", resolution.reason, reason)
        return transfer
    _resolve(session, transfer, outcome=outcome, amount=ZERO, operator=operator, reason=reason)
    return transfer


@timers.handler(TIMEOUT)
def time_out_pending(session: Session, *, key: str, payload: dict[str, Any]) -> None:
    """A pending transfer still unresolved at its timeout is posted or voided as it said."""
    transfer = _pending_held(session, payload["transfer_id"])
    if transfer.resolution is not None:
        return
    if transfer.on_timeout == POST:
        _resolve(
            session,
            transfer,
            outcome=POSTED,
            amount=transfer.amount,
            operator=None,
            reason="Not resolved within its timeout: posted, as it said",
        )
    else:
        _resolve(
            session,
            transfer,
            outcome=EXPIRED,
            amount=ZERO,
            operator=None,
            reason="Not resolved within its timeout: voided, as it said",
        )


# Reversals


def reverse_transfer(
    session: Session, *, transfer_id: str, reason: str, operator: str | None = None
) -> Transfer:
    """Move back what a transfer moved, once, with a reason (see the module's rules)."""
    _check_text(reason, "reason", is_required=True)
    original = get_transfer(session, transfer_id)
    if original.kind == REVERSAL:
        raise Refused(
            "reversal_not_reversible",
            f"{transfer_id!r} is a reversal: correct it with an adjustment, not another reversal",
        )
    held = _held(session, original.debit_account.holder, original.credit_account.holder)
    if original.is_pending:
        original = _pending_held(session, transfer_id)
        if original.resolution is None:
            raise Refused(
                "transfer_pending", f"Transfer {transfer_id!r} is pending: void it instead"
            )
    amount = original.posted_amount
    if amount == 0:
        raise Refused("nothing_posted", f"Transfer {transfer_id!r} moved no points")
    order = checked(
        TransferOrder(
            id=reversal_id(transfer_id),
            kind=REVERSAL,
            debit=original.credit_account.holder,
            credit=original.debit_account.holder,
            amount=amount,
            request_id=original.request_id,
            category=original.category,
            hours=original.hours,
            rate=original.rate,
            operator=operator,
            reason=reason,
            memo=f"Reverses {transfer_id}",
        ),
        is_reversal=True,
    )
    existing = find_transfer(session, order.id)
    if existing is not None:
        return same_transfer(existing, order)
    debit, credit = held[order.debit], held[order.credit]
    if debit.kind != ISSUANCE and debit.available < amount:
        raise Refused(
            "exceeds_available",
            f"{debit.holder} has {debit.available} points available, fewer than the {amount} "
            f"{transfer_id!r} moved: points already spent or held are not taken back. Release "
            "what holds them, or adjust by what can be taken back, with a reason",
            field="amount",
        )
    return write_transfer(session, order=order, debit=debit, credit=credit, reverses_id=transfer_id)
