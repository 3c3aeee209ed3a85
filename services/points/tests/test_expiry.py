"""Expiry: where the community says so, points unused for long go back to the bank, the oldest
first, each day's worth announced ahead and taken once."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

from services.points import expiry, ledger
from services.points.commands import EXTRA_COMMANDS
from services.points.config import runtime
from services.points.expiry import Expiry, ExpiryPolicy
from services.points.ledger import ISSUANCE_HOLDER, POOL_HOLDER, TransferOrder
from services.points.models import DONATE, EXPIRY
from services.points.tests.builders import (
    account,
    audit_findings,
    fire_due_timers,
    funded,
    transfer,
    transfers,
)
from shared import clock, events
from shared.cli import run_cli
from shared.runtime import ServiceRuntime
from shared.settings import Settings, SettingsError
from tests.support import staged_messages

POLICY = ExpiryPolicy(after_days=30, notice_days=7)
V7 = "volunteer:v-7"


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.freeze(datetime(2026, 1, 1, 9, 0, tzinfo=UTC)):
        yield


def on(day: date, hour: int = 9) -> None:
    clock.freeze(datetime.combine(day, time(hour), tzinfo=UTC))


def round_on(day: date, policy: ExpiryPolicy = POLICY) -> expiry.Round:
    """What the scheduler does on ``day``: fire the timers due at midnight, then the round."""
    on(day, hour=1)
    fire_due_timers()
    with runtime().db.transaction() as session:
        return expiry.run_round(session, policy=policy)


def spent(holder: str, amount: int) -> None:
    transfer(kind=DONATE, debit=holder, credit=POOL_HOLDER, amount=Decimal(amount), reason=None)


def notices() -> list[dict[str, Any]]:
    return [
        message.kwargs["data"] | {"to": message.kwargs["recipient"]}
        for message in staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
        if message.kwargs["template"] == "points.expiring"
    ]


def expiries() -> list[tuple[str, Decimal]]:
    return [(t.id, t.amount) for t in transfers() if t.kind == EXPIRY]


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day = date.fromordinal(day.toordinal() + 1)


def test_nothing_expires_or_is_announced_while_the_policy_is_off() -> None:
    funded(V7, 100)

    for day in days(date(2026, 1, 20), date(2026, 3, 1)):
        done = round_on(day, ExpiryPolicy())

    assert done == expiry.Round(expired=[], announced=[])
    assert (account(V7).balance, notices()) == (Decimal(100), [])


def test_points_about_to_expire_are_announced_once_the_notice_period_ahead() -> None:
    funded(V7, 100)

    quiet = round_on(date(2026, 1, 23))
    told = round_on(date(2026, 1, 24))
    round_on(date(2026, 1, 24))
    round_on(date(2026, 1, 25))

    assert quiet.announced == []
    assert told.announced == [Expiry(V7, date(2026, 1, 31), Decimal("100.00"))]
    assert notices() == [
        {"points": "100.00", "expires_on": "2026-01-31", "balance": "100.00", "to": V7}
    ]


def test_on_their_day_unused_points_go_to_the_bank_the_oldest_used_first() -> None:
    funded(V7, 100)
    on(date(2026, 1, 5))
    spent(V7, 60)  # uses 60 of the 100 of January 1st
    on(date(2026, 1, 10))
    funded(V7, 50)

    for day in days(date(2026, 1, 20), date(2026, 2, 12)):
        round_on(day)

    account_id = account(V7).id
    assert expiries() == [
        (f"expiry:{account_id}:2026-01-31", Decimal("40.00")),
        (f"expiry:{account_id}:2026-02-09", Decimal("50.00")),
    ]
    assert [(n["expires_on"], n["points"]) for n in notices()] == [
        ("2026-01-31", "40.00"),
        ("2026-02-09", "50.00"),
    ]
    assert account(V7).balance == Decimal(0)
    assert all(t.credit == ISSUANCE_HOLDER for t in transfers() if t.kind == EXPIRY)
    assert audit_findings() == []


def test_points_used_after_the_notice_are_not_taken_and_no_more_than_announced_is() -> None:
    funded(V7, 100)
    round_on(date(2026, 1, 24))
    on(date(2026, 1, 28))
    spent(V7, 70)
    on(date(2026, 1, 29))
    funded(V7, 500)

    round_on(date(2026, 1, 31))

    assert [amount for _, amount in expiries()] == [Decimal("30.00")]
    assert account(V7).balance == Decimal(500)


def test_a_rerun_of_the_day_moves_nothing_twice() -> None:
    funded(V7, 100)
    round_on(date(2026, 1, 24))

    first = round_on(date(2026, 1, 31))
    with runtime().db.transaction() as session:
        again = expiry.expire_announced(
            session, expiry=Expiry(V7, date(2026, 1, 31), Decimal(100)), after_days=30
        )
    second = round_on(date(2026, 1, 31))

    assert first.expired == []  # the scheduler's timer moved them at midnight
    assert again is not None and again.amount == Decimal(100)
    assert second == expiry.Round(expired=[], announced=[])
    assert len(expiries()) == 1
    assert account(V7).balance == Decimal(0)


def test_points_already_due_when_the_policy_is_switched_on_get_the_whole_notice() -> None:
    funded(V7, 100)

    switched_on = round_on(date(2026, 3, 1))
    before = round_on(date(2026, 3, 7))
    round_on(date(2026, 3, 8))

    assert switched_on.announced == [Expiry(V7, date(2026, 3, 8), Decimal("100.00"))]
    assert switched_on.expired == before.expired == []
    assert [amount for _, amount in expiries()] == [Decimal("100.00")]


def test_switching_the_policy_off_cancels_what_was_announced() -> None:
    funded(V7, 100)
    round_on(date(2026, 1, 24))

    round_on(date(2026, 1, 25), ExpiryPolicy())
    for day in days(date(2026, 1, 26), date(2026, 2, 5)):
        round_on(day, ExpiryPolicy())

    assert expiries() == []
    assert account(V7).balance == Decimal(100)


def test_points_on_hold_for_a_reservation_count_as_used() -> None:
    funded(V7, 100)
    with runtime().db.transaction() as session:
        ledger.create_transfer(
            session,
            order=TransferOrder(
                id="hold-1",
                kind=DONATE,
                debit=V7,
                credit=POOL_HOLDER,
                amount=Decimal(80),
                is_pending=True,
            ),
        )

    told = round_on(date(2026, 1, 24))

    assert told.announced == [Expiry(V7, date(2026, 1, 31), Decimal("20.00"))]


def with_expiry(**changes: Any) -> ServiceRuntime:
    """The test run's points runtime, with the expiry settings changed."""
    changed = copy.copy(runtime())
    changed.settings = dataclasses.replace(runtime().settings, **changes)
    return changed


def test_the_dry_run_lists_what_would_expire_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    funded(V7, 100)
    round_on(date(2026, 1, 24))
    on(date(2026, 1, 31), hour=2)
    settings = {"points_expire_after_days": 30, "points_expiry_notice_days": 7}

    code = run_cli(lambda: with_expiry(**settings), ["expire", "--dry-run"], extra=EXTRA_COMMANDS)

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"would expire\t{V7}\t2026-01-31\t100.00"]
    assert expiries() == []
    assert run_cli(lambda: with_expiry(**settings), ["expire"], extra=EXTRA_COMMANDS) == 0
    assert [amount for _, amount in expiries()] == [Decimal("100.00")]


def test_the_policy_is_read_from_the_settings_and_off_by_default() -> None:
    def policy(**env: str) -> ExpiryPolicy:
        return ExpiryPolicy.of(Settings.from_env("points", env))

    assert policy() == ExpiryPolicy(after_days=None, notice_days=30)
    assert not policy().is_on
    assert policy(POINTS_EXPIRE_AFTER_DAYS="365", POINTS_EXPIRY_NOTICE_DAYS="14") == (
        ExpiryPolicy(after_days=365, notice_days=14)
    )
    with pytest.raises(SettingsError, match="POINTS_EXPIRY_NOTICE_DAYS must be 1 to 366"):
        Settings.from_env("points", {"POINTS_EXPIRY_NOTICE_DAYS": "0"})
