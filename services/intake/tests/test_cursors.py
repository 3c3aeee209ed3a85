"""Cursors are taken back only as given: a hand-made one, or one given for another list, is a
422 naming the cursor, never a 500 nor a page of another list."""

from __future__ import annotations

import base64
import json

import pytest

from services.intake import clients, listing
from services.intake.config import runtime
from services.intake.tests.builders import a_request, a_resident
from services.intake.tests.test_api import bearer
from services.intake.tests.test_listing import EVERYTHING, frozen, the_neighbourhood
from shared.errors import Invalid

STAFF = bearer("duty-officer", "staff")
__all__ = ["frozen"]  # a fixture of test_listing's, used here


def hand_made(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def next_cursor(response) -> str:
    return json.loads(response.headers["X-Pagination"])["next_cursor"]


class TestTheChangeFeed:
    @pytest.mark.parametrize(
        "after",
        [
            *("99999999999999999999", "2147483648", "-1", "1_000", "\u0661", " 1", "1.", ".1"),
            *("9223372036854775808.1", "1.2147483648", "1.2.3", "1.\u0661"),
        ],
    )
    def test_a_cursor_no_entry_can_have_is_a_422(self, client, after):
        response = client.get("/v1/requests/changes", query_string={"after": after}, headers=STAFF)
        assert response.status_code == 422
        assert response.json["field"] == "after"

    @pytest.mark.parametrize("after", ["0.0", "9223372036854775807.2147483647", "12.7"])
    def test_a_transaction_and_an_entry_is_a_cursor(self, client, after):
        response = client.get("/v1/requests/changes", query_string={"after": after}, headers=STAFF)
        assert response.status_code == 200
        assert response.json == {"changes": [], "next_cursor": after}

    def test_the_largest_id_the_database_holds_is_a_cursor(self, client):
        last = str(listing.MAX_ENTRY_ID)
        response = client.get("/v1/requests/changes", query_string={"after": last}, headers=STAFF)
        assert response.status_code == 200
        assert response.json == {"changes": [], "next_cursor": last}


class TestListCursors:
    @pytest.mark.parametrize(
        "values",
        [
            ["x", "2026-12-01T09:00:00", "a"],
            ["x", "9999-12-31T23:59:59-14:00", "a"],
            ["x", "0001-01-01T00:00:00+01:00", "a"],
            ["x", 12, "a"],
            ["x", "2026-12-01T09:00:00+00:00", 5],
            ["x", "2026-12-01T09:00:00+00:00", ["a"]],
            ["x", "2026-12-01T09:00:00+00:00", "a" * 65],
            ["x", "2026-12-01T09:00:00+00:00"],
            {"a": 1},
        ],
    )
    def test_a_hand_made_cursor_is_a_422_even_to_a_resident(self, client, resident_id, values):
        # Given the fingerprint of the resident's own list, so only the values can be wrong.
        where = listing.RequestFilter(resident_id=resident_id)
        if isinstance(values, list) and values and values[0] == "x":
            values = [listing._fingerprint("newest", where), *values[1:]]
        response = client.get(
            "/v1/requests",
            query_string={"after": hand_made(values)},
            headers=bearer(resident_id, "resident"),
        )
        assert response.status_code == 422
        assert response.json["field"] == "after"

    def test_a_cursor_of_one_sort_is_refused_by_another_of_the_same_keys(self, client, frozen):
        with runtime().db.transaction() as session:
            the_neighbourhood(session)
        first = client.get("/v1/requests?sort=newest&page_size=2", headers=STAFF)
        cursor = next_cursor(first)
        assert (
            client.get(f"/v1/requests?sort=newest&after={cursor}", headers=STAFF).status_code == 200
        )
        for sort in ("oldest", "updated"):
            refused = client.get(f"/v1/requests?sort={sort}&after={cursor}", headers=STAFF)
            assert (refused.status_code, refused.json["field"]) == (422, "after")

    def test_a_cursor_of_one_filter_is_refused_by_another(self, client, frozen):
        with runtime().db.transaction() as session:
            the_neighbourhood(session)
        first = client.get(
            "/v1/requests?building=3&community=changshan-garden&page_size=2", headers=STAFF
        )
        cursor = next_cursor(first)
        same = client.get(
            f"/v1/requests?community=changshan-garden&building=3&after={cursor}", headers=STAFF
        )
        other = client.get(f"/v1/requests?community=changshan-garden&after={cursor}", headers=STAFF)
        assert same.status_code == 200
        assert (other.status_code, other.json["field"]) == (422, "after")

    def test_statuses_named_in_another_order_are_the_same_filter(self, session_with_requests):
        session = session_with_requests
        one = listing.RequestFilter(status=("submitted", "cancelled"))
        other = listing.RequestFilter(status=("cancelled", "submitted"))
        page = listing.list_requests(session, where=one, page_size=1)
        assert page.next_cursor is not None
        listing.list_requests(session, where=other, after=page.next_cursor)
        with pytest.raises(Invalid, match="cursor"):
            listing.list_requests(session, where=EVERYTHING, after=page.next_cursor)


@pytest.fixture
def session_with_requests():
    with runtime().db.transaction() as session:
        for number in ("501", "502"):
            a_request(session, resident=a_resident(session, number=number))
        yield session


class TestApiKeyCursors:
    @pytest.fixture(autouse=True)
    def keys(self):
        with runtime().db.transaction() as session:
            for name in ("a-console", "b-partner", "c-hotline"):
                clients.create_api_client(session, name=name)
        self.admin = bearer("root", "admin")

    @pytest.mark.parametrize(
        "after", ["garbage", "a-console", hand_made(["a-console"]), hand_made([5, None])]
    )
    def test_a_cursor_not_given_is_a_422(self, client, after):
        response = client.get("/v1/api-keys", query_string={"after": after}, headers=self.admin)
        assert (response.status_code, response.json["field"]) == (422, "after")

    def test_a_cursor_of_the_unfiltered_list_is_refused_by_the_filtered_one(self, client):
        first = client.get("/v1/api-keys?page_size=1", headers=self.admin)
        cursor = next_cursor(first)
        following = client.get(f"/v1/api-keys?page_size=1&after={cursor}", headers=self.admin)
        filtered = client.get(f"/v1/api-keys?revoked=false&after={cursor}", headers=self.admin)
        assert [key["name"] for key in following.json] == ["b-partner"]
        assert (filtered.status_code, filtered.json["field"]) == (422, "after")
