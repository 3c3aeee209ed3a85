"""Statements: what an account held when a period began, every entry posted in it with the
balance after each, and what it held when the period ended.

An entry belongs to the period it was posted in: a transfer of one phase as it was written, a
pending one as it was posted. The opening balance is the sum of the account's entries posted
before the period, which is the closing balance of the day before it; the closing balance is
the opening balance and the period's entries. All of it is read from one snapshot of the
ledger, so a transfer committed while a statement is read is either wholly in it or not at
all, and the balances always add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from services.points.ledger import CENT, get_account
from services.points.models import Account, Entry, Transfer
from services.points.periods import Period, period
from shared.errors import Invalid

# Beyond this many entries a statement is asked for a shorter period.
MAX_LINES = 10_000


@dataclass(frozen=True)
class StatementLine:
    """One entry of a statement, and the account's balance once it was posted."""

    posted_at: datetime
    transfer_id: str
    kind: str
    counterparty: str
    amount: Decimal
    balance: Decimal
    memo: str
    request_id: str | None


@dataclass(frozen=True)
class Statement:
    """An account's movements over a period, with the balances that frame them."""

    holder: str
    kind: str
    period: Period
    opening_balance: Decimal
    closing_balance: Decimal
    credits: Decimal
    debits: Decimal
    lines: list[StatementLine]


def read_one_snapshot(session: Session) -> None:
    """Make every statement ``session`` runs from now on read the ledger as it was at its
    first: on PostgreSQL a repeatable-read transaction; SQLite's read transactions already
    keep the snapshot of their first read. Call it before the session has read anything."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )


def _points(value: object) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


def statement_of(
    session: Session, *, holder: str, first: date, last: date, zone: str = "UTC"
) -> Statement:
    """The statement of ``holder``'s account for the days ``first`` to ``last`` in ``zone``."""
    within = period(first=first, last=last, zone=zone)
    read_one_snapshot(session)
    account = get_account(session, holder)
    starts, ends = within.starts, within.ends
    opening = _points(
        session.scalar(
            select(func.sum(Entry.amount)).where(
                Entry.account_id == account.id, Entry.posted_at < starts
            )
        )
    )
    other = aliased(Account)
    other_id = case(
        (Transfer.debit_account_id == account.id, Transfer.credit_account_id),
        else_=Transfer.debit_account_id,
    )
    rows = session.execute(
        select(
            Entry.posted_at,
            Entry.amount,
            Transfer.id,
            Transfer.kind,
            Transfer.memo,
            Transfer.request_id,
            other.holder,
        )
        .join(Transfer, Transfer.id == Entry.transfer_id)
        .join(other, other.id == other_id)
        .where(Entry.account_id == account.id, Entry.posted_at >= starts, Entry.posted_at < ends)
        .order_by(Entry.posted_at, Entry.id)
        .limit(MAX_LINES + 1)
    ).all()
    if len(rows) > MAX_LINES:
        raise Invalid(
            f"{holder} has more than {MAX_LINES} entries from {first} to {last}: ask for a "
            "shorter period",
            field="to",
        )
    lines, balance = [], opening
    credits = debits = Decimal("0.00")
    for posted_at, amount, transfer_id, kind, memo, request_id, counterparty in rows:
        amount = _points(amount)
        balance += amount
        if amount > 0:
            credits += amount
        else:
            debits -= amount
        lines.append(
            StatementLine(
                posted_at=posted_at,
                transfer_id=transfer_id,
                kind=kind,
                counterparty=counterparty,
                amount=amount,
                balance=balance,
                memo=memo or "",
                request_id=request_id,
            )
        )
    return Statement(
        holder=account.holder,
        kind=account.kind,
        period=within,
        opening_balance=opening,
        closing_balance=balance,
        credits=credits,
        debits=debits,
        lines=lines,
    )
