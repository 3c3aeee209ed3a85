"""Statements: the opening balance (the closing balance of the day before), every entry of the
period with the balance after it, the closing balance; as JSON or CSV, read from one snapshot
of the ledger."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from services.points import earning, printing, statements
from services.points.config import runtime
from services.points.earning import EarningPolicy
from services.points.ledger import ISSUANCE_HOLDER
from services.points.models import GIFT
from services.points.statements import Statement
from services.points.tests.builders import (
    balance,
    bearer,
    credit,
    funded,
    rates,
    refused,
    transfer,
)
from shared import clock
from shared.errors import Invalid, NotFound

JAN_1 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PROBLEM = "application/problem+json"
STAFF = bearer("staff", "s-1")
VOLUNTEER = bearer("volunteer", "v-7")


def statement(
    holder: str = "volunteer:v-7",
    first: date = date(2026, 1, 2),
    last: date = date(2026, 1, 3),
    **kw: Any,
) -> Statement:
    with runtime().db.read() as session:
        return statements.statement_of(session, holder=holder, first=first, last=last, **kw)


def funded_on(moment: datetime, amount: int, holder: str = "volunteer:v-7") -> None:
    with clock.freeze(moment):
        funded(holder, amount)


def adds_up(found: Statement) -> bool:
    return (
        found.opening_balance + sum(line.amount for line in found.lines) == (found.closing_balance)
        and found.closing_balance - found.opening_balance == found.credits - found.debits
    )


# The balances and the entries


def test_a_statement_opens_with_the_day_befores_closing_balance_and_adds_up_to_its_close() -> None:
    funded_on(JAN_1, 10)
    funded_on(JAN_1 + DAY, 5)
    with clock.freeze(JAN_1 + DAY + timedelta(hours=1)):
        transfer(id="to-v-8", kind=GIFT, debit="volunteer:v-7", credit="volunteer:v-8", amount="3")
    funded_on(JAN_1 + 2 * DAY, 2)
    funded_on(JAN_1 + 3 * DAY, 100)

    found = statement()

    assert found.opening_balance == Decimal("10.00")
    assert [(line.amount, line.balance) for line in found.lines] == [
        (Decimal("5.00"), Decimal("15.00")),
        (Decimal("-3.00"), Decimal("12.00")),
        (Decimal("2.00"), Decimal("14.00")),
    ]
    assert found.closing_balance == Decimal("14.00")
    assert (found.credits, found.debits) == (Decimal("7.00"), Decimal("3.00"))
    assert adds_up(found)
    gift = found.lines[1]
    assert (gift.transfer_id, gift.kind, gift.counterparty) == ("to-v-8", GIFT, "volunteer:v-8")
    assert statement(first=date(2026, 1, 1), last=date(2026, 1, 4)).closing_balance == balance(
        "volunteer:v-7"
    )


def test_the_next_periods_statement_opens_where_the_last_one_closed() -> None:
    for day in range(5):
        funded_on(JAN_1 + day * DAY, day + 1)

    january_first_to_third = statement(first=date(2026, 1, 1), last=date(2026, 1, 3))
    january_fourth_on = statement(first=date(2026, 1, 4), last=date(2026, 1, 31))

    assert january_fourth_on.opening_balance == january_first_to_third.closing_balance
    assert january_first_to_third.opening_balance == 0
    assert january_fourth_on.closing_balance == Decimal(15)


def test_a_pending_earning_is_on_the_statement_of_the_day_it_was_posted() -> None:
    rates(knife_sharpening=10)
    with clock.freeze(JAN_1), runtime().db.transaction() as session:
        earning.open_pending_earn(
            session,
            request_id="req-1",
            volunteer_id="v-7",
            category="knife_sharpening",
            hours=Decimal(2),
            completed_by="volunteer:v-7",
            policy=EarningPolicy(),
        )
    with clock.freeze(JAN_1 + 2 * DAY):
        credit(request_id="req-1", hours="2.00")

    assert statement(first=date(2026, 1, 1), last=date(2026, 1, 2)).lines == []
    posted = statement(first=date(2026, 1, 3), last=date(2026, 1, 3)).lines
    assert [(line.transfer_id, line.amount) for line in posted] == [("earn:req-1", Decimal(20))]
    assert posted[0].posted_at == JAN_1 + 2 * DAY


def test_days_are_the_days_of_the_time_zone_asked_for() -> None:
    # 20:00 UTC on 1 January is 04:00 on 2 January in Shanghai.
    funded_on(datetime(2026, 1, 1, 20, 0, tzinfo=UTC), 7)

    in_utc = statement(first=date(2026, 1, 2), last=date(2026, 1, 2))
    in_shanghai = statement(first=date(2026, 1, 2), last=date(2026, 1, 2), zone="Asia/Shanghai")

    assert (in_utc.opening_balance, in_utc.lines) == (Decimal(7), [])
    assert (in_shanghai.opening_balance, len(in_shanghai.lines)) == (Decimal(0), 1)
    assert in_shanghai.period.starts == datetime(2026, 1, 1, 16, 0, tzinfo=UTC)


def test_the_bank_accounts_have_statements_too() -> None:
    funded_on(JAN_1 + DAY, 4)

    found = statement(holder=ISSUANCE_HOLDER)

    assert [line.amount for line in found.lines] == [Decimal(-4)]
    assert (found.kind, found.closing_balance) == ("issuance", Decimal(-4))


def test_a_transfer_committed_while_a_statement_is_read_is_not_half_in_it() -> None:
    funded_on(JAN_1, 10)
    funded_on(JAN_1 + DAY, 5)
    reader = runtime().db.readers.kw["bind"]
    statements_read: list[str] = []

    def write_after_the_first_read(*args: Any) -> None:
        if not args[2].lstrip().upper().startswith("SELECT"):
            return
        statements_read.append(args[2])
        if len(statements_read) == 1:
            # Between the statement's first read and its others: a snapshot keeps it out.
            with clock.freeze(JAN_1 + DAY + timedelta(hours=2)):
                funded("volunteer:v-7", 1000)

    event.listen(reader, "after_cursor_execute", write_after_the_first_read)
    try:
        found = statement(first=date(2026, 1, 1), last=date(2026, 1, 2))
    finally:
        event.remove(reader, "after_cursor_execute", write_after_the_first_read)

    assert len(statements_read) >= 3
    assert [line.amount for line in found.lines] == [Decimal(10), Decimal(5)]
    assert found.closing_balance == Decimal(15) and adds_up(found)
    assert statement(first=date(2026, 1, 1), last=date(2026, 1, 2)).closing_balance == 1015


# What is refused


@pytest.mark.parametrize(
    ("first", "last", "zone", "field"),
    [
        (date(2026, 1, 3), date(2026, 1, 2), "UTC", "to"),
        (date(2026, 1, 1), date(2036, 1, 9), "UTC", "to"),
        (date(1969, 12, 31), date(1970, 1, 1), "UTC", "from"),
        (date(2026, 1, 1), date(9999, 12, 31), "UTC", "to"),
        (date(2026, 1, 1), date(2026, 1, 2), "Mars/Olympus_Mons", "tz"),
        (date(2026, 1, 1), date(2026, 1, 2), "../../etc/passwd", "tz"),
    ],
)
def test_a_period_that_is_not_one_is_refused_naming_what_is_wrong(
    first: date, last: date, zone: str, field: str
) -> None:
    funded_on(JAN_1, 1)

    error = refused(lambda: statement(first=first, last=last, zone=zone))

    assert isinstance(error, Invalid) and error.extra["field"] == field


def test_an_account_that_was_never_opened_has_no_statement() -> None:
    assert isinstance(refused(lambda: statement(holder="volunteer:v-0")), NotFound)


def test_a_period_with_more_entries_than_a_statement_holds_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for day in range(3):
        funded_on(JAN_1 + day * DAY, 1)
    monkeypatch.setattr(statements, "MAX_LINES", 2)

    error = refused(lambda: statement(first=date(2026, 1, 1), last=date(2026, 1, 3)))

    assert isinstance(error, Invalid) and "shorter period" in error.detail
    assert len(statement(first=date(2026, 1, 1), last=date(2026, 1, 2)).lines) == 2


# Over HTTP


URL = "/v1/accounts/volunteer:v-7/statement?from=2026-01-02&to=2026-01-03"


def test_a_volunteer_reads_their_statement_as_json(client: FlaskClient) -> None:
    funded_on(JAN_1, 10)
    funded_on(JAN_1 + DAY, 5)

    response = client.get(URL, headers=VOLUNTEER)

    assert response.status_code == 200
    body = response.json
    assert body["holder"] == "volunteer:v-7" and body["kind"] == "holder"
    assert (body["from"], body["to"], body["time_zone"]) == ("2026-01-02", "2026-01-03", "UTC")
    assert (body["opening_balance"], body["closing_balance"]) == ("10.00", "15.00")
    assert (body["credits"], body["debits"]) == ("5.00", "0.00")
    [entry] = body["entries"]
    assert entry["amount"] == "5.00" and entry["balance"] == "15.00"
    assert entry["counterparty"] == ISSUANCE_HOLDER
    assert entry["posted_at"] == "2026-01-02T09:00:00+00:00"


def test_a_statement_as_csv_has_a_header_row_quotes_what_needs_it_and_is_utf8(
    client: FlaskClient,
) -> None:
    funded_on(JAN_1, 10)
    memo = '长山花园, "rice" day\nsecond line'
    with clock.freeze(JAN_1 + DAY):
        transfer(credit="volunteer:v-7", amount="2.50", memo=memo)
    with clock.freeze(JAN_1 + DAY + timedelta(hours=1)):
        transfer(credit="volunteer:v-7", amount="1", memo='=HYPERLINK("x")')

    response = client.get(URL, headers={**VOLUNTEER, "Accept": "text/csv"})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="statement-volunteer-v-7-2026-01-02-2026-01-03.csv"'
    )
    text = response.data.decode("utf-8")
    assert f'"{memo.replace(chr(34), chr(34) * 2)}"' in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == [
        "posted_at",
        "transfer_id",
        "kind",
        "counterparty",
        "request_id",
        "memo",
        "amount",
        "balance",
    ]
    assert [(row["kind"], row["amount"], row["balance"]) for row in rows] == [
        ("opening_balance", "", "10.00"),
        ("adjust", "2.50", "12.50"),
        ("adjust", "1.00", "13.50"),
        ("closing_balance", "", "13.50"),
    ]
    assert rows[1]["memo"] == memo
    # A spreadsheet must not run what a memo says.
    assert rows[2]["memo"] == '\'=HYPERLINK("x")'
    assert rows[0]["posted_at"] == "2026-01-02T00:00:00+00:00"
    assert rows[-1]["posted_at"] == "2026-01-04T00:00:00+00:00"


def test_the_format_parameter_wins_over_the_accept_header(client: FlaskClient) -> None:
    funded_on(JAN_1 + DAY, 5)

    as_csv = client.get(f"{URL}&format=csv", headers={**VOLUNTEER, "Accept": "application/json"})
    as_json = client.get(f"{URL}&format=json", headers={**VOLUNTEER, "Accept": "text/csv"})
    by_default = client.get(URL, headers={**VOLUNTEER, "Accept": "*/*"})

    assert as_csv.mimetype == "text/csv"
    assert as_json.mimetype == by_default.mimetype == "application/json"


def test_a_statement_in_a_time_zone_shows_its_times_there(client: FlaskClient) -> None:
    funded_on(datetime(2026, 1, 1, 20, 0, tzinfo=UTC), 7)

    response = client.get(
        "/v1/accounts/volunteer:v-7/statement?from=2026-01-02&to=2026-01-02"
        "&tz=Asia/Shanghai&format=csv",
        headers=VOLUNTEER,
    )

    rows = list(csv.DictReader(io.StringIO(response.data.decode(), newline="")))
    assert [row["posted_at"] for row in rows] == [
        "2026-01-02T00:00:00+08:00",
        "2026-01-02T04:00:00+08:00",
        "2026-01-03T00:00:00+08:00",
    ]


def test_another_volunteers_statement_is_not_found_word_for_word_as_a_missing_one(
    client: FlaskClient,
) -> None:
    funded_on(JAN_1, 1, holder="volunteer:v-8")
    url = "/v1/accounts/{}/statement?from=2026-01-01&to=2026-01-02"

    theirs = client.get(url.format("volunteer:v-8"), headers=VOLUNTEER)
    missing = client.get(url.format("volunteer:v-9"), headers=STAFF)

    assert (theirs.status_code, missing.status_code) == (404, 404)
    assert theirs.json["detail"] == "No account 'volunteer:v-8'"
    assert client.get(url.format("volunteer:v-8"), headers=STAFF).status_code == 200


@pytest.mark.parametrize(
    "memo",
    ["\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)", " =1+1", "\u3000=1+1", "\n=1+1", "\t1"],
    ids=[
        "fullwidth =",
        "fullwidth +",
        "fullwidth -",
        "fullwidth @",
        "space",
        "ideographic space",
        "line break",
        "tab",
    ],
)
def test_a_memo_a_spreadsheet_would_read_as_a_formula_is_quoted_in_csv(memo: str) -> None:
    assert printing._cell(memo) == f"'{memo}"


@pytest.mark.parametrize("memo", ["Rice day", "1 + 1", "长山花园"])
def test_a_memo_that_is_no_formula_is_written_as_it_is(memo: str) -> None:
    assert printing._cell(memo) == memo


def test_residents_may_not_read_statements(client: FlaskClient) -> None:
    assert client.get(URL, headers=bearer("resident", "r-1")).status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-01-02",
        "from=2026-13-01&to=2026-01-02",
        "from=2026-01-03&to=2026-01-02",
        "from=2026-01-01&to=2026-01-02&tz=Nowhere",
        "from=2026-01-01&to=2026-01-02&tz=Asia",
        "from=2026-01-01&to=2026-01-02&tz=US",
        "from=2026-01-01&to=2026-01-02&format=xml",
    ],
)
def test_a_query_that_asks_for_no_statement_is_a_422_problem(
    client: FlaskClient, query: str
) -> None:
    funded_on(JAN_1, 1)

    response = client.get(f"/v1/accounts/volunteer:v-7/statement?{query}", headers=VOLUNTEER)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
