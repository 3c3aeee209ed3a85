"""The ledger's invariants, checked: by ``python -m services.points audit`` and every night by
the scheduler.

Every transfer is balanced and its entries are what it moved; all balances sum to zero and
every pending debit has its pending credit; each stored balance is the sum of its entries and
each pending total the sum of the pending transfers it holds; no member account is below zero;
every earning names its request and is its hours at its rate; every reversal mirrors what it
reverses; every redemption is as its transfer ended (reserved while it is pending, fulfilled
once it posted the whole price, cancelled once it was voided or expired).

A finding is logged at error level and counted (``redvest_ledger_audit_findings_total``), and
the ledger is left as it is: corrections are new transfers, made by people. Each check is one
statement, so it sees one committed state even while transfers are written; amounts are
compared to the half cent, as SQLite keeps them in floating point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import Numeric, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from services.points.ledger import CENT, points_for
from services.points.models import (
    CANCELLED,
    EARN,
    FULFILLED,
    ISSUANCE,
    POSTED,
    RESERVED,
    REVERSAL,
    Account,
    Entry,
    Redemption,
    Transfer,
    TransferResolution,
)
from shared.metrics import count_ledger_findings

log = structlog.get_logger(__name__)

SERVICE = "points"
# Amounts are whole cents: anything this far from what it should be is a real difference.
HALF_CENT = Decimal("0.005")
_HALF_CENT = literal(HALF_CENT, Numeric(12, 3))


@dataclass(frozen=True)
class Finding:
    """One thing the audit found wrong: which rule, what it is about, and how."""

    check: str
    subject: str
    detail: str


def _points(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


def _posted(transfer: Any, resolution: Any) -> Any:
    """What a transfer moved, as SQL: its amount, or the amount its pending phase posted."""
    return case((transfer.is_pending, func.coalesce(resolution.amount, 0)), else_=transfer.amount)


def _unbalanced_transfers(session: Session) -> Iterator[Finding]:
    total = func.sum(Entry.amount)
    query = select(Entry.transfer_id, total).group_by(Entry.transfer_id)
    for transfer_id, amount in session.execute(query.having(func.abs(total) >= _HALF_CENT)):
        yield Finding("transfer_balanced", transfer_id, f"its entries sum to {_points(amount)}")


def _entries_not_what_was_moved(session: Session) -> Iterator[Finding]:
    posted = _posted(Transfer, TransferResolution)
    credited = func.coalesce(
        func.sum(case((Entry.account_id == Transfer.credit_account_id, Entry.amount))), 0
    )
    debited = func.coalesce(
        func.sum(case((Entry.account_id == Transfer.debit_account_id, Entry.amount))), 0
    )
    elsewhere = func.count(
        case(
            (
                and_(
                    Entry.account_id != Transfer.credit_account_id,
                    Entry.account_id != Transfer.debit_account_id,
                ),
                literal(1),
            )
        )
    )
    query = (
        select(Transfer.id, posted, credited, debited, elsewhere)
        .outerjoin(TransferResolution, TransferResolution.transfer_id == Transfer.id)
        .outerjoin(Entry, Entry.transfer_id == Transfer.id)
        .group_by(Transfer.id, Transfer.is_pending, Transfer.amount, TransferResolution.amount)
        .having(
            or_(
                func.abs(credited - posted) >= _HALF_CENT,
                func.abs(debited + posted) >= _HALF_CENT,
                elsewhere > 0,
            )
        )
    )
    for transfer_id, moved, plus, minus, strays in session.execute(query):
        yield Finding(
            "transfer_entries",
            transfer_id,
            f"it moved {_points(moved)}, its entries credit {_points(plus)} and debit "
            f"{_points(minus)}, and {strays} are on other accounts",
        )


def _ledger_not_zero(session: Session) -> Iterator[Finding]:
    query = select(
        func.coalesce(func.sum(Account.balance), 0),
        func.coalesce(func.sum(Account.debits_pending), 0),
        func.coalesce(func.sum(Account.credits_pending), 0),
    )
    balances, debits, credits = session.execute(query).one()
    if abs(_points(balances)) >= HALF_CENT:
        yield Finding("ledger_sum", "ledger", f"all balances sum to {_points(balances)}, not 0")
    if abs(_points(debits) - _points(credits)) >= HALF_CENT:
        yield Finding(
            "ledger_sum",
            "ledger",
            f"pending debits total {_points(debits)} but pending credits {_points(credits)}",
        )


def _balances_not_their_entries(session: Session) -> Iterator[Finding]:
    sums = (
        select(Entry.account_id, func.sum(Entry.amount).label("total"))
        .group_by(Entry.account_id)
        .subquery()
    )
    entered = func.coalesce(sums.c.total, 0)
    query = (
        select(Account.holder, Account.balance, entered)
        .outerjoin(sums, sums.c.account_id == Account.id)
        .where(func.abs(Account.balance - entered) >= _HALF_CENT)
    )
    for holder, balance, total in session.execute(query):
        yield Finding(
            "balance_entries",
            holder,
            f"its balance is {_points(balance)} but its entries sum to {_points(total)}",
        )


def _pending_not_their_transfers(session: Session) -> Iterator[Finding]:
    held = (
        select(Transfer.debit_account_id, Transfer.credit_account_id, Transfer.amount)
        .outerjoin(TransferResolution, TransferResolution.transfer_id == Transfer.id)
        .where(Transfer.is_pending, TransferResolution.transfer_id.is_(None))
        .subquery()
    )
    debits = (
        select(held.c.debit_account_id.label("account_id"), func.sum(held.c.amount).label("total"))
        .group_by(held.c.debit_account_id)
        .subquery()
    )
    credits = (
        select(held.c.credit_account_id.label("account_id"), func.sum(held.c.amount).label("total"))
        .group_by(held.c.credit_account_id)
        .subquery()
    )
    owed, promised = func.coalesce(debits.c.total, 0), func.coalesce(credits.c.total, 0)
    query = (
        select(Account.holder, Account.debits_pending, owed, Account.credits_pending, promised)
        .outerjoin(debits, debits.c.account_id == Account.id)
        .outerjoin(credits, credits.c.account_id == Account.id)
        .where(
            or_(
                func.abs(Account.debits_pending - owed) >= _HALF_CENT,
                func.abs(Account.credits_pending - promised) >= _HALF_CENT,
            )
        )
    )
    for holder, stored_debits, debits_held, stored_credits, credits_held in session.execute(query):
        yield Finding(
            "pending_transfers",
            holder,
            f"it holds {_points(stored_debits)} in pending debits and {_points(stored_credits)} "
            f"in pending credits; its pending transfers hold {_points(debits_held)} and "
            f"{_points(credits_held)}",
        )


def _members_below_zero(session: Session) -> Iterator[Finding]:
    available = Account.balance - Account.debits_pending
    query = select(Account.holder, available).where(
        Account.kind != ISSUANCE, available <= -_HALF_CENT
    )
    for holder, amount in session.execute(query):
        yield Finding("not_negative", holder, f"it has {_points(amount)} points available")


def _earnings_not_traceable(session: Session) -> Iterator[Finding]:
    query = select(
        Transfer.id, Transfer.amount, Transfer.request_id, Transfer.hours, Transfer.rate
    ).where(Transfer.kind == EARN)
    for transfer_id, amount, request_id, hours, rate in session.execute(query):
        if request_id is None or hours is None or rate is None:
            yield Finding(
                "earning_traceable",
                transfer_id,
                "it does not name its request, hours and rate",
            )
        elif _points(amount) != points_for(_points(hours), _points(rate)):
            yield Finding(
                "earning_traceable",
                transfer_id,
                f"it is {_points(amount)} points, not {_points(hours)} h at {_points(rate)}",
            )


def _reversals_not_mirrors(session: Session) -> Iterator[Finding]:
    original = aliased(Transfer)
    resolution = aliased(TransferResolution)
    query = (
        select(Transfer.id, Transfer.amount, _posted(original, resolution))
        .outerjoin(original, original.id == Transfer.reverses_id)
        .outerjoin(resolution, resolution.transfer_id == original.id)
        .where(
            Transfer.kind == REVERSAL,
            or_(
                original.id.is_(None),
                Transfer.debit_account_id != original.credit_account_id,
                Transfer.credit_account_id != original.debit_account_id,
                func.abs(Transfer.amount - _posted(original, resolution)) >= _HALF_CENT,
            ),
        )
    )
    for transfer_id, amount, moved in session.execute(query):
        yield Finding(
            "reversal_mirrors",
            transfer_id,
            f"it moves {_points(amount)} back, but what it reverses moved {_points(moved)} "
            "the other way, or it reverses nothing",
        )


def _redemptions_not_their_transfers(session: Session) -> Iterator[Finding]:
    """A redemption fulfilled while its transfer posted only a part of its price (or nothing),
    still reserved after its transfer ended, or cancelled though its transfer posted: the item
    and the points no longer go together."""
    outcome, posted = TransferResolution.outcome, TransferResolution.amount
    query = (
        select(Redemption.id, Redemption.status, Redemption.points, outcome, posted)
        .outerjoin(TransferResolution, TransferResolution.transfer_id == Redemption.transfer_id)
        .where(
            or_(
                and_(Redemption.status == RESERVED, outcome.is_not(None)),
                and_(
                    Redemption.status == FULFILLED,
                    or_(
                        outcome.is_(None),
                        outcome != POSTED,
                        func.abs(posted - Redemption.points) >= _HALF_CENT,
                    ),
                ),
                and_(Redemption.status == CANCELLED, or_(outcome.is_(None), outcome == POSTED)),
            )
        )
    )
    for redemption_id, status, points, ended, amount in session.execute(query):
        how = "is still pending" if ended is None else f"was {ended}, {_points(amount)} posted"
        yield Finding(
            "redemption_paid",
            redemption_id,
            f"it is {status}, for {_points(points)} points, but its transfer {how}",
        )


CHECKS: tuple[Callable[[Session], Iterator[Finding]], ...] = (
    _unbalanced_transfers,
    _entries_not_what_was_moved,
    _ledger_not_zero,
    _balances_not_their_entries,
    _pending_not_their_transfers,
    _members_below_zero,
    _earnings_not_traceable,
    _reversals_not_mirrors,
    _redemptions_not_their_transfers,
)


def audit_ledger(session: Session) -> list[Finding]:
    """Check every invariant of the ledger; each finding is logged at error level and
    counted, and nothing is changed."""
    findings = [finding for check in CHECKS for finding in check(session)]
    for finding in findings:
        log.error(
            "points.audit_finding",
            check=finding.check,
            subject=finding.subject,
            detail=finding.detail,
        )
    for check, count in Counter(finding.check for finding in findings).items():
        count_ledger_findings(SERVICE, check=check, findings=count)
    log.info("points.audited", findings=len(findings))
    return findings


def nightly_audit(session: Session) -> dict[str, int]:
    """The scheduler's nightly job: the audit, summed up by check for its run's record."""
    findings = audit_ledger(session)
    return {"findings": len(findings), **Counter(finding.check for finding in findings)}
