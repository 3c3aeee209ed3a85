"""Batches of transfers: worked out together and written together, yet each order comes to
exactly what it would have come to written one at a time, whatever the sequence, and a batch
costs a few statements however many orders it carries."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from services.points import ledger
from services.points.config import runtime
from services.points.ledger import (
    ISSUANCE_HOLDER,
    SINK_HOLDER,
    TransferOrder,
    TransferResult,
    points_for,
)
from services.points.models import ADJUST, EARN, GIFT, REDEEM, Account, Transfer, timers
from services.points.tests.builders import (
    account,
    all_at_once,
    audit_findings,
    balance,
    fire_due_timers,
    funded,
    order,
    stored,
    transfers,
)
from shared import clock, events
from shared.errors import DomainError
from tests.support import staged_messages

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
GIFT_ORDER = {"kind": GIFT, "debit": "volunteer:v-7", "reason": None}


@pytest.fixture
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


def batch(orders: list[TransferOrder]) -> list[tuple[str, str]]:
    """Write ``orders`` as one batch in a transaction of its own; (id, result) of each."""
    with runtime().db.transaction() as session:
        results = ledger.create_transfers(session, orders=orders)
    return [(result.id, result.result) for result in results]


def points_credited() -> list[dict[str, Any]]:
    return [
        {"recipient": message.kwargs["recipient"], **message.kwargs["data"]}
        for message in staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
        if message.kwargs["template"] == "points.credited"
    ]


def timer_keys() -> set[str]:
    with runtime().db.read() as session:
        return set(session.scalars(select(timers.timers.c.key)))


# What a batch writes


def test_an_id_written_earlier_in_the_batch_is_compared_with_what_it_was_written_as() -> None:
    results = batch([order(id="twice", amount="1"), order(id="twice", amount="2")])

    assert results == [("twice", "created"), ("twice", "exists_with_different_amount")]
    assert (len(transfers()), balance("volunteer:v-7")) == (1, Decimal(1))


def test_a_refused_chain_leaves_no_account_timer_or_news_behind(frozen: None) -> None:
    funded("volunteer:v-7", 5)
    hold = {"is_pending": True, "timeout": timedelta(hours=1), **GIFT_ORDER}
    earning = {
        "kind": EARN,
        "credit": "volunteer:v-21",
        "request_id": "req-1",
        "category": "knife_sharpening",
        "hours": Decimal(1),
        "rate": Decimal(8),
        "reason": None,
    }
    results = batch(
        [
            order(id="held", credit="volunteer:v-20", amount="4", is_linked=True, **hold),
            order(id="earned", amount="8", is_linked=True, **earning),
            order(id="overdraft", credit="volunteer:v-8", amount="2", **GIFT_ORDER),
        ]
    )

    assert results == [
        ("held", "linked_event_failed"),
        ("earned", "linked_event_failed"),
        ("overdraft", "exceeds_available"),
    ]
    assert [balance(f"volunteer:v-{n}") for n in (7, 8, 20, 21)] == [Decimal(5), None, None, None]
    assert timer_keys() == set() and points_credited() == []
    assert account("volunteer:v-7").debits_pending == 0


def test_a_pending_transfer_written_in_a_batch_ends_at_its_timeout(frozen: None) -> None:
    funded("volunteer:v-7", 10)
    results = batch(
        [
            order(
                id="held",
                credit="volunteer:v-8",
                amount="6",
                is_pending=True,
                timeout=timedelta(hours=2),
                **GIFT_ORDER,
            )
        ]
    )
    assert results == [("held", "created")]
    assert account("volunteer:v-7").available == Decimal(4)

    clock.advance(timedelta(hours=2))
    (firing,) = fire_due_timers()

    assert (firing.outcome, stored("held").status) == ("fired", "expired")
    assert account("volunteer:v-7").available == Decimal(10)
    assert audit_findings() == []


def test_earnings_in_one_batch_tell_each_volunteer_the_balance_each_one_left() -> None:
    def earning(number: int, holder: str) -> TransferOrder:
        return order(
            id=f"earn:req-{number}",
            kind=EARN,
            credit=holder,
            amount="8",
            request_id=f"req-{number}",
            category="knife_sharpening",
            hours=Decimal(1),
            rate=Decimal(8),
            reason=None,
        )

    batch([earning(1, "volunteer:v-7"), earning(2, "volunteer:v-8"), earning(3, "volunteer:v-7")])

    news = sorted(points_credited(), key=lambda data: data["request_id"])
    assert [(data["recipient"], data["points"], data["balance"]) for data in news] == [
        ("volunteer:v-7", "8.00", "8.00"),
        ("volunteer:v-8", "8.00", "8.00"),
        ("volunteer:v-7", "8.00", "16.00"),
    ]
    assert audit_findings() == []


def test_a_batch_costs_the_same_few_statements_however_many_orders_it_carries() -> None:
    funded("volunteer:v-7", 1000)
    funded("volunteer:v-8", 1000)

    def gifts(count: int) -> list[TransferOrder]:
        return [
            order(
                kind=GIFT,
                debit=f"volunteer:v-{7 + n % 2}",
                credit=f"volunteer:v-{8 - n % 2}",
                amount="1",
                reason=None,
            )
            for n in range(count)
        ]

    statements = [_statements_of(partial(batch, gifts(size))) for size in (2, 100)]

    assert statements[0] == statements[1] <= 6, statements
    assert (balance("volunteer:v-7"), balance("volunteer:v-8")) == (Decimal(1000), Decimal(1000))
    assert len(transfers()) == 2 + 102


def _statements_of(call: Callable[[], Any]) -> int:
    """How many statements ``call`` sends to points' database, beginning and commit aside."""
    sent: list[str] = []

    def count(*args: Any) -> None:
        statement = str(args[2]).lstrip().upper()
        if not statement.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")):
            sent.append(statement)

    engine = runtime().db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(sent)


# Batches at once


def test_batches_written_at_once_with_the_same_ids_write_each_transfer_once() -> None:
    orders = [
        order(id=f"welcome-{n}", credit=f"volunteer:n-{n}", amount="5", reason="Welcome")
        for n in range(5)
    ]

    outcomes = all_at_once([lambda: batch(orders)] * 6)

    assert all(isinstance(outcome, list) for outcome in outcomes), outcomes
    for index, each in enumerate(orders):
        results = sorted(outcome[index][1] for outcome in outcomes)
        assert results == ["created"] + ["exists"] * 5, (each.id, results)
    assert [balance(f"volunteer:n-{n}") for n in range(5)] == [Decimal(5)] * 5
    assert audit_findings() == []


def test_batches_spending_from_one_account_at_once_never_overdraw_it() -> None:
    funded("volunteer:v-7", 100)
    batches = [
        [
            order(id=f"spend-{b}-{n}", credit=f"volunteer:n-{n}", amount="3", **GIFT_ORDER)
            for n in range(5)
        ]
        for b in range(10)
    ]

    outcomes = all_at_once([partial(batch, orders) for orders in batches])

    assert all(isinstance(outcome, list) for outcome in outcomes), outcomes
    results = [result for outcome in outcomes for _, result in outcome]
    assert (results.count("created"), results.count("exceeds_available")) == (33, 17)
    assert account("volunteer:v-7").available == Decimal(1)
    assert audit_findings() == []


@pytest.mark.postgres
def test_an_account_opened_for_a_transfer_the_batch_then_refuses_is_not_left_open() -> None:
    funded("volunteer:x", 5)
    gift = {"kind": GIFT, "reason": None}
    orders = [
        order(
            id="m-to-x",
            debit="volunteer:m",
            credit="volunteer:x",
            amount="5",
            is_linked=True,
            **gift,
        ),
        order(id="x-to-y", debit="volunteer:x", credit="volunteer:y", amount="10", **gift),
        order(id="x-to-a", debit="volunteer:x", credit="volunteer:a", amount="5", **gift),
    ]
    funding: list[threading.Thread] = []

    def fund_m_meanwhile(*args: Any) -> None:
        # Once the batch, having found m's account missing, opens the accounts it needs.
        if str(args[2]).lstrip().startswith("INSERT INTO accounts") and not funding:
            funding.append(threading.Thread(target=funded, args=("volunteer:m", 5)))
            funding[0].start()
            funding[0].join()

    engine = runtime().db.engine
    event.listen(engine, "before_cursor_execute", fund_m_meanwhile)
    try:
        results = batch(orders)
    finally:
        event.remove(engine, "before_cursor_execute", fund_m_meanwhile)

    assert results == [
        ("m-to-x", "created"),
        ("x-to-y", "created"),
        ("x-to-a", "exceeds_available"),
    ]
    holders = ("m", "x", "y", "a")
    assert [balance(f"volunteer:{h}") for h in holders] == [0, 0, Decimal(10), None]
    assert audit_findings() == []


# A batch comes to what one at a time comes to


def one_at_a_time(orders: list[TransferOrder]) -> list[TransferResult]:
    """The batch's rules carried out with the ledger's one-transfer call: each order in a
    transaction of its own, a linked chain in one transaction that any refusal rolls back."""
    results: list[TransferResult] = []
    chain: list[TransferOrder] = []
    for each in orders:
        chain.append(each)
        if not each.is_linked:
            results.extend(_chain_one_at_a_time(chain))
            chain = []
    return results + [
        TransferResult(each.id, "linked_event_chain_open", "the batch ends inside a linked chain")
        for each in chain
    ]


def _chain_one_at_a_time(chain: list[TransferOrder]) -> list[TransferResult]:
    done: list[TransferResult] = []
    try:
        with runtime().db.transaction() as session:
            for each in chain:
                is_new = ledger.find_transfer(session, each.id) is None
                ledger.create_transfer(session, order=each)
                done.append(TransferResult(each.id, "created" if is_new else "exists"))
    except DomainError as error:
        failed = len(done)
        return [
            TransferResult(each.id, getattr(error, "result", error.code), error.detail)
            if index == failed
            else TransferResult(each.id, "linked_event_failed")
            for index, each in enumerate(chain)
        ]
    return done


MEMBERS = ("a", "b", "c")
AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(20), places=2)
ORDERS = st.tuples(
    st.sampled_from(("gift", "gift", "hold", "hold", "fund", "earn", "invalid")),
    st.sampled_from(MEMBERS),
    st.sampled_from(MEMBERS),
    AMOUNTS,
    st.sampled_from((False, False, True)),  # linked with the next order
    # An earlier order's id again, now and then: with that order's fields (True) or its own.
    st.one_of(st.none(), st.none(), st.none(), st.tuples(st.integers(0, 50), st.booleans())),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(ORDERS, min_size=1, max_size=10)),
        # Post all of it, or a percentage of it: over 100 % is more than it holds.
        st.tuples(st.just("post"), st.integers(0, 9), st.one_of(st.none(), st.integers(1, 110))),
        st.tuples(st.just("void"), st.integers(0, 9)),
    ),
    min_size=2,
    max_size=8,
)
# Stands for a run's own prefix in what is asked of both ways of writing.
RUN = "RUN"


def _asked(spec: tuple[Any, ...], number: int, earlier: list[TransferOrder]) -> TransferOrder:
    """The order ``spec`` stands for, its holders and ids under ``RUN``."""
    kind, source, target, amount, is_linked, again = spec
    member = f"volunteer:{RUN}-{source}"
    other = f"volunteer:{RUN}-{target}" if target != source else SINK_HOLDER
    fields: dict[str, Any] = {
        "id": f"{RUN}-{number}",
        "kind": GIFT if other != SINK_HOLDER else REDEEM,
        "debit": member,
        "credit": other,
        "amount": amount,
        "is_linked": is_linked,
    }
    if kind == "fund":
        fields.update(kind=ADJUST, debit=ISSUANCE_HOLDER, credit=member, reason="Funds a member")
    elif kind == "hold":
        fields.update(is_pending=True, timeout=timedelta(hours=1) if number % 2 else None)
    elif kind == "earn":
        hours = max((amount / 2).quantize(Decimal("0.01")), Decimal("0.01"))
        fields.update(kind=EARN, debit=ISSUANCE_HOLDER, credit=member, hours=hours)
        fields.update(rate=Decimal(4), amount=points_for(hours, Decimal(4)))
        fields.update(request_id=f"{RUN}-r{number}", category="knife_sharpening")
    elif kind == "invalid":
        fields["amount"] = Decimal("0.001")
    asked = TransferOrder(**fields)
    if again is not None and earlier:
        index, is_same = again
        first = earlier[index % len(earlier)]
        asked = replace(first, is_linked=is_linked) if is_same else replace(asked, id=first.id)
    return asked


def _for_run(asked: TransferOrder, run: str) -> TransferOrder:
    def named(value: str | None) -> str | None:
        return value.replace(RUN, run) if value is not None else None

    return replace(
        asked,
        id=asked.id.replace(RUN, run),
        debit=asked.debit.replace(RUN, run),
        credit=asked.credit.replace(RUN, run),
        request_id=named(asked.request_id),
    )


def _shown(results: list[TransferResult], run: str) -> list[tuple[str, str, str | None]]:
    def plain(text: str | None) -> str | None:
        return text.replace(run, RUN) if text is not None else None

    return [
        (result.id.replace(run, RUN), result.result, plain(result.detail)) for result in results
    ]


def _resolved(call: Callable[..., Any], **fields: Any) -> str:
    try:
        with runtime().db.transaction() as session:
            return str(call(session, **fields).status)
    except DomainError as error:
        return str(getattr(error, "result", error.code))


def _ledger_of(run: str) -> dict[str, Any]:
    """What the ledger holds for a run, its prefix taken out."""
    with runtime().db.read() as session:
        accounts = {
            found.holder.replace(run, RUN): (
                found.balance,
                found.debits_pending,
                found.credits_pending,
            )
            for found in session.scalars(select(Account).where(Account.holder.contains(run)))
        }
        written = {
            found.id.replace(run, RUN): (found.status, found.posted_amount)
            for found in session.scalars(select(Transfer).where(Transfer.id.contains(run)))
        }
    news = sorted(
        (data["request_id"].replace(run, RUN), data["points"], data["balance"])
        for data in points_credited()
        if run in data["recipient"]
    )
    keys = sorted(key.replace(run, RUN) for key in timer_keys() if run in key)
    return {"accounts": accounts, "transfers": written, "news": news, "timers": keys}


@given(steps=STEPS)
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_batch_comes_to_what_writing_its_orders_one_at_a_time_comes_to(
    steps: list[tuple[Any, ...]],
) -> None:
    # Examples share the test's database: each way of writing has holders and ids of its own.
    runs = {"batched": f"b{uuid.uuid4().hex[:8]}", "one at a time": f"o{uuid.uuid4().hex[:8]}"}
    asked: list[TransferOrder] = []
    pending: list[str] = []  # pending transfers written and not ended, under RUN
    funding = [("fund", member, member, Decimal(20), False, None) for member in MEMBERS]
    for step in [("batch", funding), *steps]:
        if step[0] == "batch":
            orders = []
            for spec in step[1]:
                orders.append(_asked(spec, len(asked), asked))
                asked.append(orders[-1])
            with runtime().db.transaction() as session:
                batched = ledger.create_transfers(
                    session, orders=[_for_run(each, runs["batched"]) for each in orders]
                )
            alone = one_at_a_time([_for_run(each, runs["one at a time"]) for each in orders])
            shown = _shown(batched, runs["batched"])
            assert shown == _shown(alone, runs["one at a time"])
            pending += [
                each.id
                for each, (_, result, _) in zip(orders, shown, strict=True)
                if result == "created" and each.is_pending
            ]
        elif pending:
            chosen = sorted(pending)[step[1] % len(pending)]
            outcomes = []
            for run in runs.values():
                if step[0] == "void":
                    outcomes.append(
                        _resolved(
                            ledger.void_pending, transfer_id=chosen.replace(RUN, run), reason="No"
                        )
                    )
                else:
                    held_amount = stored(chosen.replace(RUN, run)).amount
                    share = step[2]
                    amount = held_amount if share is None else held_amount * share / 100
                    outcomes.append(
                        _resolved(
                            ledger.post_pending,
                            transfer_id=chosen.replace(RUN, run),
                            amount=max(amount.quantize(Decimal("0.01")), Decimal("0.01")),
                        )
                    )
            assert outcomes[0] == outcomes[1]
            if outcomes[0] in ("posted", "voided"):
                pending.remove(chosen)

    assert _ledger_of(runs["batched"]) == _ledger_of(runs["one at a time"])
    assert audit_findings() == []
