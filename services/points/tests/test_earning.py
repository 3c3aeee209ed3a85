"""Earning: hours reported done are held as points until the resident confirms them; then, or at
the community's deadline, they are posted or voided, once, whatever arrives in whatever order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.points import actors, earning
from services.points.config import runtime
from services.points.earning import EarningPolicy
from services.points.ledger import ISSUANCE_HOLDER
from services.points.models import POST
from services.points.tests.builders import (
    account,
    audit_findings,
    bearer,
    completed,
    confirmed,
    credit,
    fire_due_timers,
    rates,
    stored,
    transfers,
)
from shared import clock, events
from shared.consumers import PermanentError
from shared.settings import Settings, SettingsError
from tests.support import deliver_to, message_for, staged_messages

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


def report_done(**fields: Any) -> dict[str, Any]:
    """Deliver a completion, as dispatch publishes it; its payload."""
    payload = completed(**fields)
    deliver_to(actors.CONSUMERS, message_for(events.REQUEST_COMPLETED, payload, to="points"))
    return payload


def confirm(request_id: str, **fields: Any) -> bool:
    """Deliver a confirmation of ``request_id``, as intake publishes it."""
    payload = confirmed(request_id=request_id, **fields)
    return deliver_to(actors.CONSUMERS, message_for(events.REQUEST_CONFIRMED, payload, to="points"))


def points_credited() -> list[dict[str, Any]]:
    return [
        message.kwargs["data"]
        for message in staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
        if message.kwargs["template"] == "points.credited"
    ]


def refusals() -> list[str]:
    return [m.kwargs["reason"] for m in staged_messages(runtime(), events.EARNING_REFUSED)]


def volunteer() -> tuple[Decimal, Decimal]:
    """Volunteer v-7's (balance, points promised by pending transfers)."""
    found = account("volunteer:v-7")
    return found.balance, found.credits_pending


# Held, then posted


def test_hours_reported_done_are_held_at_the_categorys_rate_until_confirmed() -> None:
    rates(knife_sharpening=10)

    done = report_done(hours="1.50")

    held = stored(f"earn:{done['request_id']}")
    assert (held.status, held.kind, held.amount) == ("pending", "earn", Decimal(15))
    assert (held.debit, held.credit) == (ISSUANCE_HOLDER, "volunteer:v-7")
    assert (held.request_id, held.category, held.hours, held.rate) == (
        done["request_id"],
        "knife_sharpening",
        Decimal("1.50"),
        Decimal("10.00"),
    )
    assert (held.operator, held.on_timeout, held.timeout_s) == (
        "volunteer:v-7",
        "void",
        7 * 24 * 3600,
    )
    assert volunteer() == (Decimal(0), Decimal(15))
    assert points_credited() == []


def test_the_residents_confirmation_posts_the_held_points_and_tells_the_volunteer() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="1.50")

    assert confirm(done["request_id"], hours="1.50") is True

    posted = stored(f"earn:{done['request_id']}")
    assert (posted.status, posted.posted_amount) == ("posted", Decimal(15))
    assert posted.resolution is not None
    assert posted.resolution.operator == "resident:r-501"
    assert volunteer() == (Decimal(15), Decimal(0))
    assert points_credited() == [
        {
            "request_id": done["request_id"],
            "points": "15.00",
            "balance": "15.00",
            "hours": "1.50",
            "category": "knife_sharpening",
        }
    ]
    assert len(transfers()) == 1
    assert audit_findings() == []


@pytest.mark.parametrize(
    ("path", "body"),
    [("posting", {}), ("posting", {"amount": "1.00"}), ("voiding", {"reason": "by hand"})],
    ids=["post all", "post a part", "void"],
)
def test_held_points_are_not_posted_or_voided_by_hand(
    client: FlaskClient, path: str, body: dict[str, Any]
) -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="1.50")
    transfer_id = f"earn:{done['request_id']}"

    by_hand = client.post(
        f"/v1/transfers/{transfer_id}/{path}", json=body, headers=bearer("staff", "desk")
    )

    assert by_hand.status_code == 409
    assert by_hand.json["type"].endswith("/owned-by-earning")
    assert "confirmation" in by_hand.json["detail"]
    assert stored(transfer_id).status == "pending"
    assert volunteer() == (Decimal(0), Decimal(15))
    # The resident's confirmation still posts them, once.
    assert confirm(done["request_id"], hours="1.50") is True
    assert volunteer() == (Decimal(15), Decimal(0))


def test_the_rate_in_force_when_the_hours_were_reported_is_the_one_paid() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="2.00")
    rates(knife_sharpening=12)

    confirm(done["request_id"], hours="2.00")

    posted = stored(f"earn:{done['request_id']}")
    assert (posted.rate, posted.posted_amount) == (Decimal(10), Decimal(20))


def test_fewer_hours_confirmed_than_reported_post_part_of_the_held_points() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="2.00")

    confirm(done["request_id"], hours="0.50")

    assert stored(f"earn:{done['request_id']}").posted_amount == Decimal(5)
    assert volunteer() == (Decimal(5), Decimal(0))
    assert points_credited()[0]["hours"] == "0.50"


def test_fewer_hours_confirmed_again_find_the_part_posted_and_change_nothing() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="2.00")
    confirm(done["request_id"], hours="0.50")

    # Another confirmation of the request (a new message, not a redelivery).
    again = confirm(done["request_id"], hours="0.50")

    assert again is True
    assert stored(f"earn:{done['request_id']}").posted_amount == Decimal(5)
    assert volunteer() == (Decimal(5), Decimal(0))
    assert len(points_credited()) == 1
    assert audit_findings() == []


def test_more_hours_confirmed_than_reported_are_dead_lettered_and_change_nothing() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="1.00")

    with pytest.raises(
        PermanentError, match=r"3\.00 hour\(s\) were confirmed .* more than the 1\.00 reported done"
    ):
        confirm(done["request_id"], hours="3.00")

    assert stored(f"earn:{done['request_id']}").status == "pending"
    assert volunteer() == (Decimal(0), Decimal(10))


# Unconfirmed: the community's deadline


def test_hours_unconfirmed_at_the_deadline_are_voided_by_default() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="1.50")

    clock.advance(timedelta(days=7) - timedelta(seconds=1))
    assert fire_due_timers() == []
    clock.advance(timedelta(seconds=1))
    fire_due_timers()

    assert stored(f"earn:{done['request_id']}").status == "expired"
    assert volunteer() == (Decimal(0), Decimal(0))
    assert points_credited() == []
    assert audit_findings() == []


def test_a_confirmation_after_the_deadline_mints_nothing_and_says_why() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="1.50")
    clock.advance(timedelta(days=7))
    fire_due_timers()
    clock.advance(timedelta(days=1))

    assert confirm(done["request_id"]) is True

    assert volunteer() == (Decimal(0), Decimal(0))
    (reason,) = refusals()
    assert reason.startswith("its pending points were expired on 2026-12-07 09:00 UTC")


def test_where_the_community_says_so_unconfirmed_hours_are_posted_at_the_deadline() -> None:
    rates(knife_sharpening=10)
    policy = EarningPolicy(confirm_within=timedelta(days=3), when_unconfirmed=POST)
    with runtime().db.transaction() as session:
        earning.open_pending_earn(
            session,
            request_id="req-1",
            volunteer_id="v-7",
            category="knife_sharpening",
            hours=Decimal("1.00"),
            completed_by="volunteer:v-7",
            policy=policy,
        )

    clock.advance(timedelta(days=3))
    fire_due_timers()
    assert confirm("req-1", hours="1.00") is True

    assert stored("earn:req-1").status == "posted"
    assert volunteer() == (Decimal(10), Decimal(0))
    assert len(points_credited()) == 1
    assert refusals() == []


# Whatever the order of arrival


def test_a_confirmation_without_held_points_credits_the_hours_at_once_as_before() -> None:
    rates(knife_sharpening=10)

    confirm("req-1", hours="2.00")

    credited = stored("earn:req-1")
    assert (credited.status, credited.is_pending, credited.amount) == ("posted", False, Decimal(20))
    assert credited.operator == "resident:r-501"
    assert volunteer() == (Decimal(20), Decimal(0))


def test_hours_reported_after_they_were_credited_hold_nothing() -> None:
    rates(knife_sharpening=10)
    confirm("req-1", hours="2.00")

    report_done(request_id="req-1", hours="2.00")

    assert [t.id for t in transfers()] == ["earn:req-1"]
    assert volunteer() == (Decimal(20), Decimal(0))


def test_a_report_that_does_not_name_the_category_holds_nothing_and_the_confirmation_credits() -> (
    None
):
    rates(knife_sharpening=10)
    payload = completed(request_id="req-1", hours="1.00")
    del payload["category"]
    deliver_to(actors.CONSUMERS, message_for(events.REQUEST_COMPLETED, payload, to="points"))
    assert transfers() == []

    confirm("req-1", hours="1.00")

    assert volunteer() == (Decimal(10), Decimal(0))


def test_the_same_report_twice_holds_the_points_once() -> None:
    rates(knife_sharpening=10)
    done = report_done(hours="1.00")
    rates(knife_sharpening=11)  # compared at the rate it was priced at, not the new one

    report_done(**{key: done[key] for key in ("request_id", "hours", "volunteer_id")})

    assert len(transfers()) == 1
    assert volunteer() == (Decimal(0), Decimal(10))


@pytest.mark.parametrize(
    ("change", "field"),
    [({"hours": "2.00"}, "hours"), ({"volunteer_id": "v-8"}, "credit")],
)
def test_a_second_report_that_differs_is_dead_lettered_and_changes_nothing(
    change: dict[str, str], field: str
) -> None:
    rates(knife_sharpening=10)
    done = report_done(request_id="req-1", hours="1.00")
    again = completed(**{**{"request_id": "req-1", "hours": "1.00"}, **change})

    with pytest.raises(PermanentError, match=f"exists with {field}"):
        deliver_to(actors.CONSUMERS, message_for(events.REQUEST_COMPLETED, again, to="points"))

    assert stored(f"earn:{done['request_id']}").hours == Decimal("1.00")
    assert len(transfers()) == 1


def test_a_confirmation_naming_another_volunteer_than_the_held_points_is_dead_lettered() -> None:
    rates(knife_sharpening=10)
    report_done(request_id="req-1")

    with pytest.raises(PermanentError, match="exists with credit"):
        confirm(
            "req-1", volunteer_id="v-8", accepted_by="volunteer:v-8", completed_by="volunteer:v-8"
        )

    assert stored("earn:req-1").status == "pending"


# Separation of duties


def test_a_confirmation_by_one_who_did_the_work_voids_the_held_points() -> None:
    rates(knife_sharpening=10)
    report_done(request_id="req-1")

    assert confirm("req-1", confirmed_by="volunteer:v-7") is True

    voided = stored("earn:req-1")
    assert voided.status == "voided"
    assert voided.resolution is not None and voided.resolution.reason is not None
    assert voided.resolution.reason.startswith("No points: it was confirmed by volunteer:v-7")
    assert volunteer() == (Decimal(0), Decimal(0))
    (reason,) = refusals()
    assert "neither the resident nor staff" in reason


def test_hours_reported_after_a_refused_confirmation_hold_nothing() -> None:
    rates(knife_sharpening=10)
    confirm("req-1", confirmed_by="volunteer:v-7")

    report_done(request_id="req-1")

    assert transfers() == []


def test_a_direct_credit_is_still_once_per_request() -> None:
    rates(knife_sharpening=10)
    credit(request_id="req-1", hours="1.00")

    again = credit(request_id="req-1", hours="1.00")

    assert again.id == "earn:req-1" and len(transfers()) == 1


# The community's policy, as configured


def test_the_policy_is_read_from_the_settings() -> None:
    def policy(**env: str) -> EarningPolicy:
        settings = Settings.from_env("points", dict(env))
        return EarningPolicy(
            timedelta(days=settings.confirm_within_days), settings.unconfirmed_earnings
        )

    assert policy() == EarningPolicy(timedelta(days=7), "void")
    assert policy(CONFIRM_WITHIN_DAYS="14", UNCONFIRMED_EARNINGS="post") == EarningPolicy(
        timedelta(days=14), "post"
    )


def test_bad_policy_settings_are_refused_all_at_once() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env("points", {"CONFIRM_WITHIN_DAYS": "0", "UNCONFIRMED_EARNINGS": "keep"})

    assert len(refused.value.problems) == 2
    with pytest.raises(SettingsError, match="must be an integer"):
        Settings.from_env("points", {"CONFIRM_WITHIN_DAYS": "a week"})
