"""A list's total counts up to TOTAL_CAP: past it, the total is the cap, flagged as such, so
that a page of a long list costs what a page of a short one does."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import func, select

from services.intake import listing
from services.intake.benchmark import COMMUNITY, fill_requests, seed_community
from services.intake.config import runtime
from services.intake.directory import Place
from services.intake.models import ServiceRequest
from shared import clock

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_past_the_cap_the_total_is_the_cap_flagged_and_below_it_exact():
    db = runtime().db
    homes, deadlines = seed_community(db)
    with clock.freeze(NOW):
        fill_requests(
            db, homes, deadlines, count=listing.TOTAL_CAP + 1, now=NOW, rng=random.Random(7)
        )
        in_building_1 = listing.RequestFilter(place=Place(COMMUNITY, "1"))
        with db.read() as session:
            everything = listing.list_requests(session, where=listing.RequestFilter())
            building = listing.list_requests(session, where=in_building_1)
            counted = (
                session.scalar(
                    select(func.count()).where(
                        ServiceRequest.community == COMMUNITY, ServiceRequest.building == "1"
                    )
                )
                or 0
            )

    assert (everything.total, everything.is_total_capped) == (listing.TOTAL_CAP, True)
    assert len(everything.items) == 20 and everything.next_cursor is not None
    assert 0 < counted < listing.TOTAL_CAP
    assert (building.total, building.is_total_capped) == (counted, False)
