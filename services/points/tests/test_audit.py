"""The audit: every invariant of the ledger checked, by a command and every night; a finding is
logged and counted, and the ledger is left as it is."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from services.points import audit, catalogue, earning, ledger
from services.points import timers as points_timers
from services.points.commands import EXTRA_COMMANDS
from services.points.config import runtime
from services.points.ledger import SINK_HOLDER
from services.points.models import GIFT, GOODS, REDEEM, Account, Transfer, timers
from services.points.tests.builders import (
    audit_findings,
    balance,
    credit,
    funded,
    rates,
    transfer,
)
from shared import clock
from shared.cli import run_cli
from shared.scheduler import Scheduler


def a_lived_in_ledger() -> None:
    """Earnings held, posted in whole and in part and voided, gifts, a reversal."""
    rates(knife_sharpening=10)
    credit(request_id="req-1", volunteer_id="v-7", hours="2.00")
    with runtime().db.transaction() as session:
        for request_id, hours in (("req-2", "1.00"), ("req-3", "1.00"), ("req-4", "3.00")):
            earning.open_pending_earn(
                session,
                request_id=request_id,
                volunteer_id="v-8",
                category="knife_sharpening",
                hours=Decimal(hours),
                completed_by="volunteer:v-8",
                policy=earning.EarningPolicy(),
            )
        ledger.post_pending(session, transfer_id="earn:req-2")
        ledger.void_pending(session, transfer_id="earn:req-3", reason="Not done")
        ledger.post_pending(session, transfer_id="earn:req-4", amount=Decimal(5))
    transfer(
        id="gift-1",
        kind=GIFT,
        debit="volunteer:v-7",
        credit="volunteer:v-9",
        amount="3",
        reason=None,
    )
    transfer(
        id="rice",
        kind=REDEEM,
        debit="volunteer:v-7",
        credit=SINK_HOLDER,
        amount="4",
        is_pending=True,
        reason=None,
    )
    with runtime().db.transaction() as session:
        ledger.reverse_transfer(session, transfer_id="gift-1", reason="Given twice")


def test_a_ledger_kept_by_its_rules_has_no_findings(capsys: pytest.CaptureFixture[str]) -> None:
    a_lived_in_ledger()

    assert audit_findings() == []
    assert run_cli(runtime, ["audit"], extra=EXTRA_COMMANDS) == 0
    assert "found 0 problem(s)" in capsys.readouterr().err


@contextmanager
def corrupted(*statements: str) -> Iterator[Session]:
    """A transaction in which ``statements`` broke the ledger behind its back, rolled back at
    the end: nothing the audit is shown stays."""
    session = runtime().db.sessions()
    is_sqlite = session.get_bind().dialect.name == "sqlite"
    try:
        if is_sqlite:
            session.execute(text("PRAGMA ignore_check_constraints = ON"))
        else:
            session.execute(
                text("ALTER TABLE accounts DROP CONSTRAINT ck_accounts_available_not_negative")
            )
        for statement in statements:
            session.execute(text(statement))
        yield session
    finally:
        session.rollback()
        if is_sqlite:
            session.execute(text("PRAGMA ignore_check_constraints = OFF"))
            session.rollback()
        session.close()


VOLUNTEER_7 = "(SELECT id FROM accounts WHERE holder = 'volunteer:v-7')"


@pytest.mark.parametrize(
    ("statements", "checks"),
    [
        pytest.param(
            [
                "UPDATE entries SET amount = amount + 1 WHERE transfer_id = 'earn:req-1' "
                f"AND account_id = {VOLUNTEER_7}"
            ],
            {"transfer_balanced", "transfer_entries", "balance_entries"},
            id="an entry edited",
        ),
        pytest.param(
            ["DELETE FROM entries WHERE transfer_id = 'gift-1'"],
            {"transfer_entries", "balance_entries"},
            id="a transfer's entries lost",
        ),
        pytest.param(
            ["UPDATE accounts SET balance = balance + 5 WHERE holder = 'volunteer:v-9'"],
            {"balance_entries", "ledger_sum"},
            id="a balance edited",
        ),
        pytest.param(
            [
                "UPDATE accounts SET debits_pending = debits_pending + 1 "
                "WHERE holder = 'volunteer:v-7'"
            ],
            {"pending_transfers", "ledger_sum"},
            id="a pending total edited",
        ),
        pytest.param(
            [
                "UPDATE accounts SET balance = balance - 30 WHERE holder = 'volunteer:v-8'",
                "UPDATE accounts SET balance = balance + 30 WHERE holder = 'bank:issuance'",
            ],
            {"not_negative", "balance_entries"},
            id="a member below zero",
        ),
        pytest.param(
            ["UPDATE transfers SET request_id = NULL WHERE id = 'earn:req-1'"],
            {"earning_traceable"},
            id="an earning that names no request",
        ),
        pytest.param(
            ["UPDATE transfers SET rate = 11 WHERE id = 'earn:req-1'"],
            {"earning_traceable"},
            id="an earning not its hours at its rate",
        ),
        pytest.param(
            ["UPDATE transfers SET reverses_id = 'earn:req-1' WHERE kind = 'reversal'"],
            {"reversal_mirrors"},
            id="a reversal of something else",
        ),
    ],
)
def test_each_broken_rule_is_found_logged_and_counted_and_nothing_is_mended(
    statements: list[str], checks: set[str]
) -> None:
    a_lived_in_ledger()
    counted = {check: counter(check) for check in checks}

    with corrupted(*statements) as session, capture_logs() as logs:
        findings = audit.audit_ledger(session)
        after = session.execute(select(Account.holder, Account.balance)).all()
        before_audit = dict(after)

    assert {finding.check for finding in findings} == checks
    errors = [log for log in logs if log["log_level"] == "error"]
    assert [(e["check"], e["subject"]) for e in errors] == [(f.check, f.subject) for f in findings]
    for check in checks:
        found = sum(1 for finding in findings if finding.check == check)
        assert counter(check) == counted[check] + found
    assert before_audit  # the audit read the corrupted rows and changed none of them
    assert audit_findings() == []  # and the corruption was rolled back, not mended


def three_redeemed() -> None:
    """Rice redeemed three times at 8 points: r-1 reserved, r-2 handed over, r-3 cancelled."""
    funded("volunteer:v-7", 30)
    with runtime().db.transaction() as session:
        catalogue.put_item(session, item_id="rice", name="Rice", kind=GOODS, price=Decimal(8))
        for redemption_id in ("r-1", "r-2", "r-3"):
            catalogue.redeem(
                session, redemption_id=redemption_id, item_id="rice", holder="volunteer:v-7"
            )
        catalogue.fulfil(session, redemption_id="r-2")
        catalogue.cancel(session, redemption_id="r-3", reason="Not collected")


@pytest.mark.parametrize(
    ("by_hand", "statements"),
    [
        pytest.param({"amount": Decimal(1)}, [], id="posted in part by hand, still reserved"),
        pytest.param(
            {"amount": Decimal(1)},
            ["UPDATE redemptions SET status = 'fulfilled' WHERE id = 'r-1'"],
            id="fulfilled for a part of its price",
        ),
        pytest.param({"reason": "By hand"}, [], id="voided by hand, still reserved"),
        pytest.param(
            None,
            ["UPDATE redemptions SET status = 'fulfilled' WHERE id = 'r-1'"],
            id="fulfilled with its points still held",
        ),
        pytest.param(
            {},
            ["UPDATE redemptions SET status = 'cancelled' WHERE id = 'r-1'"],
            id="cancelled though its points were paid",
        ),
    ],
)
def test_a_redemption_not_as_its_transfer_ended_is_found(
    by_hand: dict[str, Any] | None, statements: list[str]
) -> None:
    three_redeemed()
    assert audit_findings() == []
    # As posting or voiding its transfer through /v1/transfers once did, behind its back.
    if by_hand is not None:
        resolve = ledger.void_pending if "reason" in by_hand else ledger.post_pending
        with runtime().db.transaction() as session:
            resolve(session, transfer_id="redeem:r-1", **by_hand)

    with corrupted(*statements) as session:
        findings = audit.audit_ledger(session)

    assert [(finding.check, finding.subject) for finding in findings] == [
        ("redemption_paid", "r-1")
    ]


def counter(check: str) -> float:
    labels = {"service": "points", "check": check}
    return REGISTRY.get_sample_value("redvest_ledger_audit_findings_total", labels) or 0.0


def test_the_audit_command_exits_non_zero_on_a_finding(capsys: pytest.CaptureFixture[str]) -> None:
    a_lived_in_ledger()
    with runtime().db.transaction() as session:
        session.execute(
            update(Account).where(Account.holder == "volunteer:v-9").values(balance=Decimal(99))
        )

    assert run_cli(runtime, ["audit"], extra=EXTRA_COMMANDS) == 1

    out, err = capsys.readouterr()
    assert "balance_entries\tvolunteer:v-9\tits balance is 99.00 but its entries sum to 0.00" in out
    assert "found 2 problem(s)" in err
    assert balance("volunteer:v-9") == Decimal(99)


def test_the_audit_runs_every_night_and_its_run_says_what_it_found() -> None:
    assert points_timers.timers.jobs["audit"].cron == "15 4 * * *"
    funded("volunteer:v-7", 5)
    with runtime().db.transaction() as session:
        session.execute(update(Transfer).values(amount=Decimal(6)))
    scheduler = Scheduler(service="points", db=runtime().db, timers=timers)
    job = timers.jobs["audit"]

    with clock.freeze(datetime(2026, 12, 1, 4, 0, tzinfo=UTC)):
        assert scheduler.run_job(job) is None  # a new job counts its nights from now
        clock.advance(timedelta(minutes=15))
        run = scheduler.run_job(job)

    assert run is not None and run.outcome == "ok"
    assert run.detail == '{"findings": 1, "transfer_entries": 1}'
