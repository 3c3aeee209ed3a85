"""Requests in bulk: filters, overdue, sorting, keyset pages, the change feed and counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.intake import listing, requests
from services.intake.config import runtime
from services.intake.directory import Place
from services.intake.tests.builders import (
    DUTY_OFFICER,
    HOTLINE,
    a_category,
    a_request,
    a_resident,
    walk_to_completed,
)
from services.intake.tests.test_api import bearer
from shared import clock
from shared.errors import Invalid
from tests.support import eventually

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EVERYTHING = listing.RequestFilter()


@pytest.fixture
def frozen():
    with clock.freeze(T0):
        yield


def ids(page: listing.Page) -> list[str]:
    return [request.id for request in page.items]


def the_neighbourhood(session):
    """Requests across two buildings, priorities and categories, made an hour apart."""
    a_category(session, "knife_sharpening", group="household_repair")
    a_category(session, "lunch_delivery", group="elderly_care")
    made = {}
    for name, building, number, category, priority in (
        ("urgent-3", "3", "501", "knife_sharpening", "urgent"),
        ("normal-3", "3", "502", "knife_sharpening", "normal"),
        ("high-3", "3", "503", "lunch_delivery", "high"),
        ("urgent-5", "5", "101", "lunch_delivery", "urgent"),
        ("low-3", "3", "504", "knife_sharpening", "low"),
    ):
        resident = a_resident(session, building=building, number=number)
        made[name] = a_request(session, resident=resident, category=category, priority=priority)
        clock.advance(timedelta(hours=1))
    return made


class TestFilters:
    def test_a_place_takes_in_everything_beneath_it(self, session, frozen):
        made = the_neighbourhood(session)
        in_three = listing.list_requests(
            session, where=listing.RequestFilter(place=Place("changshan-garden", "3"))
        )
        assert set(ids(in_three)) == {
            made[n].id for n in ("urgent-3", "normal-3", "high-3", "low-3")
        }
        in_unit = listing.list_requests(
            session, where=listing.RequestFilter(place=Place("changshan-garden", "5", "1"))
        )
        assert in_unit.total == 0

    @pytest.mark.parametrize(
        ("where", "expected"),
        [
            (listing.RequestFilter(category=("lunch_delivery",)), {"high-3", "urgent-5"}),
            (listing.RequestFilter(group="household_repair"), {"urgent-3", "normal-3", "low-3"}),
            (
                listing.RequestFilter(priority=("urgent", "high")),
                {"urgent-3", "high-3", "urgent-5"},
            ),
            (listing.RequestFilter(channel=("hotline",)), set()),
            (
                listing.RequestFilter(created_before=T0 + timedelta(minutes=90)),
                {"urgent-3", "normal-3"},
            ),
        ],
    )
    def test_each_filter_selects_what_it_names(self, session, frozen, where, expected):
        made = the_neighbourhood(session)
        found = set(ids(listing.list_requests(session, where=where)))
        assert found == {made[name].id for name in expected}

    def test_overdue_means_open_and_past_the_deadline_now_pending(self, session, frozen):
        made = the_neighbourhood(session)
        # Now T0 + 5h: urgent ones had 10 minutes to be taken on, high 30, normal (made at
        # T0 + 1h) 4 hours, so it is due this very moment and not yet past it.
        overdue = listing.list_requests(session, where=listing.RequestFilter(overdue=True))
        assert set(ids(overdue)) == {made[n].id for n in ("urgent-3", "high-3", "urgent-5")}
        clock.advance(timedelta(seconds=1))
        overdue = listing.list_requests(session, where=listing.RequestFilter(overdue=True))
        assert made["normal-3"].id in ids(overdue)
        walk_to_completed(session, made["urgent-3"])
        overdue = listing.list_requests(session, where=listing.RequestFilter(overdue=True))
        assert made["urgent-3"].id not in ids(overdue)

    def test_accepting_moves_the_deadline_to_resolving(self, session, frozen):
        made = the_neighbourhood(session)
        request = made["urgent-5"]
        requests.record_acceptance(
            session,
            request_id=request.id,
            assignment_id="a1",
            volunteer_id="v1",
            accepted_by="volunteer:v1",
            at=T0,
        )
        assert request.due_at == request.resolve_by == request.created_at + timedelta(hours=4)

    def test_the_assignee_filter_finds_a_volunteers_requests(self, session, frozen):
        made = the_neighbourhood(session)
        walk_to_completed(session, made["low-3"])
        found = listing.list_requests(session, where=listing.RequestFilter(assignee_id="v1"))
        assert ids(found) == [made["low-3"].id]


class TestSortingAndPages:
    def test_most_urgent_first_then_the_deadline_longest_past(self, session, frozen):
        made = the_neighbourhood(session)
        page = listing.list_requests(session, where=EVERYTHING, sort="urgency")
        assert ids(page) == [
            made[name].id for name in ("urgent-3", "urgent-5", "high-3", "normal-3", "low-3")
        ]

    @pytest.mark.parametrize("sort", sorted(listing.SORTS))
    def test_keyset_pages_give_every_request_once_in_order(self, session, frozen, sort):
        the_neighbourhood(session)
        for index in range(7):
            a_request(session, resident=a_resident(session, building="7", number=str(index)))
        whole = ids(listing.list_requests(session, where=EVERYTHING, sort=sort, page_size=100))
        seen, after = [], None
        while True:
            page = listing.list_requests(
                session, where=EVERYTHING, sort=sort, after=after, page_size=3
            )
            assert page.total == 12
            seen += ids(page)
            after = page.next_cursor
            if after is None:
                break
        assert seen == whole

    def test_a_cursor_that_is_not_one_is_refused(self, session):
        with pytest.raises(Invalid, match="cursor"):
            listing.list_requests(session, where=EVERYTHING, after="not-a-cursor")


def served_after(after, count=1):
    """The feed's first answer past ``after`` with at least ``count`` changes. On PostgreSQL the
    feed serves an entry once every older transaction on the server has ended, and tests on
    other databases of the server may hold one open for a while."""

    def read():
        with runtime().db.read() as session:
            found, cursor = listing.changes(session, after=after)
        return (found, cursor) if len(found) >= count else None

    return eventually(read, what=f"{count} change(s) in the feed")


class TestTheChangeFeed:
    def test_each_change_comes_once_in_order_after_the_cursor(self):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id
        first, cursor = served_after(None)
        assert [c.entry.action for c in first] == ["submitted"]
        with runtime().db.transaction() as session:
            requests.cancel_request(
                session, request_id=request_id, cancelled_by=DUTY_OFFICER, reason="No need"
            )
        more, cursor = served_after(cursor)
        assert [(c.entry.action, c.request.status) for c in more] == [("cancel", "cancelled")]
        with runtime().db.read() as session:
            assert listing.changes(session, after=cursor) == ([], cursor)

    @pytest.mark.parametrize("cursor", ["x", "1.2.3", "-1", "1." + "9" * 11, "9" * 20 + ".1"])
    def test_a_cursor_that_is_not_one_is_refused(self, session, cursor):
        with pytest.raises(Invalid, match="cursor of the change feed"):
            listing.changes(session, after=cursor)


@pytest.mark.postgres
class TestTheChangeFeedOnPostgreSQL:
    """Entries' ids are handed out as they are written, not as their transactions commit."""

    @pytest.fixture
    def two_homes(self):
        with runtime().db.transaction() as session:
            a_category(session)
            homes = [a_resident(session, building=building) for building in ("3", "4")]
        return homes

    @staticmethod
    def submitted(session, resident):
        return requests.submit_request(
            session,
            submitted_by=HOTLINE,
            category="knife_sharpening",
            summary="Two kitchen knives",
            resident_id=resident.id,
        )

    def feed(self, after=None):
        with runtime().db.read() as session:
            found, cursor = listing.changes(session, after=after)
            return [change.request.id for change in found], cursor

    def test_an_entry_committed_late_is_not_passed_over_by_a_cursor(self, two_homes, frozen):
        first, second = two_homes
        held = runtime().db.sessions()
        try:
            with held.begin():
                slow = self.submitted(held, first)
                held.flush()  # its entry has an id, its transaction has not committed
                with runtime().db.transaction() as session:
                    quick = self.submitted(session, second)
                # However long the first takes to commit (a loaded machine, a lock waited for).
                clock.advance(timedelta(seconds=30))
                # The quick one's entry, with the higher id, is committed: it waits.
                assert self.feed() == ([], None)
        finally:
            held.close()

        served, cursor = served_after(None, count=2)

        assert [change.request.id for change in served] == [slow.id, quick.id]
        assert self.feed(cursor) == ([], cursor)

    def test_a_cursor_of_an_entry_id_alone_stands_at_that_entry(self, two_homes):
        for home in two_homes:
            with runtime().db.transaction() as session:
                self.submitted(session, home)
        first, second = served_after(None, count=2)[0]

        # As SQLite's feed and this one before it gave them: the entry's number alone.
        assert [c.request.id for c in served_after(str(first.entry.id))[0]] == [second.request.id]
        assert self.feed(str(second.entry.id)) == ([], str(second.entry.id))


class TestCounts:
    def test_requests_are_counted_by_building_status_and_category(self, session, frozen):
        made = the_neighbourhood(session)
        walk_to_completed(session, made["low-3"])
        by_building = listing.count_requests(session, by="building", where=EVERYTHING)
        assert by_building == [
            {"value": "changshan-garden/3", "count": 4},
            {"value": "changshan-garden/5", "count": 1},
        ]
        by_status = listing.count_requests(session, by="status", where=EVERYTHING)
        assert by_status == [
            {"value": "submitted", "count": 4},
            {"value": "completed", "count": 1},
        ]
        by_group = listing.count_requests(
            session, by="group", where=listing.RequestFilter(place=Place("changshan-garden", "3"))
        )
        assert by_group == [
            {"value": "household_repair", "count": 3},
            {"value": "elderly_care", "count": 1},
        ]


class TestStoryNine:
    def test_the_console_lists_open_requests_past_their_deadline_in_building_3_most_urgent_first(
        self, client, frozen
    ):
        with runtime().db.transaction() as session:
            made = the_neighbourhood(session)
            walk_to_completed(session, made["high-3"])
        clock.advance(timedelta(minutes=1))
        staff = bearer("duty-officer", "staff")
        response = client.get(
            "/v1/requests?community=changshan-garden&building=3&overdue=true&sort=urgency",
            headers=staff,
        )
        assert response.status_code == 200
        assert [r["id"] for r in response.json] == [made["urgent-3"].id, made["normal-3"].id]
        assert all(r["is_overdue"] and r["location"]["building"] == "3" for r in response.json)
        pagination = json.loads(response.headers["X-Pagination"])
        assert (pagination["total"], pagination["next_cursor"]) == (2, None)

    def test_a_category_due_at_once_makes_its_requests_overdue_from_the_start(
        self, client, api_key, resident_id
    ):
        at_once = {"acknowledge_minutes": 0, "resolve_minutes": 0}
        headers = {"X-API-Key": api_key}
        created = client.post(
            "/v1/categories",
            json={
                "code": "drill",
                "names": {"en": "Drill", "zh-CN": "演练"},
                "deadlines": {
                    priority: at_once for priority in ("low", "normal", "high", "urgent")
                },
            },
            headers=headers,
        )
        assert created.status_code == 201
        posted = client.post(
            "/v1/requests",
            json={"category": "drill", "summary": "Drill", "resident_id": resident_id},
            headers=headers,
        ).json
        listed = client.get("/v1/requests?overdue=true&category=drill", headers=headers).json
        assert [r["id"] for r in listed] == [posted["id"]]

    def test_the_next_page_follows_the_cursor_over_http(self, client, frozen):
        with runtime().db.transaction() as session:
            the_neighbourhood(session)
        staff = bearer("duty-officer", "staff")
        first = client.get("/v1/requests?sort=urgency&page_size=2", headers=staff)
        cursor = json.loads(first.headers["X-Pagination"])["next_cursor"]
        second = client.get(f"/v1/requests?sort=urgency&page_size=2&after={cursor}", headers=staff)
        assert len({r["id"] for r in first.json + second.json}) == 4
        wrong = client.get("/v1/requests?sort=newest&after=" + cursor, headers=staff)
        assert wrong.status_code == 422

    def test_the_feed_and_counts_answer_over_http(self, client):
        with runtime().db.transaction() as session:
            a_request(session)
        staff = bearer("duty-officer", "staff")
        counted = client.get("/v1/requests/counts?by=status", headers=staff).json
        assert counted == {"by": "status", "counts": [{"value": "submitted", "count": 1}]}
        # On PostgreSQL once every older transaction on the server has ended (other tests').
        feed = eventually(
            lambda: (
                (answer := client.get("/v1/requests/changes", headers=staff).json)["changes"]
                and answer
            ),
            what="the entry in the feed",
        )
        assert [c["entry"]["action"] for c in feed["changes"]] == ["submitted"]
        assert feed["next_cursor"] == feed["changes"][0]["cursor"]
