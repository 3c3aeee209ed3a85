"""Service hours recognised: a volunteer's certificate of confirmed hours by category (JSON, or a
PDF to print whose text reads back), and honour rolls by period and team; reversed earnings
count for nothing."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from pypdf import PdfReader

from services.points import earning, ledger, printing, recognition
from services.points.config import runtime
from services.points.earning import EarningPolicy
from services.points.recognition import Certificate, HonourRoll
from services.points.tests.builders import bearer, credit, rates, refused
from shared import clock
from shared.errors import Invalid

JAN_1 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
VOLUNTEER = bearer("volunteer", "v-7")
STAFF = bearer("staff", "s-1")


@pytest.fixture(autouse=True)
def _rates() -> None:
    rates(knife_sharpening=10, haircut=8, lunch_delivery="7.50")


def served(
    request_id: str,
    *,
    volunteer: str = "v-7",
    category: str = "knife_sharpening",
    hours: str = "1.00",
    confirmed: str | None = None,
    on: datetime = JAN_1,
    team: str | None = None,
    community: str | None = None,
    name: str | None = None,
) -> None:
    """A service reported done and confirmed on ``on`` (``confirmed`` hours of it, if fewer)."""
    with clock.freeze(on), runtime().db.transaction() as session:
        earning.open_pending_earn(
            session,
            request_id=request_id,
            volunteer_id=volunteer,
            category=category,
            hours=Decimal(hours),
            completed_by=f"volunteer:{volunteer}",
            policy=EarningPolicy(),
            volunteer_name=name,
            team_id=team,
            community=community,
        )
    with clock.freeze(on):
        credit(
            request_id=request_id,
            volunteer_id=volunteer,
            category=category,
            hours=confirmed or hours,
        )


def reversed_(transfer_id: str, on: datetime) -> None:
    with clock.freeze(on), runtime().db.transaction() as session:
        ledger.reverse_transfer(
            session, transfer_id=transfer_id, reason="Credited in error", operator="staff:s-1"
        )


def certificate(holder: str = "volunteer:v-7", **kw: Any) -> Certificate:
    values: dict[str, Any] = {"first": date(2026, 1, 1), "last": date(2026, 1, 31), **kw}
    with runtime().db.read() as session:
        return recognition.certificate_of(session, holder=holder, **values)


def roll(**kw: Any) -> HonourRoll:
    values: dict[str, Any] = {"first": date(2026, 1, 1), "last": date(2026, 1, 31), **kw}
    with runtime().db.read() as session:
        return recognition.honour_roll(session, **values)


def by_category(found: Certificate) -> dict[str, tuple[int, Decimal, Decimal]]:
    return {line.category: (line.services, line.hours, line.points) for line in found.categories}


# Certificates


def test_a_certificate_lists_the_confirmed_hours_by_category_with_totals() -> None:
    served("r-1", hours="1.50")
    served("r-2", hours="2.00", on=JAN_1 + DAY)
    served("r-3", category="haircut", hours="0.75")
    served("r-4", category="lunch_delivery", hours="3.00", confirmed="2.00")

    found = certificate()

    assert by_category(found) == {
        "haircut": (1, Decimal("0.75"), Decimal("6.00")),
        "knife_sharpening": (2, Decimal("3.50"), Decimal("35.00")),
        "lunch_delivery": (1, Decimal("2.00"), Decimal("15.00")),
    }
    assert (found.total_services, found.total_hours, found.total_points) == (
        4,
        Decimal("6.25"),
        Decimal("56.00"),
    )


def test_reversed_earnings_other_volunteers_and_other_periods_are_not_certified() -> None:
    served("r-1", hours="1.00")
    served("r-2", hours="4.00")
    # Reversed after the period: it should never have been, so it counts for nothing.
    reversed_("earn:r-2", JAN_1 + 40 * DAY)
    served("r-3", hours="5.00", volunteer="v-8")
    served("r-4", hours="6.00", on=datetime(2026, 2, 1, 9, 0, tzinfo=UTC))
    with clock.freeze(JAN_1), runtime().db.transaction() as session:
        earning.open_pending_earn(
            session,
            request_id="r-5",
            volunteer_id="v-7",
            category="knife_sharpening",
            hours=Decimal(3),
            completed_by="volunteer:v-7",
            policy=EarningPolicy(),
        )

    found = certificate()

    assert by_category(found) == {"knife_sharpening": (1, Decimal("1.00"), Decimal("10.00"))}


def test_a_certificate_names_the_volunteer_and_the_communities_they_served() -> None:
    served("r-1", name="王小明", community="长山花园")
    served("r-2", community="Liujiang Road")
    served("r-3")

    found = certificate()

    assert found.name == "王小明"
    assert found.communities == ["Liujiang Road", "长山花园"]
    assert found.total_services == 3


def test_only_a_volunteers_hours_are_certified() -> None:
    error = refused(lambda: certificate(holder="household:h-1"))

    assert isinstance(error, Invalid) and error.extra["field"] == "holder"


def pdf_text(found: Certificate) -> str:
    """The text of the certificate's PDF, lines wrapped where they were printed joined again."""
    reader = PdfReader(io.BytesIO(printing.certificate_pdf(found)))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_the_printed_certificate_reads_back_with_its_totals_and_a_chinese_name() -> None:
    served("r-1", hours="1.50", name="王小明", community="长山花园")
    served("r-2", category="haircut", hours="2.25")

    text = pdf_text(certificate())

    assert "王小明 (volunteer v-7)" in text
    assert "3.75 hours of confirmed volunteer service in 长山花园" in text
    assert "from 2026-01-01 to 2026-01-31" in text
    assert "Knife sharpening 1 1.50 15.00" in text
    assert "Haircut 1 2.25 18.00" in text
    assert "Total 2 3.75 33.00" in text


def test_a_certificate_without_a_recorded_community_says_so() -> None:
    served("r-1")

    text = pdf_text(certificate())

    assert "volunteer:v-7 (volunteer v-7) gave 1.00 hours" in text
    assert "The community where the service was done was not recorded." in text


def test_a_character_the_font_lacks_prints_as_a_question_mark_not_as_nothing() -> None:
    served("r-1", name="小明 \U0001f600 \U00020000")

    text = pdf_text(certificate())

    assert "小明 ? ? (volunteer v-7)" in text
    assert certificate().name == "小明 \U0001f600 \U00020000"


# Honour rolls


def test_an_honour_roll_ranks_by_hours_then_points_then_holder() -> None:
    served("r-1", volunteer="v-1", hours="2.00")
    served("r-2", volunteer="v-2", category="haircut", hours="2.00")
    served("r-3", volunteer="v-3", hours="5.00")
    served("r-4", volunteer="v-4", hours="2.00")
    served("r-5", volunteer="v-5", hours="0.50")

    found = roll()

    assert [(h.rank, h.holder, h.hours, h.points) for h in found.honours] == [
        (1, "volunteer:v-3", Decimal("5.00"), Decimal("50.00")),
        (2, "volunteer:v-1", Decimal("2.00"), Decimal("20.00")),
        (3, "volunteer:v-4", Decimal("2.00"), Decimal("20.00")),
        (4, "volunteer:v-2", Decimal("2.00"), Decimal("16.00")),
        (5, "volunteer:v-5", Decimal("0.50"), Decimal("5.00")),
    ]
    assert [h.holder for h in roll(limit=2).honours] == ["volunteer:v-3", "volunteer:v-1"]


def test_hours_that_sum_to_the_same_total_tie_exactly_on_sqlite_too() -> None:
    for number, hours in enumerate(("0.10", "0.20")):
        served(f"a-{number}", volunteer="v-1", hours=hours)
    served("b-0", volunteer="v-2", hours="0.30")

    found = roll()

    assert [(h.holder, h.hours) for h in found.honours] == [
        ("volunteer:v-1", Decimal("0.30")),
        ("volunteer:v-2", Decimal("0.30")),
    ]


def test_an_honour_roll_leaves_out_reversed_earnings_and_other_periods() -> None:
    served("r-1", volunteer="v-1", hours="9.00")
    reversed_("earn:r-1", JAN_1 + DAY)
    served("r-2", volunteer="v-2", hours="1.00")
    served("r-3", volunteer="v-3", hours="8.00", on=datetime(2025, 12, 31, 23, 0, tzinfo=UTC))

    found = roll()

    assert [h.holder for h in found.honours] == ["volunteer:v-2"]
    in_shanghai = roll(zone="Asia/Shanghai")
    assert [h.holder for h in in_shanghai.honours] == ["volunteer:v-3", "volunteer:v-2"]


def test_a_teams_honour_roll_counts_only_the_hours_served_for_that_team() -> None:
    served("r-1", volunteer="v-1", hours="3.00", team="repairs", name="李师傅")
    served("r-2", volunteer="v-1", hours="4.00", team="elderly-care")
    served("r-3", volunteer="v-2", hours="2.00", team="repairs")

    repairs = roll(team_id="repairs")

    assert [(h.holder, h.name, h.hours) for h in repairs.honours] == [
        ("volunteer:v-1", "李师傅", Decimal("3.00")),
        ("volunteer:v-2", None, Decimal("2.00")),
    ]
    assert roll(team_id="mediation").honours == []
    assert roll().honours[0].hours == Decimal("7.00")


@pytest.mark.parametrize(
    ("fields", "field"), [({"limit": 0}, "limit"), ({"team_id": "a b"}, "team")]
)
def test_an_honour_roll_asked_for_badly_is_refused(fields: dict[str, Any], field: str) -> None:
    error = refused(lambda: roll(**fields))

    assert isinstance(error, Invalid) and error.extra["field"] == field


# Over HTTP


CERTIFICATE = "/v1/accounts/volunteer:v-7/certificate?from=2026-01-01&to=2026-01-31"


def test_a_volunteer_reads_their_certificate_as_json(client: FlaskClient) -> None:
    served("r-1", hours="1.50", name="王小明", community="长山花园")

    response = client.get(CERTIFICATE, headers=VOLUNTEER)

    assert response.status_code == 200
    body = response.json
    assert body["name"] == "王小明" and body["communities"] == ["长山花园"]
    assert body["categories"] == [
        {"category": "knife_sharpening", "services": 1, "hours": "1.50", "points": "15.00"}
    ]
    assert (body["total_hours"], body["total_points"], body["total_services"]) == (
        "1.50",
        "15.00",
        1,
    )


def test_a_volunteer_downloads_their_certificate_as_a_pdf(client: FlaskClient) -> None:
    served("r-1", hours="2.00")

    response = client.get(CERTIFICATE, headers={**VOLUNTEER, "Accept": "application/pdf"})
    by_parameter = client.get(f"{CERTIFICATE}&format=pdf", headers=VOLUNTEER)

    assert response.status_code == by_parameter.status_code == 200
    assert response.mimetype == by_parameter.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="service-hours-volunteer-v-7-2026-01-01-2026-01-31.pdf"'
    )
    text = PdfReader(io.BytesIO(response.data)).pages[0].extract_text()
    assert "Total 1 2.00 20.00" in text


def test_another_volunteers_certificate_is_not_found(client: FlaskClient) -> None:
    served("r-1", volunteer="v-8")

    response = client.get(
        "/v1/accounts/volunteer:v-8/certificate?from=2026-01-01&to=2026-01-31", headers=VOLUNTEER
    )

    assert response.status_code == 404
    assert response.json["detail"] == "No account 'volunteer:v-8'"


def test_everyone_may_see_an_honour_roll(client: FlaskClient) -> None:
    served("r-1", volunteer="v-1", hours="2.00", team="repairs")

    for who in (bearer("resident", "r-1"), VOLUNTEER, STAFF):
        response = client.get(
            "/v1/honour-roll?from=2026-01-01&to=2026-01-31&team=repairs&limit=5", headers=who
        )
        assert response.status_code == 200
        assert response.json["team"] == "repairs"
        assert response.json["honours"] == [
            {
                "rank": 1,
                "holder": "volunteer:v-1",
                "name": None,
                "services": 1,
                "hours": "2.00",
                "points": "20.00",
            }
        ]
