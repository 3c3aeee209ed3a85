"""The chaos run's audit: what it calls lost, doubled or unbalanced."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal

from devtools.chaos import NOTIFICATIONS, Observed, judge

POINTS = Decimal("15.00")


def a_clean_run(count: int = 3) -> tuple[dict[str, str], Observed]:
    """``count`` requests posted, each confirmed, assigned, credited and told exactly once."""
    posted = {f"chaos-run-{i}": uuid.uuid4().hex for i in range(count)}
    ids = list(posted.values())
    return posted, Observed(
        requests=[(ref, rid, "confirmed") for ref, rid in posted.items()],
        assignments=[(rid, "confirmed") for rid in ids],
        credits=[(f"earn:{rid}", rid, POINTS) for rid in ids],
        entries=[entry for _ in ids for entry in ((1, -POINTS), (2, POINTS))],
        balances={1: ("issuance", -POINTS * count), 2: ("volunteer:v", POINTS * count)},
        notifications=[
            (uuid.uuid4().hex, template, rid) for rid in ids for template, _ in NOTIFICATIONS
        ],
        dead_letters=[],
        confirmed_by_api=count,
        volunteer_balance_by_api=POINTS * count,
    )


def test_a_run_where_everything_happened_once_has_no_problems():
    posted, observed = a_clean_run()

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert verdict.problems == []
    assert not verdict.lost and not verdict.doubled


def test_a_request_created_twice_for_one_posted_is_doubled():
    posted, observed = a_clean_run()
    reference = next(iter(posted))
    extra = uuid.uuid4().hex
    observed = replace(observed, requests=[*observed.requests, (reference, extra, "confirmed")])

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert reference in verdict.doubled


def test_a_posted_request_intake_does_not_hold_is_lost():
    posted, observed = a_clean_run()
    reference = next(iter(posted))
    observed = replace(observed, requests=[r for r in observed.requests if r[0] != reference])

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert reference in verdict.lost


def test_a_confirmed_request_without_its_credit_is_lost_and_the_balance_is_short():
    posted, observed = a_clean_run()
    reference, request_id = next(iter(posted.items()))
    observed = replace(
        observed,
        credits=[c for c in observed.credits if c[1] != request_id],
        volunteer_balance_by_api=observed.volunteer_balance_by_api - POINTS,
    )

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert verdict.lost == {reference}
    assert any("volunteer's balance" in problem for problem in verdict.problems)


def test_a_request_credited_twice_is_doubled():
    posted, observed = a_clean_run()
    reference, request_id = next(iter(posted.items()))
    observed = replace(
        observed, credits=[*observed.credits, (f"earn:{request_id}-again", request_id, POINTS)]
    )

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert reference in verdict.doubled


def test_a_balance_that_is_not_the_sum_of_its_entries_is_a_problem():
    posted, observed = a_clean_run()
    observed = replace(
        observed, balances={**observed.balances, 2: ("volunteer:v", Decimal("999.00"))}
    )

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert any("balances differ" in problem for problem in verdict.problems)


def test_entries_that_do_not_sum_to_zero_are_a_problem():
    posted, observed = a_clean_run()
    observed = replace(observed, entries=[*observed.entries, (2, Decimal("1.00"))])

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert any("sum to 1.00" in problem for problem in verdict.problems)


def test_one_message_delivered_into_two_inbox_rows_is_a_notification_twice():
    posted, observed = a_clean_run()
    source, template, request_id = observed.notifications[0]
    observed = replace(
        observed, notifications=[*observed.notifications, (source, template, request_id)]
    )

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert any("delivered twice" in problem for problem in verdict.problems)


def test_a_missing_notification_loses_its_request():
    posted, observed = a_clean_run()
    reference, request_id = next(iter(posted.items()))
    observed = replace(
        observed,
        notifications=[
            n for n in observed.notifications if (n[1], n[2]) != ("points.credited", request_id)
        ],
    )

    verdict = judge(posted=posted, observed=observed, points_per_request=POINTS)

    assert verdict.lost == {reference}
