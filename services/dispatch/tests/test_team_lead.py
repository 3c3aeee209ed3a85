"""Team leads: staff name an active member of a team to lead it; the lead then follows the
team's assignments and volunteers and steers its work, and nothing of other teams."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.dispatch import routing
from services.dispatch.app import create_app
from services.dispatch.config import runtime
from services.dispatch.models import Assignment, Team, Volunteer
from services.dispatch.tests.builders import assigned, assignment_for, bearer, staff
from shared import events
from tests.support import staged_messages

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    yield create_app().test_client()


@dataclass(frozen=True)
class Crew:
    team_id: str
    lead: Volunteer
    worker: Volunteer


def member(name: str, team_id: str, *, routed_for: str | None = None) -> Volunteer:
    with runtime().db.transaction() as session:
        person = routing.register_volunteer(session, name=name, team_id=team_id)
        if routed_for is not None:
            routing.add_routing_rule(session, category=routed_for, volunteer_id=person.id)
        return person


def crew(name: str, *, routed_for: str, is_led: bool = True) -> Crew:
    """A team of two: a lead (named so by staff when ``is_led``) and a worker, to whom requests
    of ``routed_for`` go."""
    with runtime().db.transaction() as session:
        team_id = routing.create_team(session, name=name).id
    lead = member(f"{name} lead", team_id)
    worker = member(f"{name} worker", team_id, routed_for=routed_for)
    if is_led:
        with runtime().db.transaction() as session:
            routing.update_team(session, team_id=team_id, lead_volunteer_id=lead.id)
    return Crew(team_id=team_id, lead=lead, worker=worker)


def as_lead(person: Volunteer) -> dict[str, str]:
    return bearer(person.id, "team_lead")


def team(team_id: str) -> Team:
    with runtime().db.read() as session:
        found = session.get(Team, team_id)
        assert found is not None
        return found


def two_teams() -> tuple[Crew, Assignment, Crew, Assignment]:
    repairs = crew("Appliance repair team", routed_for="appliance_repair")
    legal = crew("Legal aid team", routed_for="legal_advice")
    return (
        repairs,
        assigned(category="appliance_repair"),
        legal,
        assigned(category="legal_advice"),
    )


def accept_and_report(
    client: FlaskClient, lead: Volunteer, assignment: Assignment, *, participants: dict[str, int]
) -> TestResponse:
    """``lead`` accepts ``assignment``, then reports two hours of group work on it by
    ``participants`` (each one's hours, by volunteer id); returns the answer to the report."""
    client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=as_lead(lead))
    body = {
        "hours": 2,
        "participants": [
            {"volunteer_id": volunteer_id, "hours": hours}
            for volunteer_id, hours in participants.items()
        ],
    }
    return client.post(
        f"/v1/assignments/{assignment.id}/completion", json=body, headers=as_lead(lead)
    )


# Naming a lead


def test_staff_name_an_active_member_to_lead_the_team_and_the_team_shows_them(
    client: FlaskClient,
) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair", is_led=False)

    response = client.patch(
        f"/v1/teams/{repairs.team_id}", json={"lead_volunteer_id": repairs.lead.id}, headers=staff()
    )
    listed = client.get("/v1/teams", headers=staff())

    assert response.status_code == 200
    assert response.json["lead_volunteer_id"] == repairs.lead.id
    assert [item["lead_volunteer_id"] for item in listed.json] == [repairs.lead.id]


def test_staff_rename_a_team_and_leave_its_lead_as_it_is(client: FlaskClient) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair")

    response = client.patch(
        f"/v1/teams/{repairs.team_id}", json={"name": "Home repair team"}, headers=staff()
    )

    assert response.status_code == 200
    assert (response.json["name"], response.json["lead_volunteer_id"]) == (
        "Home repair team",
        repairs.lead.id,
    )


def test_staff_clear_a_teams_lead_and_the_former_lead_sees_nothing(client: FlaskClient) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair")
    assignment = assigned(category="appliance_repair")

    response = client.patch(
        f"/v1/teams/{repairs.team_id}", json={"lead_volunteer_id": None}, headers=staff()
    )

    assert response.status_code == 200
    assert team(repairs.team_id).lead_volunteer_id is None
    assert client.get("/v1/assignments", headers=as_lead(repairs.lead)).json == []
    gone = client.get(f"/v1/assignments/{assignment.id}", headers=as_lead(repairs.lead))
    assert gone.status_code == 404


def test_a_lead_who_is_not_a_member_of_the_team_is_a_422_naming_them_and_nothing_changes(
    client: FlaskClient,
) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair", is_led=False)
    legal = crew("Legal aid team", routed_for="legal_advice")

    response = client.patch(
        f"/v1/teams/{repairs.team_id}", json={"lead_volunteer_id": legal.lead.id}, headers=staff()
    )

    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert response.json["field"] == "lead_volunteer_id"
    assert legal.lead.id in response.json["detail"]
    assert "Legal aid team lead" in response.json["detail"]
    assert team(repairs.team_id).lead_volunteer_id is None


def test_an_inactive_member_or_an_unknown_volunteer_cannot_lead(client: FlaskClient) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair", is_led=False)
    with runtime().db.transaction() as session:
        resting = session.get(Volunteer, repairs.worker.id)
        assert resting is not None
        resting.is_active = False

    inactive = client.patch(
        f"/v1/teams/{repairs.team_id}",
        json={"lead_volunteer_id": repairs.worker.id},
        headers=staff(),
    )
    unknown = client.patch(
        f"/v1/teams/{repairs.team_id}", json={"lead_volunteer_id": "nobody"}, headers=staff()
    )

    assert inactive.status_code == 422
    assert repairs.worker.id in inactive.json["detail"]
    assert unknown.status_code == 422
    assert "nobody" in unknown.json["detail"]
    assert team(repairs.team_id).lead_volunteer_id is None


def test_an_unknown_team_is_a_404(client: FlaskClient) -> None:
    response = client.patch("/v1/teams/no-such-team", json={"name": "X"}, headers=staff())

    assert response.status_code == 404
    assert response.content_type == PROBLEM


def test_volunteers_and_team_leads_may_not_change_teams(client: FlaskClient) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair")
    body = {"lead_volunteer_id": repairs.worker.id}
    url = f"/v1/teams/{repairs.team_id}"

    assert client.patch(url, json=body, headers=as_lead(repairs.lead)).status_code == 403
    assert (
        client.patch(url, json=body, headers=bearer(repairs.lead.id, "volunteer")).status_code
        == 403
    )
    assert team(repairs.team_id).lead_volunteer_id == repairs.lead.id


# Following the team's work


def test_a_team_lead_reads_an_assignment_of_their_team(client: FlaskClient) -> None:
    repairs, own, _, _ = two_teams()

    response = client.get(f"/v1/assignments/{own.id}", headers=as_lead(repairs.lead))

    assert response.status_code == 200
    assert response.json["volunteer_id"] == repairs.worker.id


def test_another_teams_assignment_is_not_found_as_a_missing_one_is_not(
    client: FlaskClient,
) -> None:
    repairs, _, _, others = two_teams()

    response = client.get(f"/v1/assignments/{others.id}", headers=as_lead(repairs.lead))
    missing = client.get("/v1/assignments/no-such-assignment", headers=as_lead(repairs.lead))

    assert response.status_code == 404
    assert response.content_type == PROBLEM
    assert response.json["detail"] == f"No assignment {others.id}"
    assert missing.json["detail"] == "No assignment no-such-assignment"


def test_a_team_lead_lists_only_their_teams_assignments(client: FlaskClient) -> None:
    repairs, own, _, _ = two_teams()

    response = client.get("/v1/assignments", headers=as_lead(repairs.lead))
    by_other = client.get(
        "/v1/assignments", query_string={"volunteer_id": "x"}, headers=as_lead(repairs.lead)
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.json] == [own.id]
    assert by_other.json == []


def test_a_team_lead_lists_only_their_teams_volunteers(client: FlaskClient) -> None:
    repairs, _, legal, _ = two_teams()

    response = client.get("/v1/volunteers", headers=as_lead(repairs.lead))
    asking_for_another_team = client.get(
        "/v1/volunteers", query_string={"team_id": legal.team_id}, headers=as_lead(repairs.lead)
    )

    assert response.status_code == 200
    assert sorted(item["id"] for item in response.json) == sorted(
        [repairs.lead.id, repairs.worker.id]
    )
    assert asking_for_another_team.json == []


def test_a_volunteer_still_may_not_list_volunteers(client: FlaskClient) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair")

    response = client.get("/v1/volunteers", headers=bearer(repairs.lead.id, "volunteer"))

    assert response.status_code == 403


def test_a_team_lead_may_not_change_the_roster_or_the_rules(client: FlaskClient) -> None:
    repairs = crew("Appliance repair team", routed_for="appliance_repair")
    lead = as_lead(repairs.lead)

    assert client.post("/v1/teams", json={"name": "Mine"}, headers=lead).status_code == 403
    assert client.post("/v1/volunteers", json={"name": "A"}, headers=lead).status_code == 403
    assert client.get("/v1/routing-rules", headers=lead).status_code == 403
    rule = {"category": "appliance_repair", "volunteer_id": repairs.lead.id}
    assert client.post("/v1/routing-rules", json=rule, headers=lead).status_code == 403


# Steering the team's work


def test_a_team_lead_accepts_for_a_member_and_is_recorded_as_themselves(
    client: FlaskClient,
) -> None:
    repairs, own, _, _ = two_teams()

    response = client.post(f"/v1/assignments/{own.id}/acceptance", headers=as_lead(repairs.lead))

    assert response.status_code == 200
    assert response.json["status"] == "accepted"
    (accepted,) = staged_messages(runtime(), events.REQUEST_ACCEPTED)
    assert accepted.kwargs["volunteer_id"] == repairs.worker.id
    assert accepted.kwargs["accepted_by"] == f"volunteer:{repairs.lead.id}"


def test_a_team_lead_reports_group_work_of_their_team(client: FlaskClient) -> None:
    repairs, own, _, _ = two_teams()

    response = accept_and_report(
        client, repairs.lead, own, participants={repairs.worker.id: 2, repairs.lead.id: 1}
    )

    assert response.status_code == 200
    done = assignment_for(own.request_id)
    assert (done.status, done.completed_by) == ("completed", f"volunteer:{repairs.lead.id}")


def test_a_team_lead_cannot_steer_another_teams_assignment(client: FlaskClient) -> None:
    repairs, _, _, others = two_teams()

    response = client.post(f"/v1/assignments/{others.id}/acceptance", headers=as_lead(repairs.lead))

    assert response.status_code == 404
    assert response.json["detail"] == f"No assignment {others.id}"
    assert assignment_for(others.request_id).status == "assigned"
    assert staged_messages(runtime(), events.REQUEST_ACCEPTED) == []


def test_a_team_lead_cannot_credit_their_teams_work_to_another_team(
    client: FlaskClient,
) -> None:
    repairs, own, legal, _ = two_teams()

    response = accept_and_report(
        client, repairs.lead, own, participants={repairs.worker.id: 2, legal.worker.id: 2}
    )

    assert response.status_code == 422
    assert response.json["field"] == "participants"
    assert legal.worker.id in response.json["detail"]
    assert assignment_for(own.request_id).status == "accepted"


def test_a_lead_token_for_a_team_without_that_lead_steers_nothing(client: FlaskClient) -> None:
    unled = crew("Appliance repair team", routed_for="appliance_repair", is_led=False)
    assignment = assigned(category="appliance_repair")

    response = client.post(
        f"/v1/assignments/{assignment.id}/acceptance", headers=as_lead(unled.lead)
    )

    assert response.status_code == 404
    assert assignment_for(assignment.request_id).status == "assigned"
