"""dispatch over HTTP: volunteers work their assignments, staff keep the roster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from services.dispatch import routing
from services.dispatch.app import create_app
from services.dispatch.config import runtime
from services.dispatch.models import Assignment
from services.dispatch.tests.builders import assigned, bearer, rules, staff, volunteer
from shared import events
from shared.schemas import NUL_MESSAGE
from tests.support import assert_errors_documented, staged_messages

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    yield create_app().test_client()


def as_holder(assignment_volunteer_id: str) -> dict[str, str]:
    return bearer(assignment_volunteer_id, "volunteer")


# Volunteers and their assignments


def test_a_volunteer_lists_only_their_own_assignments(client: FlaskClient) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    volunteer("Wang Jun", routed_for="electrical_repair")
    own = assigned(category="knife_sharpening")
    assigned(category="electrical_repair")

    response = client.get("/v1/assignments", headers=as_holder(sharpener.id))

    assert response.status_code == 200
    assert [item["id"] for item in response.json] == [own.id]
    assert response.json[0]["volunteer_name"] == "Lao Zhang"


def test_staff_list_every_assignment_by_status_a_page_at_a_time(client: FlaskClient) -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    for _ in range(3):
        assigned()
    accepted = assigned()
    client.post(f"/v1/assignments/{accepted.id}/acceptance", headers=staff())

    page = client.get("/v1/assignments?status=assigned&page=1&page_size=2", headers=staff())
    only_accepted = client.get("/v1/assignments?status=accepted", headers=staff())

    assert len(page.json) == 2
    assert '"total": 3' in page.headers["X-Pagination"]
    assert [item["id"] for item in only_accepted.json] == [accepted.id]


def test_another_volunteers_assignment_is_not_found(client: FlaskClient) -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()

    response = client.get(
        f"/v1/assignments/{assignment.id}", headers=bearer(volunteer("Stranger").id, "volunteer")
    )

    assert response.status_code == 404
    assert response.content_type == PROBLEM


def test_residents_and_anonymous_callers_are_turned_away(client: FlaskClient) -> None:
    assert client.get("/v1/assignments").status_code == 401
    assert client.get("/v1/assignments", headers=bearer("r-1", "resident")).status_code == 403
    assert client.get("/v1/assignments", headers={"X-API-Key": "rv_anything"}).status_code == 401


def test_the_holder_accepts_and_the_resident_is_told_who_is_coming(client: FlaskClient) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()

    response = client.post(
        f"/v1/assignments/{assignment.id}/acceptance", headers=as_holder(sharpener.id)
    )

    assert response.status_code == 200
    assert response.json["status"] == "accepted"
    (accepted,) = staged_messages(runtime(), events.REQUEST_ACCEPTED)
    assert accepted.kwargs == {
        "request_id": assignment.request_id,
        "assignment_id": assignment.id,
        "volunteer_id": sharpener.id,
        "accepted_by": f"volunteer:{sharpener.id}",
        "accepted_at": accepted.kwargs["accepted_at"],
    }
    notices = staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
    assert [(n.kwargs["recipient"], n.kwargs["template"]) for n in notices] == [
        (f"volunteer:{sharpener.id}", "assignment.created"),
        (f"resident:{assignment.resident_id}", "request.accepted"),
    ]
    assert notices[1].kwargs["data"] == {
        "request_id": assignment.request_id,
        "volunteer_name": "Lao Zhang",
        "category": "knife_sharpening",
        "summary": assignment.summary,
    }


def test_accepting_again_is_a_409_that_says_so(client: FlaskClient) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    url = f"/v1/assignments/{assignment.id}/acceptance"
    client.post(url, headers=as_holder(sharpener.id))

    again = client.post(url, headers=as_holder(sharpener.id))

    assert again.status_code == 409
    assert again.content_type == PROBLEM
    assert "already accepted" in again.json["detail"]
    assert len(staged_messages(runtime(), events.REQUEST_ACCEPTED)) == 1


def test_another_volunteers_assignment_cannot_be_accepted_nor_is_it_found(
    client: FlaskClient,
) -> None:
    volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()

    response = client.post(
        f"/v1/assignments/{assignment.id}/acceptance",
        headers=bearer(volunteer("Stranger").id, "volunteer"),
    )

    assert response.status_code == 404
    assert response.json["detail"] == f"No assignment {assignment.id}"
    assert staged_messages(runtime(), events.REQUEST_ACCEPTED) == []


def test_the_holder_completes_an_accepted_assignment_with_the_hours(client: FlaskClient) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=as_holder(sharpener.id))

    response = client.post(
        f"/v1/assignments/{assignment.id}/completion",
        json={"hours": "1.5", "note": "Three knives"},
        headers=as_holder(sharpener.id),
    )

    assert response.status_code == 200
    assert (response.json["status"], response.json["hours"], response.json["note"]) == (
        "completed",
        "1.50",
        "Three knives",
    )
    (completed,) = staged_messages(runtime(), events.REQUEST_COMPLETED, to="intake")
    assert completed.kwargs == {
        "request_id": assignment.request_id,
        "assignment_id": assignment.id,
        "volunteer_id": sharpener.id,
        "category": assignment.category,
        "hours": "1.50",
        "completed_by": f"volunteer:{sharpener.id}",
        "completed_at": completed.kwargs["completed_at"],
        "volunteer_name": sharpener.name,
        "team_id": sharpener.team_id,
        "community": assignment.location["community"],
        "participants": [
            {"volunteer_id": sharpener.id, "hours": "1.50", "volunteer_name": sharpener.name}
        ],
    }
    asked = [
        n
        for n in staged_messages(runtime(), events.NOTIFICATION_REQUESTED)
        if n.kwargs["template"] == "request.completed"
    ]
    assert [n.kwargs["recipient"] for n in asked] == [f"resident:{assignment.resident_id}"]
    assert asked[0].kwargs["data"]["hours"] == "1.50"


def test_completing_before_accepting_or_twice_is_a_409(client: FlaskClient) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    url = f"/v1/assignments/{assignment.id}/completion"

    early = client.post(url, json={"hours": 1}, headers=as_holder(sharpener.id))
    client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=as_holder(sharpener.id))
    client.post(url, json={"hours": 1}, headers=as_holder(sharpener.id))
    twice = client.post(url, json={"hours": 1}, headers=as_holder(sharpener.id))

    assert (early.status_code, twice.status_code) == (409, 409)
    assert "accept it before completing" in early.json["detail"]
    assert "already completed" in twice.json["detail"]
    assert len(staged_messages(runtime(), events.REQUEST_COMPLETED, to="intake")) == 1


def test_a_confirmed_assignment_is_neither_accepted_nor_completed_again(
    client: FlaskClient,
) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    holder = as_holder(sharpener.id)
    client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=holder)
    client.post(f"/v1/assignments/{assignment.id}/completion", json={"hours": 2}, headers=holder)
    with runtime().db.transaction() as session:
        routing.record_confirmation(session, request_id=assignment.request_id, at=datetime.now(UTC))
    told = len(staged_messages(runtime(), events.NOTIFICATION_REQUESTED))

    accepted = client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=holder)
    completed = client.post(
        f"/v1/assignments/{assignment.id}/completion", json={"hours": 5}, headers=holder
    )

    assert (accepted.status_code, completed.status_code) == (409, 409)
    assert "confirmed by the resident" in accepted.json["detail"]
    assert "confirmed by the resident" in completed.json["detail"]
    now = client.get(f"/v1/assignments/{assignment.id}", headers=staff()).json
    assert (now["status"], now["hours"]) == ("confirmed", "2.00")
    assert len(staged_messages(runtime(), events.NOTIFICATION_REQUESTED)) == told


def test_completing_a_withdrawn_assignment_says_it_was_withdrawn(client: FlaskClient) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    with runtime().db.transaction() as session:
        routing.withdraw_assignment(
            session, request_id=assignment.request_id, reason="cancelled", at=datetime.now(UTC)
        )

    completed = client.post(
        f"/v1/assignments/{assignment.id}/completion",
        json={"hours": 1},
        headers=as_holder(sharpener.id),
    )

    assert completed.status_code == 409
    assert completed.json["detail"] == f"Assignment {assignment.id} was withdrawn: cancelled"


def in_status(client: FlaskClient, status: str) -> tuple[Assignment, dict[str, str]]:
    """An assignment taken to ``status`` the way it gets there, and its holder's headers."""
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    holder = as_holder(sharpener.id)
    if status in ("accepted", "completed", "confirmed"):
        client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=holder)
    if status in ("completed", "confirmed"):
        client.post(
            f"/v1/assignments/{assignment.id}/completion", json={"hours": 2}, headers=holder
        )
    with runtime().db.transaction() as session:
        if status == "confirmed":
            routing.record_confirmation(
                session, request_id=assignment.request_id, at=datetime.now(UTC)
            )
        if status == "withdrawn":
            routing.withdraw_assignment(
                session, request_id=assignment.request_id, reason="cancelled", at=datetime.now(UTC)
            )
    return assignment, holder


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("accepted", "acceptance"),
        ("completed", "acceptance"),
        ("confirmed", "acceptance"),
        ("withdrawn", "acceptance"),
        ("assigned", "completion"),
        ("completed", "completion"),
        ("confirmed", "completion"),
        ("withdrawn", "completion"),
    ],
)
@pytest.mark.parametrize("who", ["holder", "staff"])
def test_an_action_the_status_does_not_allow_is_an_illegal_transition_changing_nothing(
    client: FlaskClient, status: str, action: str, who: str
) -> None:
    assignment, holder = in_status(client, status)
    before = client.get(f"/v1/assignments/{assignment.id}", headers=staff()).json
    staged = len(staged_messages(runtime()))

    response = client.post(
        f"/v1/assignments/{assignment.id}/{action}",
        json={"hours": 5} if action == "completion" else None,
        headers=holder if who == "holder" else staff(),
    )

    assert response.status_code == 409
    assert response.content_type == PROBLEM
    assert response.json["type"].endswith("/illegal-transition")
    assert response.json["current_status"] == status
    assert client.get(f"/v1/assignments/{assignment.id}", headers=staff()).json == before
    assert len(staged_messages(runtime())) == staged


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "hours"),
        ({"hours": 0}, "hours"),
        ({"hours": 25}, "hours"),
        ({"hours": "a while"}, "hours"),
        ({"hours": 1, "rating": 5}, "rating"),
    ],
)
def test_a_bad_completion_body_is_a_422_naming_the_field(
    client: FlaskClient, body: dict[str, object], field: str
) -> None:
    sharpener = volunteer("Lao Zhang", routed_for="knife_sharpening")
    assignment = assigned()
    client.post(f"/v1/assignments/{assignment.id}/acceptance", headers=as_holder(sharpener.id))

    response = client.post(
        f"/v1/assignments/{assignment.id}/completion", json=body, headers=as_holder(sharpener.id)
    )

    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert list(response.json["errors"]) == [field]
    assert staged_messages(runtime(), events.REQUEST_COMPLETED, to="intake") == []


def test_an_unknown_assignment_is_a_404(client: FlaskClient) -> None:
    response = client.post("/v1/assignments/nope/acceptance", headers=staff())

    assert response.status_code == 404
    assert response.content_type == PROBLEM


# The roster staff keep


def test_staff_build_a_team_a_volunteer_and_a_rule_that_routes_to_them(client: FlaskClient) -> None:
    team = client.post("/v1/teams", json={"name": "Legal aid team"}, headers=staff())
    person = client.post(
        "/v1/volunteers", json={"name": "Chen Lu", "team_id": team.json["id"]}, headers=staff()
    )
    rule = client.post(
        "/v1/routing-rules",
        json={
            "category": "legal_consultation",
            "volunteer_id": person.json["id"],
            "precedence": 5,
        },
        headers=staff(),
    )

    assert (team.status_code, person.status_code, rule.status_code) == (201, 201, 201)
    assert rule.json["volunteer_name"] == "Chen Lu"
    assert assigned(category="legal_consultation").volunteer_id == person.json["id"]
    listed = client.get("/v1/routing-rules?category=legal_consultation", headers=staff())
    assert [item["id"] for item in listed.json] == [rule.json["id"]]
    assert [item["name"] for item in client.get("/v1/teams", headers=staff()).json] == [
        "Legal aid team"
    ]
    members = client.get(f"/v1/volunteers?team_id={team.json['id']}", headers=staff())
    assert [item["id"] for item in members.json] == [person.json["id"]]


def test_a_rule_for_an_unknown_volunteer_is_a_422_naming_the_field(client: FlaskClient) -> None:
    response = client.post(
        "/v1/routing-rules", json={"category": "haircut", "volunteer_id": "nobody"}, headers=staff()
    )

    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert response.json["field"] == "volunteer_id"
    assert rules() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/teams", {"description": "no name"}, "name"),
        ("/v1/volunteers", {"name": "X", "is_active": False}, "is_active"),
        ("/v1/routing-rules", {"category": "Knife Sharpening", "volunteer_id": "v"}, "category"),
        ("/v1/routing-rules", {"category": "haircut\n", "volunteer_id": "v"}, "category"),
        ("/v1/routing-rules", {"category": "", "volunteer_id": "v"}, "category"),
        ("/v1/routing-rules", {"category": "a" * 65, "volunteer_id": "v"}, "category"),
        (
            "/v1/routing-rules",
            {"category": "haircut", "volunteer_id": "v", "precedence": "first"},
            "precedence",
        ),
        (
            "/v1/routing-rules",
            {"category": "haircut", "volunteer_id": "v", "precedence": " 5"},
            "precedence",
        ),
        ("/v1/teams", {"name": "   "}, "name"),
        ("/v1/teams", {"name": "Repair\u202e"}, "name"),
        ("/v1/teams", {"name": "Repair", "description": "ring \x07"}, "description"),
        ("/v1/volunteers", {"name": ""}, "name"),
        ("/v1/volunteers", {"name": "Lao\nZhang"}, "name"),
        ("/v1/volunteers", {"name": "Lao Zhang", "phone": "call me"}, "phone"),
        ("/v1/volunteers", {"name": "Lao Zhang", "phone": "138\u20660000"}, "phone"),
    ],
)
def test_bad_roster_bodies_are_422s_naming_the_field(
    client: FlaskClient, path: str, body: dict[str, object], field: str
) -> None:
    response = client.post(path, json=body, headers=staff())

    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert field in response.json["errors"]


@pytest.mark.parametrize("category", ["haircut%0A", "Haircut", "hair-cut", "", "_haircut"])
def test_rules_are_filtered_by_a_category_code_only(client: FlaskClient, category: str) -> None:
    response = client.get(f"/v1/routing-rules?category={category}", headers=staff())

    assert response.status_code == 422
    assert response.content_type == PROBLEM
    assert list(response.json["errors"]) == ["category"]


def test_volunteers_may_not_change_the_roster(client: FlaskClient) -> None:
    holder = volunteer("Lao Zhang")

    response = client.post(
        "/v1/routing-rules",
        json={"category": "haircut", "volunteer_id": holder.id},
        headers=bearer(holder.id, "volunteer"),
    )

    assert response.status_code == 403
    assert rules() == []


def test_a_second_team_of_the_same_name_is_a_409_naming_the_field(client: FlaskClient) -> None:
    client.post("/v1/teams", json={"name": "Legal aid team"}, headers=staff())

    response = client.post("/v1/teams", json={"name": "Legal aid team"}, headers=staff())

    assert response.status_code == 409
    assert response.content_type == PROBLEM
    assert response.json["field"] == "name"


def test_team_names_are_one_name_whatever_their_case(client: FlaskClient) -> None:
    legal = client.post("/v1/teams", json={"name": "Legal aid team"}, headers=staff()).json
    repair = client.post("/v1/teams", json={"name": "Repair team"}, headers=staff()).json

    created = client.post("/v1/teams", json={"name": "LEGAL AID TEAM"}, headers=staff())
    renamed = client.patch(
        f"/v1/teams/{repair['id']}", json={"name": "legal Aid Team"}, headers=staff()
    )
    recased = client.patch(
        f"/v1/teams/{legal['id']}", json={"name": "Legal Aid Team"}, headers=staff()
    )

    assert (created.status_code, created.json["field"]) == (409, "name")
    assert (renamed.status_code, renamed.json["field"]) == (409, "name")
    assert (recased.status_code, recased.json["name"]) == (200, "Legal Aid Team")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ÉQUIPE DE RÉPARATION", "équipe de réparation"),
        ("Straßenteam", "STRASSENTEAM"),
        ("ΟΜΆΔΑ", "ομάδα"),
        ("E\u0301quipe", "\u00e9quipe"),
    ],
    ids=["accented capitals", "sharp s", "greek", "one letter encoded two ways"],
)
@pytest.mark.parametrize("order", ["as written", "the other way round"])
def test_team_names_beyond_ascii_are_one_name_whatever_their_case_on_every_database(
    client: FlaskClient, first: str, second: str, order: str
) -> None:
    if order != "as written":
        first, second = second, first
    client.post("/v1/teams", json={"name": first}, headers=staff())
    other = client.post("/v1/teams", json={"name": "Repair team"}, headers=staff()).json

    created = client.post("/v1/teams", json={"name": second}, headers=staff())
    renamed = client.patch(f"/v1/teams/{other['id']}", json={"name": second}, headers=staff())

    assert (created.status_code, created.json["field"]) == (409, "name")
    assert (renamed.status_code, renamed.json["field"]) == (409, "name")
    listed = client.get("/v1/teams", headers=staff()).json
    assert {team["name"] for team in listed} == {"Repair team", first}


def test_a_nul_character_is_refused_before_it_reaches_the_database(client: FlaskClient) -> None:
    # PostgreSQL cannot store or compare text holding NUL: these were 500s there.
    body = client.post("/v1/volunteers", json={"name": "Lao\x00Zhang"}, headers=staff())
    query = client.get("/v1/volunteers?team_id=%00", headers=staff())
    path = client.get("/v1/assignments/a%00b", headers=staff())

    assert (body.status_code, body.json["errors"]) == (422, {"name": [NUL_MESSAGE]})
    assert (query.status_code, query.json["errors"]) == (422, {"team_id": [NUL_MESSAGE]})
    assert (path.status_code, path.mimetype) == (404, PROBLEM)


# The API's description of itself

# Every error status each operation can answer; 422 wherever it takes a body or a query.
ERRORS_EACH_OPERATION_DOCUMENTS = {
    ("get", "/v1/assignments"): {"401", "403", "422"},
    ("get", "/v1/assignments/{assignment_id}"): {"401", "403", "404"},
    ("post", "/v1/assignments/{assignment_id}/acceptance"): {"401", "403", "404", "409"},
    ("post", "/v1/assignments/{assignment_id}/completion"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/teams"): {"401", "403", "422"},
    ("post", "/v1/teams"): {"401", "403", "409", "422"},
    ("patch", "/v1/teams/{team_id}"): {"401", "403", "404", "409", "422"},
    ("get", "/v1/volunteers"): {"401", "403", "422"},
    ("post", "/v1/volunteers"): {"401", "403", "422"},
    ("get", "/v1/routing-rules"): {"401", "403", "422"},
    ("post", "/v1/routing-rules"): {"401", "403", "409", "422"},
}


def test_every_operation_documents_the_errors_it_can_answer(client: FlaskClient) -> None:
    assert_errors_documented(client.get("/openapi.json").json, ERRORS_EACH_OPERATION_DOCUMENTS)
