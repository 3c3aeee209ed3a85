"""The ledger: balanced transfers never edited, two phases, linked batches, reversals, and a
balance no member can overdraw, even all at once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from services.points import ledger
from services.points.commands import EXTRA_COMMANDS
from services.points.config import runtime
from services.points.ledger import (
    ISSUANCE_HOLDER,
    POOL_HOLDER,
    SINK_HOLDER,
    Refused,
    TransferExists,
)
from services.points.models import (
    DONATE,
    EARN,
    GIFT,
    POST,
    REDEEM,
    Account,
    Entry,
    Transfer,
    TransferResolution,
    timers,
)
from services.points.tests.builders import (
    account,
    all_at_once,
    audit_findings,
    balance,
    entries_total,
    fire_due_timers,
    funded,
    order,
    rates,
    refused,
    stored,
    transfer,
    transfers,
)
from shared import clock
from shared.cli import run_cli
from shared.errors import Invalid, NotFound

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


def in_transaction(call: Callable[..., Any], **kwargs: Any) -> Any:
    with runtime().db.transaction() as session:
        return call(session, **kwargs)


def row_count(model: Any) -> int:
    with runtime().db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# Accounts


def test_accounts_are_opened_on_first_use_with_the_kind_their_holder_names() -> None:
    funded("volunteer:v-7", 10)
    transfer(kind=DONATE, debit="volunteer:v-7", credit=POOL_HOLDER, amount="4", reason=None)
    transfer(kind=GIFT, debit=POOL_HOLDER, credit="household:h-501", amount="1", reason="Paths")

    with runtime().db.read() as session:
        kinds = {a.holder: a.kind for a in session.scalars(select(Account))}
    assert kinds == {
        ISSUANCE_HOLDER: "issuance",
        "volunteer:v-7": "holder",
        POOL_HOLDER: "pool",
        "household:h-501": "holder",
    }
    assert (balance("volunteer:v-7"), balance(POOL_HOLDER)) == (Decimal(6), Decimal(3))


@pytest.mark.parametrize("holder", ["bank:vault", "resident:r-1", "volunteer:", "volunteer:a b"])
def test_a_holder_that_names_no_account_is_refused_and_nothing_is_opened(holder: str) -> None:
    error = refused(lambda: funded(holder, 1))

    assert isinstance(error, Invalid)
    assert transfers() == [] and row_count(Account) == 0


def test_the_database_refuses_a_member_account_below_zero_whatever_the_code_does() -> None:
    funded("volunteer:v-7", 15)

    for change in ({"balance": Decimal(-1)}, {"debits_pending": Decimal(16)}):
        with pytest.raises(IntegrityError), runtime().db.transaction() as session:
            session.execute(update(Account).where(Account.holder == "volunteer:v-7").values(change))

    assert account("volunteer:v-7").available == Decimal(15)


def test_only_the_issuance_account_goes_below_zero() -> None:
    funded("volunteer:v-7", 15)

    assert balance(ISSUANCE_HOLDER) == Decimal(-15)
    error = refused(lambda: transfer(kind=GIFT, debit=POOL_HOLDER, credit="volunteer:v-8"))
    assert isinstance(error, Refused) and error.result == "exceeds_available"


# Transfers


def test_a_transfer_is_two_entries_that_sum_to_zero_and_carries_its_metadata() -> None:
    written = transfer(
        id="adjust:v-7:opening",
        credit="volunteer:v-7",
        amount="22.50",
        request_id="req-1",
        category="mediation",
        hours=Decimal("1.5"),
        rate=Decimal(15),
        reason="Points kept on paper before the ledger",
    )

    with runtime().db.read() as session:
        lines = {e.account_id: e.amount for e in session.scalars(select(Entry))}
    assert lines == {
        written.debit_account_id: Decimal("-22.50"),
        written.credit_account_id: Decimal("22.50"),
    }
    kept = stored("adjust:v-7:opening")
    assert (kept.status, kept.posted_amount, kept.operator) == (
        "posted",
        Decimal("22.50"),
        "staff:duty-officer",
    )
    assert (kept.request_id, kept.category, kept.hours, kept.rate) == (
        "req-1",
        "mediation",
        Decimal("1.50"),
        Decimal("15.00"),
    )
    assert kept.reason == "Points kept on paper before the ledger"
    assert entries_total() == 0
    assert balance("volunteer:v-7") == entries_total("volunteer:v-7") == Decimal("22.50")


def test_asking_again_for_a_transfer_with_the_same_fields_finds_it_and_changes_nothing() -> None:
    first = transfer(id="gift-1", amount="10")

    again = transfer(id="gift-1", amount="10.00")

    assert again.id == first.id
    assert len(transfers()) == 1
    assert balance("volunteer:v-7") == Decimal(10)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "11"}, "amount"),
        ({"credit": "volunteer:v-8"}, "credit"),
        ({"reason": "Another reason"}, "reason"),
        ({"is_pending": True}, "pending"),
        ({"request_id": "req-9"}, "request_id"),
        ({"operator": "staff:another"}, "operator"),
    ],
)
def test_the_same_id_with_a_field_different_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    transfer(id="gift-1", amount="10")

    error = refused(lambda: transfer(**{"id": "gift-1", "amount": "10", **change}))

    assert isinstance(error, TransferExists)
    assert (error.result, error.status, error.extra) == (
        f"exists_with_different_{field}",
        409,
        {"field": field},
    )
    assert len(transfers()) == 1
    assert (balance("volunteer:v-7"), balance("volunteer:v-8")) == (Decimal(10), None)


def test_a_member_cannot_spend_more_than_is_available_and_nothing_changes() -> None:
    funded("volunteer:v-7", 10)

    error = refused(
        lambda: transfer(kind=GIFT, debit="volunteer:v-7", credit="volunteer:v-8", amount="10.01")
    )

    assert isinstance(error, Refused) and error.result == "exceeds_available"
    assert "volunteer:v-7 has 10.00 points available; 10.01 are needed" in error.detail
    assert (len(transfers()), balance("volunteer:v-8")) == (1, None)


@pytest.mark.parametrize(
    ("fields", "at_fault"),
    [
        ({"kind": EARN, "reason": None}, "request_id"),
        ({"kind": GIFT, "debit": ISSUANCE_HOLDER}, "kind"),
        ({"kind": DONATE, "debit": "volunteer:v-7", "credit": SINK_HOLDER}, "kind"),
        ({"kind": "reversal"}, "kind"),
        ({"kind": "bonus"}, "kind"),
        ({"reason": None}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"amount": "0"}, "amount"),
        ({"amount": "0.001"}, "amount"),
        ({"amount": "1000000.01"}, "amount"),
        ({"credit": ISSUANCE_HOLDER}, "credit"),
        ({"timeout": timedelta(hours=1)}, "timeout"),
        ({"is_pending": True, "timeout": timedelta(days=400)}, "timeout"),
        ({"operator": "somebody"}, "operator"),
        ({"memo": "x" * 501}, "memo"),
    ],
)
def test_an_order_the_ledger_cannot_write_is_invalid_and_changes_nothing(
    fields: dict[str, Any], at_fault: str
) -> None:
    error = refused(lambda: transfer(**fields))

    assert isinstance(error, Invalid)
    assert error.extra.get("field") == at_fault
    assert transfers() == [] and row_count(Account) == 0


@pytest.mark.parametrize("transfer_id", ["earn:req-1", "Earn.2:req-1", "redeem:r-1", "gift:g-1"])
def test_a_transfer_written_by_hand_under_an_id_the_service_gives_is_invalid(
    transfer_id: str,
) -> None:
    written = order(id=transfer_id)

    error = refused(lambda: in_transaction(ledger.create_transfer, order=written, by_hand=True))

    assert isinstance(error, Invalid) and error.extra.get("field") == "id"
    assert "are reserved" in error.detail
    assert transfers() == [] and row_count(Account) == 0


# Two phases


def held(holder: str) -> tuple[Decimal, Decimal, Decimal]:
    """(balance, pending debits, pending credits)."""
    found = account(holder)
    return found.balance, found.debits_pending, found.credits_pending


def test_a_pending_transfer_holds_its_amount_and_moves_nothing() -> None:
    funded("volunteer:v-7", 10)

    pending = transfer(
        kind=REDEEM,
        debit="volunteer:v-7",
        credit=SINK_HOLDER,
        amount="6",
        is_pending=True,
        reason=None,
    )

    assert (pending.status, pending.posted_amount) == ("pending", Decimal(0))
    assert held("volunteer:v-7") == (Decimal(10), Decimal(6), Decimal(0))
    assert held(SINK_HOLDER) == (Decimal(0), Decimal(0), Decimal(6))
    assert account("volunteer:v-7").available == Decimal(4)
    assert entries_total(SINK_HOLDER) == 0
    error = refused(
        lambda: transfer(
            kind=GIFT, debit="volunteer:v-7", credit="volunteer:v-8", amount="5", reason=None
        )
    )
    assert isinstance(error, Refused) and error.result == "exceeds_available"


def redemption(amount: str = "6", **fields: Any) -> Transfer:
    funded("volunteer:v-7", 10)
    return transfer(
        kind=REDEEM,
        debit="volunteer:v-7",
        credit=SINK_HOLDER,
        amount=amount,
        is_pending=True,
        reason=None,
        **fields,
    )


def test_posting_a_pending_transfer_moves_it_in_whole() -> None:
    pending = redemption("6")

    posted = in_transaction(ledger.post_pending, transfer_id=pending.id, operator="staff:x")

    assert (posted.status, posted.posted_amount) == ("posted", Decimal(6))
    assert held("volunteer:v-7") == (Decimal(4), Decimal(0), Decimal(0))
    assert held(SINK_HOLDER) == (Decimal(6), Decimal(0), Decimal(0))
    assert entries_total(SINK_HOLDER) == Decimal(6)
    assert audit_findings() == []


def test_posting_part_of_a_pending_transfer_releases_the_rest() -> None:
    pending = redemption("6")

    in_transaction(ledger.post_pending, transfer_id=pending.id, amount=Decimal("2.50"))

    assert stored(pending.id).posted_amount == Decimal("2.50")
    assert held("volunteer:v-7") == (Decimal("7.50"), Decimal(0), Decimal(0))
    assert audit_findings() == []


def test_posting_again_as_before_changes_nothing_and_otherwise_is_refused() -> None:
    pending = redemption("6")
    in_transaction(ledger.post_pending, transfer_id=pending.id, amount=Decimal(2))

    again = in_transaction(ledger.post_pending, transfer_id=pending.id, amount=Decimal(2))
    other = refused(
        lambda: in_transaction(ledger.post_pending, transfer_id=pending.id, amount=Decimal(3))
    )
    void = refused(lambda: in_transaction(ledger.void_pending, transfer_id=pending.id, reason="No"))
    # Posting all of it is not what was done: 2 of 6 were posted.
    whole = refused(lambda: in_transaction(ledger.post_pending, transfer_id=pending.id))

    assert again.posted_amount == Decimal(2)
    assert isinstance(other, Refused) and other.result == "pending_transfer_already_posted"
    assert isinstance(whole, Refused) and whole.result == "pending_transfer_already_posted"
    assert isinstance(void, Refused) and void.result == "pending_transfer_already_posted"
    assert held("volunteer:v-7") == (Decimal(8), Decimal(0), Decimal(0))


def test_posting_more_than_a_pending_transfer_holds_is_refused() -> None:
    pending = redemption("6")

    error = refused(
        lambda: in_transaction(ledger.post_pending, transfer_id=pending.id, amount=Decimal("6.01"))
    )

    assert isinstance(error, Refused) and error.result == "exceeds_pending_amount"
    assert stored(pending.id).status == "pending"


def test_voiding_a_pending_transfer_releases_it_and_it_can_no_longer_be_posted() -> None:
    pending = redemption("6")

    voided = in_transaction(ledger.void_pending, transfer_id=pending.id, reason="Out of rice")
    again = in_transaction(ledger.void_pending, transfer_id=pending.id, reason="Out of rice")
    post = refused(lambda: in_transaction(ledger.post_pending, transfer_id=pending.id))
    other = refused(
        lambda: in_transaction(ledger.void_pending, transfer_id=pending.id, reason="Other")
    )

    assert voided.status == again.status == "voided"
    assert isinstance(post, Refused) and post.result == "pending_transfer_already_voided"
    assert isinstance(other, TransferExists) and other.result == "exists_with_different_reason"
    assert held("volunteer:v-7") == (Decimal(10), Decimal(0), Decimal(0))
    assert held(SINK_HOLDER) == (Decimal(0), Decimal(0), Decimal(0))
    assert audit_findings() == []


def test_a_transfer_posted_when_written_cannot_be_posted_or_voided_again() -> None:
    written = funded("volunteer:v-7", 10)

    for call in (ledger.post_pending, ledger.void_pending):
        error = refused(lambda c=call: in_transaction(c, transfer_id=written.id, reason="x"))
        assert isinstance(error, Refused) and error.result == "transfer_not_pending"
    error = refused(lambda: in_transaction(ledger.post_pending, transfer_id="nothing"))
    assert isinstance(error, NotFound)


@pytest.mark.usefixtures("frozen")
def test_a_pending_transfer_unresolved_at_its_timeout_is_voided_by_default() -> None:
    pending = redemption("6", timeout=timedelta(hours=2))

    clock.advance(timedelta(hours=1, minutes=59))
    assert fire_due_timers() == []
    clock.advance(timedelta(minutes=1))
    (firing,) = fire_due_timers()

    assert firing.outcome == "fired"
    ended = stored(pending.id)
    assert (ended.status, ended.on_timeout, ended.timeout_s) == ("expired", "void", 7200)
    assert ended.resolution is not None and ended.resolution.resolved_at == T0 + timedelta(hours=2)
    assert held("volunteer:v-7") == (Decimal(10), Decimal(0), Decimal(0))
    assert audit_findings() == []


@pytest.mark.usefixtures("frozen")
def test_a_pending_transfer_that_says_so_is_posted_at_its_timeout() -> None:
    pending = redemption("6", timeout=timedelta(days=3), on_timeout=POST)

    clock.advance(timedelta(days=3))
    fire_due_timers()

    assert stored(pending.id).status == "posted"
    assert held("volunteer:v-7") == (Decimal(4), Decimal(0), Decimal(0))


@pytest.mark.usefixtures("frozen")
def test_a_pending_transfer_resolved_before_its_timeout_leaves_no_timer() -> None:
    pending = redemption("6", timeout=timedelta(hours=2))
    in_transaction(ledger.post_pending, transfer_id=pending.id)

    clock.advance(timedelta(hours=3))

    assert fire_due_timers() == []
    with runtime().db.read() as session:
        assert timers.get(session, f"transfer:{pending.id}:timeout") is None
    assert stored(pending.id).status == "posted"


def test_concurrent_postings_of_one_pending_transfer_post_it_once() -> None:
    pending = redemption("6")
    outcomes = all_at_once(
        [lambda: in_transaction(ledger.post_pending, transfer_id=pending.id)] * 8
    )

    assert all(isinstance(outcome, Transfer) for outcome in outcomes), outcomes
    assert row_count(TransferResolution) == 1
    assert held("volunteer:v-7") == (Decimal(4), Decimal(0), Decimal(0))
    assert audit_findings() == []


# Batches and linked transfers


def test_a_batch_writes_each_transfer_and_says_what_became_of_each() -> None:
    funded("volunteer:v-7", 5)
    orders = [
        order(id="b-1", amount="1"),
        order(id="b-1", amount="1"),
        order(id="b-2", kind=GIFT, debit="volunteer:v-8", credit="volunteer:v-7", reason=None),
        order(id="b-3", amount="3"),
    ]

    results = in_transaction(ledger.create_transfers, orders=orders)

    assert [(r.id, r.result) for r in results] == [
        ("b-1", "created"),
        ("b-1", "exists"),
        ("b-2", "exceeds_available"),
        ("b-3", "created"),
    ]
    assert balance("volunteer:v-7") == Decimal(9)
    assert balance("volunteer:v-8") is None  # the refused order opened nothing either


def test_linked_transfers_succeed_or_fail_together() -> None:
    funded("volunteer:v-7", 5)
    gift = {"kind": GIFT, "debit": "volunteer:v-7", "reason": None}
    orders = [
        order(id="l-1", credit="volunteer:v-8", amount="3", is_linked=True, **gift),
        order(id="l-2", credit="volunteer:v-9", amount="3", is_linked=True, **gift),
        order(
            id="l-3",
            credit=POOL_HOLDER,
            kind=DONATE,
            debit="volunteer:v-7",
            amount="1",
            reason=None,
        ),
        order(id="alone", credit="volunteer:v-8", amount="2", **gift),
    ]

    results = in_transaction(ledger.create_transfers, orders=orders)

    assert [(r.id, r.result) for r in results] == [
        ("l-1", "linked_event_failed"),
        ("l-2", "exceeds_available"),
        ("l-3", "linked_event_failed"),
        ("alone", "created"),
    ]
    assert {t.id for t in transfers()} == {transfers()[0].id, "alone"}
    assert (balance("volunteer:v-7"), balance("volunteer:v-8")) == (Decimal(3), Decimal(2))
    assert (balance("volunteer:v-9"), balance(POOL_HOLDER)) == (None, None)


def test_a_batch_ending_inside_a_linked_chain_writes_none_of_the_chain() -> None:
    results = in_transaction(ledger.create_transfers, orders=[order(id="c-1", is_linked=True)])

    assert [(r.id, r.result) for r in results] == [("c-1", "linked_event_chain_open")]
    assert transfers() == []


# Reversals


def test_a_reversal_moves_back_what_a_transfer_moved_once_with_its_reason() -> None:
    rates(mediation=12)
    first = funded("volunteer:v-7", 10)

    reversal = in_transaction(
        ledger.reverse_transfer, transfer_id=first.id, reason="Wrong volunteer", operator="staff:x"
    )
    again = in_transaction(
        ledger.reverse_transfer, transfer_id=first.id, reason="Wrong volunteer", operator="staff:x"
    )
    other = refused(
        lambda: in_transaction(
            ledger.reverse_transfer, transfer_id=first.id, reason="Other", operator="staff:x"
        )
    )

    assert (reversal.id, reversal.kind, reversal.reverses_id) == (
        f"reversal:{first.id}",
        "reversal",
        first.id,
    )
    assert (reversal.debit, reversal.credit, reversal.amount) == (
        "volunteer:v-7",
        ISSUANCE_HOLDER,
        Decimal(10),
    )
    assert again.id == reversal.id
    assert isinstance(other, TransferExists) and other.result == "exists_with_different_reason"
    assert (balance("volunteer:v-7"), balance(ISSUANCE_HOLDER)) == (Decimal(0), Decimal(0))
    assert audit_findings() == []


def test_points_already_spent_are_not_taken_back_and_nothing_changes() -> None:
    earned = funded("volunteer:v-7", 10)
    transfer(kind=GIFT, debit="volunteer:v-7", credit="volunteer:v-8", amount="4", reason=None)

    error = refused(
        lambda: in_transaction(ledger.reverse_transfer, transfer_id=earned.id, reason="Mistake")
    )

    assert isinstance(error, Refused) and error.result == "exceeds_available"
    assert "6.00 points available, fewer than the 10.00" in error.detail
    assert "not taken back" in error.detail
    assert len(transfers()) == 2 and balance("volunteer:v-7") == Decimal(6)


def test_points_held_by_a_pending_transfer_are_not_taken_back_either() -> None:
    pending = redemption("6")
    (funding,) = [t for t in transfers() if t.id != pending.id]

    error = refused(
        lambda: in_transaction(ledger.reverse_transfer, transfer_id=funding.id, reason="x")
    )

    assert isinstance(error, Refused) and error.result == "exceeds_available"


def test_a_partly_posted_transfer_is_reversed_by_what_it_posted() -> None:
    pending = redemption("6")
    in_transaction(ledger.post_pending, transfer_id=pending.id, amount=Decimal(2))

    reversal = in_transaction(ledger.reverse_transfer, transfer_id=pending.id, reason="Returned")

    assert (reversal.debit, reversal.credit, reversal.amount) == (
        SINK_HOLDER,
        "volunteer:v-7",
        Decimal(2),
    )
    assert balance("volunteer:v-7") == Decimal(10)
    assert audit_findings() == []


@pytest.mark.parametrize("state", ["pending", "voided", "a reversal"])
def test_what_moved_nothing_and_reversals_are_not_reversed(state: str) -> None:
    pending = redemption("6")
    target = pending.id
    if state == "voided":
        in_transaction(ledger.void_pending, transfer_id=pending.id, reason="No stock")
    if state == "a reversal":
        target = _reversed_funding()

    error = refused(lambda: in_transaction(ledger.reverse_transfer, transfer_id=target, reason="x"))

    results = {
        "pending": "transfer_pending",
        "voided": "nothing_posted",
        "a reversal": "reversal_not_reversible",
    }
    assert isinstance(error, Refused) and error.result == results[state]


def _reversed_funding() -> str:
    funding = funded("volunteer:v-9", 3)
    return str(in_transaction(ledger.reverse_transfer, transfer_id=funding.id, reason="x").id)


# Never overdrawn, however many at once


@pytest.mark.parametrize("is_pending", [False, True], ids=["posted", "pending"])
def test_fifty_debits_at_once_that_would_overdraw_never_do(is_pending: bool) -> None:
    funded("volunteer:v-7", 100)
    debit = {"kind": GIFT, "debit": "volunteer:v-7", "reason": None, "is_pending": is_pending}
    calls = [
        (lambda n=n: transfer(id=f"spend-{n}", credit=f"volunteer:n-{n % 5}", amount="7", **debit))
        for n in range(50)
    ]

    outcomes = all_at_once(calls)

    written = [o for o in outcomes if isinstance(o, Transfer)]
    refusals = [o for o in outcomes if isinstance(o, Refused)]
    assert len(written) + len(refusals) == 50, [
        o for o in outcomes if not isinstance(o, Transfer | Refused)
    ]
    assert len(written) == 14  # 14 x 7 = 98 of the 100
    assert {r.result for r in refusals} == {"exceeds_available"}
    assert account("volunteer:v-7").available == Decimal(2)
    assert audit_findings() == []


# Any sequence keeps every invariant


@dataclass
class Model:
    """What the ledger should hold, kept by the test in plain numbers."""

    balances: dict[str, Decimal] = field(default_factory=dict)
    pending_debits: dict[str, Decimal] = field(default_factory=dict)
    pending_credits: dict[str, Decimal] = field(default_factory=dict)
    # id -> (debit, credit, amount) of pending transfers not yet ended.
    pending: dict[str, tuple[str, str, Decimal]] = field(default_factory=dict)
    # id -> (debit, credit, amount moved) of transfers that moved points and are not reversed.
    moved: dict[str, tuple[str, str, Decimal]] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)

    def available(self, holder: str) -> Decimal:
        return self.balances.get(holder, Decimal(0)) - self.pending_debits.get(holder, Decimal(0))

    def move(self, debit: str, credit: str, amount: Decimal) -> None:
        self.balances[debit] = self.balances.get(debit, Decimal(0)) - amount
        self.balances[credit] = self.balances.get(credit, Decimal(0)) + amount

    def hold(self, debit: str, credit: str, amount: Decimal) -> None:
        self.pending_debits[debit] = self.pending_debits.get(debit, Decimal(0)) + amount
        self.pending_credits[credit] = self.pending_credits.get(credit, Decimal(0)) + amount


MEMBERS = ("a", "b", "c")
FUNDS = st.decimals(min_value=Decimal(10), max_value=Decimal(100), places=2)
SPENT = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(15), places=2)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("fund"), st.sampled_from(MEMBERS), FUNDS),
        st.tuples(st.just("gift"), st.sampled_from(MEMBERS), st.sampled_from(MEMBERS), SPENT),
        st.tuples(st.just("hold"), st.sampled_from(MEMBERS), st.sampled_from(MEMBERS), SPENT),
        # Post all of it, or a percentage of it: over 100 % is more than it holds.
        st.tuples(st.just("post"), st.integers(0, 9), st.one_of(st.none(), st.integers(1, 110))),
        st.tuples(st.just("void"), st.integers(0, 9)),
        st.tuples(st.just("reverse"), st.integers(0, 20)),
    ),
    min_size=2,
    max_size=20,
)


def _apply(model: Model, run: str, operation: tuple[Any, ...]) -> None:
    """Carry out one operation against the ledger and the model; the ledger must refuse
    exactly what the model says it must."""
    kind, *rest = operation
    name = f"{run}-{len(model.written)}"
    if kind == "fund":
        member, amount = rest
        funded(f"volunteer:{run}-{member}", amount)
        model.move(ISSUANCE_HOLDER, f"volunteer:{run}-{member}", amount)
        model.moved[transfers()[-1].id] = (ISSUANCE_HOLDER, f"volunteer:{run}-{member}", amount)
    elif kind in ("gift", "hold"):
        source, target, amount = rest
        debit = f"volunteer:{run}-{source}"
        credit = f"volunteer:{run}-{target}" if source != target else SINK_HOLDER
        code = GIFT if credit != SINK_HOLDER else REDEEM
        call = lambda: transfer(  # noqa: E731
            id=name,
            kind=code,
            debit=debit,
            credit=credit,
            amount=amount,
            is_pending=kind == "hold",
            reason=None,
        )
        if model.available(debit) < amount:
            error = refused(call)
            assert isinstance(error, Refused) and error.result == "exceeds_available"
            return
        call()
        if kind == "hold":
            model.hold(debit, credit, amount)
            model.pending[name] = (debit, credit, amount)
        else:
            model.move(debit, credit, amount)
            model.moved[name] = (debit, credit, amount)
    elif kind in ("post", "void"):
        if not model.pending:
            return
        chosen = sorted(model.pending)[rest[0] % len(model.pending)]
        debit, credit, held_amount = model.pending.pop(chosen)
        model.pending_debits[debit] -= held_amount
        model.pending_credits[credit] -= held_amount
        if kind == "void":
            in_transaction(ledger.void_pending, transfer_id=chosen, reason="Changed my mind")
            return
        share = rest[1]
        amount = held_amount if share is None else max(held_amount * share / 100, Decimal("0.01"))
        amount = amount.quantize(Decimal("0.01"))
        if amount > held_amount:
            model.pending[chosen] = (debit, credit, held_amount)
            model.pending_debits[debit] += held_amount
            model.pending_credits[credit] += held_amount
            error = refused(
                lambda: in_transaction(ledger.post_pending, transfer_id=chosen, amount=amount)
            )
            assert isinstance(error, Refused) and error.result == "exceeds_pending_amount"
            return
        in_transaction(ledger.post_pending, transfer_id=chosen, amount=amount)
        model.move(debit, credit, amount)
        model.moved[chosen] = (debit, credit, amount)
    elif kind == "reverse":
        if not model.moved:
            return
        chosen = sorted(model.moved)[rest[0] % len(model.moved)]
        debit, credit, amount = model.moved[chosen]
        call = lambda: in_transaction(ledger.reverse_transfer, transfer_id=chosen, reason="Undo")  # noqa: E731
        if credit != ISSUANCE_HOLDER and model.available(credit) < amount:
            error = refused(call)
            assert isinstance(error, Refused) and error.result == "exceeds_available"
            return
        call()
        del model.moved[chosen]
        model.move(credit, debit, amount)
    model.written.append(name)


@given(operations=OPERATIONS)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_sequence_of_transfers_keeps_every_invariant(
    operations: list[tuple[Any, ...]],
) -> None:
    run = uuid.uuid4().hex[:8]  # examples share the test's database: keep their holders apart
    model = Model()
    for member in MEMBERS:
        _apply(model, run, ("fund", member, Decimal(40)))

    for operation in operations:
        _apply(model, run, operation)

    assert audit_findings() == []
    for holder, amount in model.balances.items():
        if holder.startswith("volunteer:"):
            found = account(holder)
            assert found.balance == amount, holder
            assert found.debits_pending == model.pending_debits.get(holder, 0), holder
            assert found.available >= 0


# Earning rates


def test_setting_a_rate_again_replaces_it_and_keeps_its_history() -> None:
    with clock.freeze(T0):
        rates(mediation=12)
        clock.advance(timedelta(days=30))
        rates(mediation="12.50")
        rates(mediation="12.50")  # the same rate again is no change

    with runtime().db.read() as session:
        assert [(r.category, r.points_per_hour) for r in ledger.list_rates(session)] == [
            ("mediation", Decimal("12.50"))
        ]
        history, total = ledger.list_rate_changes(session, category="mediation", offset=0, limit=10)
    assert total == 2
    assert [(c.points_per_hour, c.set_at) for c in history] == [
        (Decimal("12.50"), T0 + timedelta(days=30)),
        (Decimal("12.00"), T0),
    ]


@pytest.mark.parametrize(
    ("category", "points", "field_at_fault"),
    [
        ("mediation", "0", "points_per_hour"),
        ("mediation", "-1", "points_per_hour"),
        ("mediation", "1.005", "points_per_hour"),
        ("mediation", "100000000", "points_per_hour"),
        ("Mediation!", "10", "category"),
    ],
)
def test_a_rate_must_be_positive_with_two_decimals_for_a_catalogue_code(
    category: str, points: str, field_at_fault: str
) -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid) as raised:
        ledger.set_rate(session, category=category, points_per_hour=Decimal(points))

    assert raised.value.extra == {"field": field_at_fault}


# Reading the ledger


def test_an_unknown_account_is_not_found() -> None:
    with runtime().db.read() as session, pytest.raises(NotFound):
        ledger.get_account(session, "volunteer:nobody")


def test_entries_and_transfers_are_listed_newest_first_one_page_at_a_time() -> None:
    with clock.freeze(T0):
        for number in range(3):
            funded("volunteer:v-7", number + 1)
            clock.advance(timedelta(seconds=1))
        transfer(id="other", credit="volunteer:v-8")

    with runtime().db.read() as session:
        page, total = ledger.list_entries(session, holder="volunteer:v-7", offset=0, limit=2)
        listed, count = ledger.list_transfers(session, holder="volunteer:v-7", offset=1, limit=5)
        none, nothing = ledger.list_transfers(session, holder="volunteer:v-0", offset=0, limit=5)
    assert total == 3 and [entry.amount for entry in page] == [Decimal(3), Decimal(2)]
    assert count == 3 and [t.amount for t in listed] == [Decimal(2), Decimal(1)]
    assert (none, nothing) == ([], 0)


# The schema and the demo


def test_the_migrations_make_the_tables_the_models_declare() -> None:
    with runtime().db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, runtime().metadata) == []


def test_seeding_the_demo_twice_keeps_rates_staff_have_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(runtime, ["seed-demo"], extra=EXTRA_COMMANDS) == 0
    rates(haircut=9)

    assert run_cli(runtime, ["seed-demo"], extra=EXTRA_COMMANDS) == 0

    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["rates"]["knife_sharpening"] == "10.00"
    assert (first["rates"]["haircut"], second["rates"]["haircut"]) == ("8.00", "9.00")
    assert len(second["rates"]) == 7
    assert second["catalogue"] == {"haircut": "8.00", "rice-5kg": "20.00", "oil-1l": "15.00"}
    assert balance(ISSUANCE_HOLDER) == 0
