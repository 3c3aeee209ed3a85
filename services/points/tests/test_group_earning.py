"""Group work: every participant earns for their own hours, and their earnings are one linked
set, held, posted and voided together, once whatever the deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.points import actors, earning, ledger, recognition, statements
from services.points.config import runtime
from services.points.ledger import ISSUANCE_HOLDER, TransferOrder
from services.points.models import ADJUST
from services.points.tests.builders import (
    account,
    audit_findings,
    balance,
    completed,
    confirmed,
    fire_due_timers,
    rates,
    stored,
    transfers,
)
from shared import clock, events
from shared.consumers import PermanentError
from tests.support import deliver_to, message_for, staged_messages

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TEAM = [
    {"volunteer_id": "v-7", "hours": "2.00", "volunteer_name": "Lao Zhang"},
    {"volunteer_id": "v-9", "hours": "1.50", "volunteer_name": "Wang Jun"},
    {"volunteer_id": "v-8", "hours": "2.00", "volunteer_name": "Li Na"},
]


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


def report_group_work(*, message_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """Deliver a completion of group work by v-7 (assigned), v-9 and v-8; its payload."""
    payload = completed(hours="2.00", team_id="t-repair", participants=TEAM, **fields)
    message = message_for(events.REQUEST_COMPLETED, payload, to="points", message_id=message_id)
    deliver_to(actors.CONSUMERS, message)
    return payload


def confirm(request_id: str, **fields: Any) -> bool:
    payload = confirmed(request_id=request_id, **{"hours": "2.00", **fields})
    return deliver_to(actors.CONSUMERS, message_for(events.REQUEST_CONFIRMED, payload, to="points"))


def set_of(request_id: str) -> dict[str, Any]:
    """The request's earnings by the volunteer they credit."""
    return {t.credit: t for t in transfers() if t.request_id == request_id}


def told_of_credit() -> list[str]:
    """Who is to be told their points were credited."""
    return sorted(
        m.kwargs["recipient"]
        for m in staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
        if m.kwargs["template"] == "points.credited"
    )


def test_group_work_is_held_as_one_earning_per_participant_at_the_categorys_rate() -> None:
    rates(knife_sharpening=10)

    done = report_group_work()

    held = set_of(done["request_id"])
    rid = done["request_id"]
    assert {holder: (t.id, t.status, t.hours, t.amount) for holder, t in held.items()} == {
        "volunteer:v-7": (f"earn:{rid}", "pending", Decimal("2.00"), Decimal("20.00")),
        "volunteer:v-8": (f"earn.2:{rid}", "pending", Decimal("2.00"), Decimal("20.00")),
        "volunteer:v-9": (f"earn.3:{rid}", "pending", Decimal("1.50"), Decimal("15.00")),
    }
    assert all(t.rate == Decimal("10.00") and t.team_id == "t-repair" for t in held.values())
    assert account("volunteer:v-9").name == "Wang Jun"
    assert account("volunteer:v-9").credits_pending == Decimal(15)


def test_the_confirmation_posts_every_participants_earning_and_tells_each_of_them() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()

    assert confirm(done["request_id"]) is True

    held = set_of(done["request_id"])
    assert {holder: t.status for holder, t in held.items()} == dict.fromkeys(held, "posted")
    assert [account(f"volunteer:{v}").balance for v in ("v-7", "v-8", "v-9")] == [
        Decimal(20),
        Decimal(20),
        Decimal(15),
    ]
    assert told_of_credit() == ["volunteer:v-7", "volunteer:v-8", "volunteer:v-9"]
    assert audit_findings() == []


def test_fewer_hours_confirmed_cap_each_participants_hours_at_them() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()

    confirm(done["request_id"], hours="1.75")

    held = set_of(done["request_id"])
    assert {h: (t.posted_hours, t.posted_amount) for h, t in held.items()} == {
        "volunteer:v-7": (Decimal("1.75"), Decimal("17.50")),
        "volunteer:v-8": (Decimal("1.75"), Decimal("17.50")),
        "volunteer:v-9": (Decimal("1.50"), Decimal("15.00")),
    }
    assert account("volunteer:v-7").credits_pending == Decimal(0)
    assert audit_findings() == []


def test_more_hours_confirmed_than_anyone_reported_is_dead_lettered_and_posts_nothing() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()

    with pytest.raises(PermanentError, match="more than any of its participants"):
        confirm(done["request_id"], hours="2.50")

    assert {t.status for t in set_of(done["request_id"]).values()} == {"pending"}


def test_a_confirmation_by_a_participant_voids_the_whole_set_and_says_why() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()

    confirm(done["request_id"], confirmed_by="volunteer:v-9")

    assert {t.status for t in set_of(done["request_id"]).values()} == {"voided"}
    (refusal,) = staged_messages(runtime(), events.EARNING_REFUSED)
    assert "volunteer:v-9, who is neither the resident nor staff" in refusal.kwargs["reason"]
    assert account("volunteer:v-9").credits_pending == Decimal(0)
    assert audit_findings() == []


def test_a_set_with_one_earning_voided_otherwise_posts_none_of_it() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()
    with runtime().db.transaction() as session:
        ledger.void_pending(
            session, transfer_id=f"earn.2:{done['request_id']}", reason="Was not there"
        )

    confirm(done["request_id"])

    assert {t.status for t in set_of(done["request_id"]).values()} == {"voided"}
    assert account("volunteer:v-7").balance == Decimal(0)


def test_the_set_expires_together_at_the_communitys_deadline() -> None:
    """As a single earning does at its deadline: expired, and a later confirmation says so."""
    rates(knife_sharpening=10)
    done = report_group_work()

    clock.advance(timedelta(days=7, seconds=1))
    fired = fire_due_timers()

    assert [(f.what, f.outcome) for f in fired] == [(earning.SET_DEADLINE, "fired")]
    assert {t.status for t in set_of(done["request_id"]).values()} == {"expired"}
    assert {a: account(a).credits_pending for a in ("volunteer:v-7", "volunteer:v-8")} == {
        "volunteer:v-7": Decimal(0),
        "volunteer:v-8": Decimal(0),
    }
    assert confirm(done["request_id"]) is True
    assert account("volunteer:v-8").balance == Decimal(0)
    (refused,) = staged_messages(runtime(), events.EARNING_REFUSED)
    assert refused.kwargs["reason"].startswith("its pending points were expired on ")
    assert audit_findings() == []


def test_a_set_member_ended_otherwise_is_not_expired_over_it() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()
    member = f"earn.2:{done['request_id']}"
    with runtime().db.transaction() as session:
        ledger.void_pending(session, transfer_id=member, reason="Was not there")
        with pytest.raises(ledger.Refused, match="voided"):
            ledger.expire_pending(session, transfer_id=member, reason="Deadline")


def test_the_same_report_twice_holds_the_set_once() -> None:
    rates(knife_sharpening=10)
    done = report_group_work(message_id="m-1")

    again = message_for(events.REQUEST_COMPLETED, done, to="points", message_id="m-1")
    replayed = message_for(events.REQUEST_COMPLETED, done, to="points", message_id="m-2")

    assert deliver_to(actors.CONSUMERS, again) is False
    assert deliver_to(actors.CONSUMERS, replayed) is True
    assert len(transfers()) == 3
    assert account("volunteer:v-7").credits_pending == Decimal(20)


def test_a_report_naming_other_participants_than_the_held_set_is_dead_lettered() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()
    fewer = {**done, "participants": TEAM[:2]}

    with pytest.raises(PermanentError, match=r"held for 3 participant\(s\), not 2"):
        deliver_to(actors.CONSUMERS, message_for(events.REQUEST_COMPLETED, fewer, to="points"))

    assert len(transfers()) == 3


def test_a_set_that_cannot_be_written_whole_is_not_written_at_all() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex
    with runtime().db.transaction() as session:
        ledger.create_transfer(
            session,
            order=TransferOrder(
                id=f"earn.3:{request_id}",
                kind=ADJUST,
                debit=ISSUANCE_HOLDER,
                credit="volunteer:v-9",
                amount=Decimal(1),
                reason="Takes the id the set needs",
            ),
        )

    with pytest.raises(PermanentError, match="written together or not at all"):
        report_group_work(request_id=request_id)

    assert [t.id for t in transfers()] == [f"earn.3:{request_id}"]
    assert balance("volunteer:v-7") is None


def test_a_report_of_one_volunteer_alone_is_held_as_before() -> None:
    rates(knife_sharpening=10)
    payload = completed(hours="1.50")
    deliver_to(actors.CONSUMERS, message_for(events.REQUEST_COMPLETED, payload, to="points"))

    held = stored(f"earn:{payload['request_id']}")
    assert (held.amount, held.timeout_s) == (Decimal(15), 7 * 24 * 3600)
    assert len(transfers()) == 1


def test_the_honour_roll_and_statements_show_each_participants_own_entry() -> None:
    rates(knife_sharpening=10)
    done = report_group_work()
    confirm(done["request_id"])

    with runtime().db.read() as session:
        roll = recognition.honour_roll(
            session, first=date(2026, 11, 1), last=date(2026, 11, 30), team_id="t-repair"
        )
    with runtime().db.read() as session:
        own = statements.statement_of(
            session, holder="volunteer:v-9", first=date(2026, 11, 30), last=date(2026, 11, 30)
        )

    assert [(h.holder, h.name, h.hours, h.points) for h in roll.honours] == [
        ("volunteer:v-7", "Lao Zhang", Decimal("2.00"), Decimal("20.00")),
        ("volunteer:v-8", "Li Na", Decimal("2.00"), Decimal("20.00")),
        ("volunteer:v-9", "Wang Jun", Decimal("1.50"), Decimal("15.00")),
    ]
    assert [(line.transfer_id, line.amount) for line in own.lines] == [
        (f"earn.3:{done['request_id']}", Decimal("15.00"))
    ]


# A confirmation that reaches points before its completion


def test_a_confirmation_before_its_completion_credits_every_participant() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex

    assert confirm(request_id, participants=TEAM) is True

    held = set_of(request_id)
    assert {holder: (t.status, t.posted_amount) for holder, t in held.items()} == {
        "volunteer:v-7": ("posted", Decimal("20.00")),
        "volunteer:v-8": ("posted", Decimal("20.00")),
        "volunteer:v-9": ("posted", Decimal("15.00")),
    }
    assert account("volunteer:v-9").name == "Wang Jun"
    assert told_of_credit() == ["volunteer:v-7", "volunteer:v-8", "volunteer:v-9"]
    assert audit_findings() == []


def test_the_completion_after_its_confirmation_holds_nothing_more() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex
    confirm(request_id, participants=TEAM)

    report_group_work(request_id=request_id)

    assert len(transfers()) == 3
    assert {t.status for t in set_of(request_id).values()} == {"posted"}
    assert [account(f"volunteer:{v}").balance for v in ("v-7", "v-8", "v-9")] == [
        Decimal(20),
        Decimal(20),
        Decimal(15),
    ]
    assert account("volunteer:v-7").credits_pending == Decimal(0)
    # The set's deadline went with its confirmation: nothing is left to fire.
    with clock.freeze(T0 + timedelta(days=8)):
        assert fire_due_timers() == []
    assert audit_findings() == []


def test_the_same_early_confirmation_twice_credits_each_participant_once() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex
    payload = confirmed(request_id=request_id, hours="2.00", participants=TEAM)

    for message_id in ("m-1", "m-2"):
        message = message_for(events.REQUEST_CONFIRMED, payload, to="points", message_id=message_id)
        assert deliver_to(actors.CONSUMERS, message) is True

    assert len(transfers()) == 3
    assert account("volunteer:v-9").balance == Decimal(15)


def test_an_early_confirmation_by_a_participant_voids_the_set_and_says_why() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex

    confirm(request_id, participants=TEAM, confirmed_by="volunteer:v-9")
    report_group_work(request_id=request_id)

    assert {t.status for t in set_of(request_id).values()} == {"voided"}
    (refusal,) = staged_messages(runtime(), events.EARNING_REFUSED)
    assert "volunteer:v-9" in refusal.kwargs["reason"]
    assert [balance(f"volunteer:{v}") for v in ("v-7", "v-8", "v-9")] == [Decimal(0)] * 3
    assert audit_findings() == []


def test_an_early_confirmation_of_more_hours_than_anyone_reported_writes_nothing() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex

    with pytest.raises(PermanentError, match="more than any of its participants"):
        confirm(request_id, participants=TEAM, hours="2.50")

    assert transfers() == []


def test_an_early_confirmation_without_participants_credits_the_volunteer_alone() -> None:
    rates(knife_sharpening=10)
    request_id = uuid.uuid4().hex

    confirm(request_id, hours="2.00")
    report_group_work(request_id=request_id)

    assert [t.credit for t in transfers()] == ["volunteer:v-7"]
    assert balance("volunteer:v-9") is None
