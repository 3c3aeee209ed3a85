"""Group work over HTTP: the completion names every volunteer of the team who took part, with
their own hours, and request.completed carries them; a bad list is a 422 that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from services.dispatch import routing
from services.dispatch.app import create_app
from services.dispatch.config import runtime
from services.dispatch.models import Volunteer
from services.dispatch.tests.builders import assigned, assignment_for, bearer, staff
from shared import events
from tests.support import staged_messages

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    yield create_app().test_client()


def member(name: str, team_id: str | None, *, routed_for: str | None = None) -> Volunteer:
    with runtime().db.transaction() as session:
        person = routing.register_volunteer(session, name=name, team_id=team_id)
        if routed_for is not None:
            routing.add_routing_rule(session, category=routed_for, volunteer_id=person.id)
        return person


def repair_team() -> tuple[Volunteer, Volunteer, Volunteer]:
    """A team of three; requests for appliance repair go to the first, who accepted one."""
    with runtime().db.transaction() as session:
        team = routing.create_team(session, name="Appliance repair team").id
    lead = member("Wang Jun", team, routed_for="appliance_repair")
    return lead, member("Li Na", team), member("Zhao Gang", team)


def accepted(client: FlaskClient, lead: Volunteer) -> Any:
    assignment = assigned(category="appliance_repair")
    client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=holder(lead))
    return assignment


def holder(person: Volunteer) -> dict[str, str]:
    return bearer(person.id, "volunteer")


def completions() -> list[Any]:
    return staged_messages(runtime(), events.REQUEST_COMPLETED, to="points")


def test_group_work_names_each_participant_with_their_hours_and_the_event_carries_them(
    client: FlaskClient,
) -> None:
    lead, second, third = repair_team()
    assignment = accepted(client, lead)
    participants = [
        {"volunteer_id": lead.id, "hours": 2},
        {"volunteer_id": second.id, "hours": "1.5"},
        {"volunteer_id": third.id, "hours": 2},
    ]

    response = client.post(
        f"/v1/assignments/{assignment.id}/completion",
        json={"hours": 2, "participants": participants},
        headers=holder(lead),
    )

    assert response.status_code == 200
    assert response.json["participants"] == [
        {"volunteer_id": lead.id, "hours": "2.00"},
        {"volunteer_id": second.id, "hours": "1.50"},
        {"volunteer_id": third.id, "hours": "2.00"},
    ]
    (completed,) = completions()
    assert completed.kwargs["participants"] == [
        {"volunteer_id": lead.id, "hours": "2.00", "volunteer_name": "Wang Jun"},
        {"volunteer_id": second.id, "hours": "1.50", "volunteer_name": "Li Na"},
        {"volunteer_id": third.id, "hours": "2.00", "volunteer_name": "Zhao Gang"},
    ]
    assert completed.kwargs["team_id"] == lead.team_id


def test_staff_report_group_work_for_the_volunteer(client: FlaskClient) -> None:
    lead, second, _ = repair_team()
    assignment = accepted(client, lead)

    response = client.post(
        f"/v1/assignments/{assignment.id}/completion",
        json={
            "hours": 1,
            "participants": [
                {"volunteer_id": second.id, "hours": 1},
                {"volunteer_id": lead.id, "hours": 1},
            ],
        },
        headers=staff(),
    )

    assert response.status_code == 200
    (completed,) = completions()
    assert completed.kwargs["completed_by"] == "staff:staff-1"
    assert [p["volunteer_id"] for p in completed.kwargs["participants"]] == [second.id, lead.id]


def test_a_completion_without_participants_is_the_volunteer_alone(client: FlaskClient) -> None:
    lead, _, _ = repair_team()
    assignment = accepted(client, lead)

    response = client.post(
        f"/v1/assignments/{assignment.id}/completion", json={"hours": 3}, headers=holder(lead)
    )

    assert response.json["participants"] == [{"volunteer_id": lead.id, "hours": "3.00"}]
    (completed,) = completions()
    assert completed.kwargs["participants"] == [
        {"volunteer_id": lead.id, "hours": "3.00", "volunteer_name": "Wang Jun"}
    ]


def refused(client: FlaskClient, lead: Volunteer, participants: list[dict[str, Any]]) -> Any:
    """Report ``participants``; assert nothing changed and return the problem answered."""
    assignment = accepted(client, lead)
    response = client.post(
        f"/v1/assignments/{assignment.id}/completion",
        json={"hours": 2, "participants": participants},
        headers=holder(lead),
    )
    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert completions() == []
    kept = assignment_for(assignment.request_id)
    assert (kept.status, kept.hours, kept.participants) == ("accepted", None, None)
    return response.json


def test_a_participant_from_another_team_is_a_422_naming_them_and_nothing_changes(
    client: FlaskClient,
) -> None:
    lead, second, _ = repair_team()
    with runtime().db.transaction() as session:
        other_team = routing.create_team(session, name="Legal aid team").id
    outsider = member("Chen Lu", other_team)

    problem = refused(
        client,
        lead,
        [
            {"volunteer_id": lead.id, "hours": 2},
            {"volunteer_id": second.id, "hours": 2},
            {"volunteer_id": outsider.id, "hours": 2},
        ],
    )

    assert problem["field"] == "participants"
    assert outsider.id in problem["detail"]
    assert second.id not in problem["detail"]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("inactive", "not an active volunteer"),
        ("unknown", "not an active volunteer"),
        ("twice", "named twice"),
        ("without the lead", "must include volunteer"),
    ],
)
def test_a_list_of_participants_against_the_rules_is_a_422_naming_whom(
    client: FlaskClient, case: str, words: str
) -> None:
    lead, second, third = repair_team()
    with runtime().db.transaction() as session:
        session.get(Volunteer, third.id).is_active = False  # type: ignore[union-attr]
    named = {
        "inactive": [lead.id, third.id],
        "unknown": [lead.id, "nobody"],
        "twice": [lead.id, second.id, second.id],
        "without the lead": [second.id],
    }[case]

    problem = refused(client, lead, [{"volunteer_id": v, "hours": 1} for v in named])

    assert words in problem["detail"]
    subject = {"inactive": third.id, "unknown": "nobody", "twice": second.id}.get(case, lead.id)
    assert subject in problem["detail"]


def test_no_participant_gives_the_service_more_time_than_it_took(client: FlaskClient) -> None:
    lead, second, _ = repair_team()

    problem = refused(
        client,
        lead,
        [{"volunteer_id": lead.id, "hours": 2}, {"volunteer_id": second.id, "hours": "2.50"}],
    )

    assert problem["field"] == "participants"
    assert f"Volunteer {second.id} is given 2.50 hours, more than the 2.00" in problem["detail"]


def test_someone_gives_the_service_all_the_time_it_took(client: FlaskClient) -> None:
    lead, second, _ = repair_team()

    problem = refused(
        client,
        lead,
        [{"volunteer_id": lead.id, "hours": "1.5"}, {"volunteer_id": second.id, "hours": 1}],
    )

    assert problem["field"] == "participants"
    assert (
        "The service took 2.00 hours but no participant is given more than 1.50"
        in (problem["detail"])
    )


def test_a_volunteer_without_a_team_works_alone(client: FlaskClient) -> None:
    loner = member("Lao Zhang", None, routed_for="appliance_repair")
    other = member("Wang Jun", None)

    problem = refused(
        client,
        loner,
        [{"volunteer_id": loner.id, "hours": 1}, {"volunteer_id": other.id, "hours": 1}],
    )

    assert "no team" in problem["detail"]


@pytest.mark.parametrize(
    "participants",
    [
        [],
        [{"volunteer_id": "x", "hours": 0}],
        [{"volunteer_id": "x", "hours": 25}],
        [{"volunteer_id": "x", "hours": "1.555"}],
        [{"volunteer_id": "x"}],
        [{"volunteer_id": "x", "hours": 1, "rating": 5}],
        "everyone",
    ],
)
def test_a_malformed_list_of_participants_is_a_422_on_that_field(
    client: FlaskClient, participants: Any
) -> None:
    lead, _, _ = repair_team()

    problem = refused(client, lead, participants)

    assert list(problem["errors"]) == ["participants"]
