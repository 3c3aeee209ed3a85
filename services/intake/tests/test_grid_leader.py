"""A grid leader: a resident responsible for places of the grid, acting at intake for the
residents who live there, on the requests placed there, and on nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from services.intake import directory, requests
from services.intake.config import runtime
from services.intake.directory import Place
from services.intake.policy import PartyToTheService
from services.intake.tests.builders import a_request, a_resident, request_body, walk_to_completed
from services.intake.tests.test_api import bearer
from shared import events
from shared.auth import Principal
from tests.support import staged_messages

GRID_LEADER = "grid_leader"
STAFF = bearer("duty-officer", "staff")


@dataclass(frozen=True)
class Grid:
    """Building 3 led by ``leader``; requests in two of its units and one in building 5."""

    leader: str
    unit_leader: str
    in_unit_2: str
    in_unit_1: str
    elsewhere: str
    resident_in_unit_1: str
    resident_elsewhere: str


def lead(session, place: Place, resident_id: str) -> None:
    node = directory.find_node(session, place)
    directory.update_node(
        session, node_id=node.id, responsible={"name": "Zhao Ming", "resident_id": resident_id}
    )


@pytest.fixture
def grid() -> Grid:
    with runtime().db.transaction() as session:
        in_unit_2 = a_request(session)
        in_unit_1 = a_request(session, resident=a_resident(session, unit="1", number="101"))
        elsewhere = a_request(session, resident=a_resident(session, building="5", number="101"))
        leader = a_resident(session, number="502", name="Zhao Ming")
        unit_leader = a_resident(session, unit="1", number="102", name="Qian Li")
        lead(session, Place("changshan-garden", "3"), leader.id)
        lead(session, Place("changshan-garden", "3", "1"), unit_leader.id)
        for request in (in_unit_2, in_unit_1, elsewhere):
            walk_to_completed(session, request)
        return Grid(
            leader=leader.id,
            unit_leader=unit_leader.id,
            in_unit_2=in_unit_2.id,
            in_unit_1=in_unit_1.id,
            elsewhere=elsewhere.id,
            resident_in_unit_1=in_unit_1.resident_id,
            resident_elsewhere=elsewhere.resident_id,
        )


def confirmation_by(client, leader_id: str, request_id: str) -> dict:
    """The request as a grid leader's confirmation of it left it (the confirmation must pass)."""
    confirmed = client.post(
        f"/v1/requests/{request_id}/confirmation", headers=bearer(leader_id, GRID_LEADER)
    )
    assert confirmed.status_code == 200, confirmed.json
    return confirmed.json


def as_leader(grid: Grid) -> dict[str, str]:
    return bearer(grid.leader, GRID_LEADER)


class TestReading:
    def test_a_building_leader_lists_the_requests_of_every_place_beneath_their_building(
        self, client, grid
    ):
        listed = client.get("/v1/requests?sort=oldest", headers=as_leader(grid))

        assert listed.status_code == 200
        assert [request["id"] for request in listed.json] == [grid.in_unit_2, grid.in_unit_1]

    def test_a_unit_leader_lists_their_unit_but_not_the_rest_of_the_building(self, client, grid):
        listed = client.get("/v1/requests", headers=bearer(grid.unit_leader, GRID_LEADER))

        assert [request["id"] for request in listed.json] == [grid.in_unit_1]

    def test_a_grid_leader_who_leads_no_place_lists_only_their_own_requests(self, client, grid):
        listed = client.get("/v1/requests", headers=bearer(grid.resident_elsewhere, GRID_LEADER))
        nobodys = client.get("/v1/requests", headers=bearer(grid.leader, GRID_LEADER))

        assert listed.status_code == 200
        assert [request["id"] for request in listed.json] == [grid.elsewhere]
        assert grid.elsewhere not in [request["id"] for request in nobodys.json]

    def test_a_grid_leader_reads_and_lists_their_own_request_outside_their_area(self, client, grid):
        with runtime().db.transaction() as session:
            lead(session, Place("changshan-garden", "3", "1"), grid.resident_elsewhere)
        as_them = bearer(grid.resident_elsewhere, GRID_LEADER)

        listed = client.get("/v1/requests?sort=oldest", headers=as_them)
        shown = client.get(f"/v1/requests/{grid.elsewhere}", headers=as_them)
        others = client.get(f"/v1/requests/{grid.in_unit_2}", headers=as_them)

        assert [request["id"] for request in listed.json] == [grid.in_unit_1, grid.elsewhere]
        assert json.loads(listed.headers["X-Pagination"])["total"] == 2
        assert shown.status_code == 200
        assert shown.json["resident_id"] == grid.resident_elsewhere
        assert others.status_code == 404

    def test_a_grid_leader_reads_a_request_in_their_area_but_one_elsewhere_is_as_if_missing(
        self, client, grid
    ):
        shown = client.get(f"/v1/requests/{grid.in_unit_1}", headers=as_leader(grid))
        hidden = client.get(f"/v1/requests/{grid.elsewhere}", headers=as_leader(grid))
        missing = client.get("/v1/requests/nothing", headers=as_leader(grid))

        assert shown.status_code == 200
        assert (hidden.status_code, missing.status_code) == (404, 404)
        assert hidden.json["detail"] == f"No request {grid.elsewhere}"
        assert missing.json["detail"] == "No request nothing"

    def test_a_grid_leader_sees_the_public_timeline_only(self, client, grid):
        client.post(
            f"/v1/requests/{grid.in_unit_1}/notes",
            json={"text": "Staff only", "public": False},
            headers=STAFF,
        )

        shown = client.get(f"/v1/requests/{grid.in_unit_1}", headers=as_leader(grid)).json

        assert "Staff only" not in [entry["note"] for entry in shown["timeline"]]


class TestSubmitting:
    def test_a_grid_leader_files_for_a_resident_of_their_area_on_the_residents_behalf(
        self, client, grid
    ):
        body = request_body(
            grid.resident_in_unit_1,
            location={
                "community": "changshan-garden",
                "building": "3",
                "unit": "1",
                "household": "101",
            },
        )

        created = client.post("/v1/requests", json=body, headers=as_leader(grid))

        assert created.status_code == 201, created.json
        assert created.json["on_behalf"] is True
        assert created.json["resident_id"] == grid.resident_in_unit_1
        assert (
            f"filed by resident:{grid.leader} on the resident's behalf"
            in (created.json["timeline"][0]["note"])
        )

    def test_a_grid_leader_filing_for_a_resident_outside_their_area_is_told_there_is_none(
        self, client, grid
    ):
        body = request_body(grid.resident_elsewhere, location=None)
        del body["location"]

        refused = client.post("/v1/requests", json=body, headers=as_leader(grid))

        assert refused.status_code == 404
        assert refused.json["detail"] == f"No resident {grid.resident_elsewhere}"
        assert len(client.get("/v1/requests", headers=STAFF).json) == 3


class TestConfirmingAsAProxy:
    def test_a_grid_leader_confirms_in_their_area_as_a_proxy_under_their_title(self, client, grid):
        confirmed = client.post(
            f"/v1/requests/{grid.in_unit_1}/confirmation", headers=as_leader(grid)
        )

        assert confirmed.status_code == 200, confirmed.json
        assert confirmed.json["status"] == "confirmed"
        assert confirmed.json["confirmed_as"] == "proxy: building leader"
        copies = staged_messages(runtime(), events.REQUEST_CONFIRMED)
        assert {copy.kwargs["confirmed_by"] for copy in copies} == {f"resident:{grid.leader}"}

    def test_the_nearest_leader_gives_the_title(self, client, grid):
        confirmed = client.post(
            f"/v1/requests/{grid.in_unit_1}/confirmation",
            headers=bearer(grid.unit_leader, GRID_LEADER),
        )

        assert confirmed.json["confirmed_as"] == "proxy: unit leader"

    def test_the_one_responsible_for_a_single_household_confirms_for_it(self, client):
        with runtime().db.transaction() as session:
            request = a_request(session, resident=a_resident(session, number="601"))
            carer = a_resident(session, building="5", number="101", name="Sun Hua")
            lead(session, Place("changshan-garden", "3", "2", "601"), carer.id)
            walk_to_completed(session, request)

        confirmed = confirmation_by(client, carer.id, request.id)

        assert confirmed["confirmed_as"] == "proxy: responsible for the household"

    def test_a_grid_leader_confirms_their_own_request_as_the_resident(self, client):
        with runtime().db.transaction() as session:
            leader = a_resident(session, number="502", name="Zhao Ming")
            own = a_request(session, resident=leader)
            lead(session, Place("changshan-garden", "3", "2", "502"), leader.id)
            walk_to_completed(session, own)

        assert confirmation_by(client, leader.id, own.id)["confirmed_as"] == "resident"

    def test_a_grid_leader_whose_home_lies_outside_their_area_confirms_their_own_request(
        self, client, grid
    ):
        confirmed = confirmation_by(client, grid.resident_elsewhere, grid.elsewhere)

        assert confirmed["confirmed_as"] == "resident"

    def test_a_grid_leader_cannot_confirm_outside_their_area_nor_learn_it_exists(
        self, client, grid
    ):
        refused = client.post(
            f"/v1/requests/{grid.elsewhere}/confirmation", headers=as_leader(grid)
        )

        assert refused.status_code == 404
        assert refused.json["detail"] == f"No request {grid.elsewhere}"
        shown = client.get(f"/v1/requests/{grid.elsewhere}", headers=STAFF)
        assert shown.json["status"] == "completed"

    def test_a_grid_leader_who_completed_the_service_for_the_volunteer_may_not_confirm_it(self):
        with runtime().db.transaction() as session:
            request = a_request(session)
            leader = a_resident(session, number="502")
            lead(session, Place("changshan-garden", "3"), leader.id)
            walk_to_completed(session, request, completed_by=f"resident:{leader.id}")

            with pytest.raises(PartyToTheService, match=f"resident:{leader.id} completed"):
                requests.confirm_request(
                    session, request_id=request.id, confirmed_by=Principal(leader.id, GRID_LEADER)
                )
            assert request.status == "completed"


class TestNotes:
    def test_a_grid_leader_adds_a_public_note_in_their_area_but_not_elsewhere(self, client, grid):
        added = client.post(
            f"/v1/requests/{grid.in_unit_2}/notes",
            json={"text": "I will check on her", "public": True},
            headers=as_leader(grid),
        )
        internal = client.post(
            f"/v1/requests/{grid.in_unit_2}/notes",
            json={"text": "Between us", "public": False},
            headers=as_leader(grid),
        )
        hidden = client.post(
            f"/v1/requests/{grid.elsewhere}/notes",
            json={"text": "Hello", "public": True},
            headers=as_leader(grid),
        )

        assert added.status_code == 201
        assert added.json["actor"] == f"resident:{grid.leader}"
        assert internal.status_code == 422
        assert (hidden.status_code, hidden.json["detail"]) == (404, f"No request {grid.elsewhere}")


class TestEverythingElse:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("post", "/v1/requests/{in_area}/triage", {"priority": "high"}),
            ("post", "/v1/requests/{in_area}/cancellation", {"reason": "no longer needed"}),
            ("get", "/v1/requests/counts?by=status", None),
            ("get", "/v1/requests/changes", None),
            ("get", "/v1/grid/nodes", None),
            ("get", "/v1/residents", None),
            ("get", "/v1/residents/{resident}", None),
        ],
    )
    def test_a_grid_leader_is_refused_what_staff_do_even_in_their_area(
        self, client, grid, method, path, body
    ):
        url = path.format(in_area=grid.in_unit_1, resident=grid.resident_in_unit_1)

        refused = client.open(url, method=method.upper(), json=body, headers=as_leader(grid))

        assert refused.status_code == 403
        assert refused.json["type"].endswith("/forbidden")
