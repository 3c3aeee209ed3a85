"""The ledger: points earned by confirmed service, in balanced entries that are never edited."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from services.points import ledger
from services.points.commands import EXTRA_COMMANDS
from services.points.config import runtime
from services.points.models import Account, Entry
from services.points.policy import POLICY, no_account
from services.points.tests.builders import balance, credit, entries_total, rates, transfers
from shared import events
from shared.auth import Principal
from shared.cli import run_cli
from shared.errors import Forbidden, Invalid, NotFound
from tests.support import staged_messages

STAFF = Principal(subject="client:console", role="staff")


# Earning points


def test_confirmed_hours_earn_hours_times_the_category_rate() -> None:
    rates(knife_sharpening=10)

    transfer = credit(request_id="req-1", volunteer_id="v-7", hours="1.50")

    assert (transfer.id, transfer.kind, transfer.amount) == ("earn:req-1", "earn", Decimal("15"))
    assert transfer.debit_account.holder == "bank:issuance"
    assert transfer.credit_account.holder == "volunteer:v-7"
    assert transfer.request_id == "req-1"
    assert transfer.memo == "1.50 h of knife_sharpening at 10.00 points/h"


def test_a_credit_is_two_entries_that_sum_to_zero() -> None:
    rates(knife_sharpening=10)

    transfer = credit(hours="2.25")

    with runtime().db.read() as session:
        lines = {
            entry.account_id: entry.amount
            for entry in session.query(Entry).filter_by(transfer_id=transfer.id)
        }
    assert lines == {
        transfer.debit_account_id: Decimal("-22.50"),
        transfer.credit_account_id: Decimal("22.50"),
    }
    assert entries_total() == 0
    assert balance("bank:issuance") == entries_total("bank:issuance") == Decimal("-22.50")
    assert balance("volunteer:v-7") == entries_total("volunteer:v-7") == Decimal("22.50")


def test_points_are_rounded_to_the_cent_half_up() -> None:
    rates(haircut="0.50")

    assert credit(category="haircut", hours="0.05").amount == Decimal("0.03")


def test_accounts_are_opened_on_first_use_and_reused() -> None:
    rates(knife_sharpening=10, mediation=12)

    credit(volunteer_id="v-7", hours="1.00")
    credit(volunteer_id="v-7", category="mediation", hours="0.50")

    assert balance("volunteer:v-7") == Decimal("16.00")
    assert balance("bank:issuance") == Decimal("-16.00")


def test_a_credit_asks_notify_to_tell_the_volunteer() -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-7", hours="1.00")

    credit(request_id="req-2", volunteer_id="v-7", hours="0.50")

    last = staged_messages(runtime(), events.NOTIFICATION_REQUESTED)[-1]
    assert last.kwargs == {
        "recipient": "volunteer:v-7",
        "template": "points.credited",
        "channel": "inbox",
        "data": {
            "request_id": "req-2",
            "points": "5.00",
            "balance": "15.00",
            "hours": "0.50",
            "category": "knife_sharpening",
        },
    }


def test_crediting_the_same_request_again_changes_nothing() -> None:
    rates(knife_sharpening=10)
    first = credit(request_id="req-1", hours="1.00")

    again = credit(request_id="req-1", hours="3.00")

    assert again.id == first.id and again.amount == Decimal("10.00")
    assert len(transfers()) == 1
    assert balance("volunteer:v-7") == Decimal("10.00")
    assert len(staged_messages(runtime(), events.NOTIFICATION_REQUESTED)) == 1


def test_a_category_without_a_rate_is_refused_and_changes_nothing() -> None:
    with pytest.raises(NotFound, match="No earning rate for category 'mediation'"):
        credit(category="mediation")

    assert transfers() == []
    assert balance("volunteer:v-7") is None
    assert staged_messages(runtime()) == []


def test_hours_too_few_to_earn_a_cent_are_refused() -> None:
    rates(haircut="0.01")

    with pytest.raises(Invalid, match="earn no points"):
        credit(category="haircut", hours="0.01")

    assert transfers() == []


@pytest.mark.parametrize("volunteer_id", ["", "v 7", "v/7", "v" * 65])
def test_a_volunteer_id_that_cannot_name_an_account_is_refused(volunteer_id: str) -> None:
    rates(knife_sharpening=10)

    with pytest.raises(Invalid):
        credit(volunteer_id=volunteer_id)

    assert transfers() == []


# Never negative, never edited


def test_the_database_refuses_a_negative_holder_balance() -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-7")

    with pytest.raises(IntegrityError), runtime().db.transaction() as session:
        session.execute(update(Account).where(Account.holder == "volunteer:v-7").values(balance=-1))

    assert balance("volunteer:v-7") == Decimal("15.00")


def test_only_the_issuance_account_goes_negative() -> None:
    rates(knife_sharpening=10)

    credit()

    with runtime().db.read() as session:
        kinds = {account.holder: account.kind for account in session.query(Account)}
    assert kinds == {"bank:issuance": "issuance", "volunteer:v-7": "holder"}
    assert balance("bank:issuance") == Decimal("-15.00")


@given(
    credits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=6),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["knife_sharpening", "haircut", "mediation"]),
            st.decimals(min_value=Decimal("0.01"), max_value=Decimal(24), places=2),
        ),
        max_size=12,
    )
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_entries_always_balance_and_each_holder_has_exactly_its_credits(
    credits: list[tuple[int, str, str, Decimal]],
) -> None:
    rates(knife_sharpening="10", haircut="8.25", mediation="12.50")
    run = uuid.uuid4().hex[:8]  # examples share the test's database: keep their ids apart
    rate = {
        "knife_sharpening": Decimal("10"),
        "haircut": Decimal("8.25"),
        "mediation": Decimal("12.50"),
    }
    expected: dict[str, Decimal] = {}
    credited: set[int] = set()
    for request, volunteer, category, hours in credits:
        credit(
            request_id=f"{run}-{request}",
            volunteer_id=f"{run}-{volunteer}",
            category=category,
            hours=str(hours),
        )
        if request not in credited:
            credited.add(request)
            holder = f"volunteer:{run}-{volunteer}"
            points = (hours * rate[category]).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
            expected[holder] = expected.get(holder, Decimal(0)) + points

    assert entries_total() == 0
    for holder, points in expected.items():
        assert balance(holder) == entries_total(holder) == points
    assert (balance("bank:issuance") or 0) == entries_total("bank:issuance")


# Reading the ledger


ACCOUNT = "points.AccountBalance.get"


def test_a_volunteer_may_read_only_their_own_account() -> None:
    rates(knife_sharpening=10)
    credit(volunteer_id="v-7")
    credit(volunteer_id="v-8")

    def may_read(principal: Principal, holder: str) -> None:
        POLICY.check_owner(ACCOUNT, principal, {"holder": holder}, hidden_as=no_account(holder))

    may_read(Principal("v-7", "volunteer"), "volunteer:v-7")
    may_read(STAFF, "volunteer:v-8")
    # Another's account is hidden as if it did not exist; a role that never reads accounts
    # is refused outright (the policy's one rule).
    with pytest.raises(NotFound):
        may_read(Principal("v-7", "volunteer"), "volunteer:v-8")
    with pytest.raises(Forbidden):
        may_read(Principal("r-1", "resident"), "volunteer:v-7")
    with runtime().db.read() as session:
        assert ledger.get_account(session, "volunteer:v-7").balance == Decimal("15.00")
        assert ledger.get_account(session, "volunteer:v-8").balance == 15


def test_an_unknown_account_is_not_found() -> None:
    with runtime().db.read() as session, pytest.raises(NotFound):
        ledger.get_account(session, "volunteer:nobody")


def test_entries_are_listed_newest_first_one_page_at_a_time() -> None:
    rates(knife_sharpening=10)
    for number in range(3):
        credit(request_id=f"req-{number}", hours="1.00")

    with runtime().db.read() as session:
        page, total = ledger.list_entries(session, holder="volunteer:v-7", offset=0, limit=2)
        assert total == 3
        assert [entry.transfer_id for entry in page] == ["earn:req-2", "earn:req-1"]
        issued, _ = ledger.list_entries(session, holder="bank:issuance", offset=2, limit=2)
        assert [(e.transfer_id, e.amount) for e in issued] == [("earn:req-0", Decimal(-10))]


# Earning rates


def test_setting_a_rate_again_replaces_it() -> None:
    rates(mediation=12)

    rates(mediation="12.50")

    with runtime().db.read() as session:
        assert [(r.category, r.points_per_hour) for r in ledger.list_rates(session)] == [
            ("mediation", Decimal("12.50"))
        ]


@pytest.mark.parametrize(
    ("category", "points", "field"),
    [
        ("mediation", "0", "points_per_hour"),
        ("mediation", "-1", "points_per_hour"),
        ("mediation", "1.005", "points_per_hour"),
        ("mediation", "100000000", "points_per_hour"),
        ("Mediation!", "10", "category"),
    ],
)
def test_a_rate_must_be_positive_with_two_decimals_for_a_catalogue_code(
    category: str, points: str, field: str
) -> None:
    with runtime().db.transaction() as session, pytest.raises(Invalid) as refused:
        ledger.set_rate(session, category=category, points_per_hour=Decimal(points))

    assert refused.value.extra == {"field": field}


# The demo


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
    assert balance("bank:issuance") == 0
