"""The bench's list figure times what it says: the lists the API answers, over the requests it
wrote, their totals those the filters select."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.intake.benchmark import COMMUNITY, DEPTH, LISTS, PAGE_SIZE, bench_lists
from services.intake.config import runtime
from services.intake.models import ServiceRequest
from services.intake.requests import OPEN
from shared import clock


def count(*conditions) -> int:
    with runtime().db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(ServiceRequest).where(*conditions)) or 0
        )


def test_timing_the_lists_writes_the_requests_asked_for_and_reads_what_the_filters_select():
    r = ServiceRequest
    now = datetime.now(UTC)
    with clock.freeze(now):
        timed = list(bench_lists(runtime().settings, [120, 300], repeats=3))

        in_building_1 = (r.community == COMMUNITY, r.building == "1", r.status.in_(OPEN))
        open_there, overdue_there = count(*in_building_1), count(*in_building_1, r.due_at < now)

    assert [figures.stored for figures in timed] == [120, 300]
    assert count() == 300
    # Every request made in the 90 days before now, most of the old ones no longer open.
    assert count(r.created_at < now, r.created_at >= now - timedelta(days=90)) == 300
    assert 0 < count(r.status.in_(OPEN)) < 300
    last = timed[-1]
    assert last.paging["first"]["total"] == open_there
    assert last.paging["overdue"]["total"] == overdue_there
    # 300 requests make 15 pages: the deep page is the last, short of DEPTH.
    assert last.depth == 300 // PAGE_SIZE < DEPTH
    assert (last.paging["deep"]["total"], last.paging["deep"]["next_cursor"]) == (300, None)
    for figures in timed:
        for name in LISTS:
            assert len(figures.seconds[name]) == 3 and min(figures.seconds[name]) > 0
