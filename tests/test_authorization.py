"""Who may do what, walked over every operation of every service against every caller.

The matrix is generated from each service's policy and its OpenAPI document: with no
credentials an operation answers 401, to a role its policy refuses 403, and to a role it admits
anything but those two (it may still be 404, 409 or 422). Then the things a role may only touch
when they are its own: another person's answer 404, word for word as a missing one does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.views import MethodView

from services.dispatch.app import create_app as create_dispatch
from services.dispatch.policy import POLICY as DISPATCH
from services.dispatch.tests.builders import assigned, volunteer
from services.intake import directory
from services.intake.app import create_app as create_intake
from services.intake.config import runtime as intake_runtime
from services.intake.policy import POLICY as INTAKE
from services.intake.tests.builders import a_request, a_resident, request_body, walk_to_completed
from services.notify import delivery
from services.notify.app import create_app as create_notify
from services.notify.config import runtime as notify_runtime
from services.notify.policy import POLICY as NOTIFY
from services.notify.tests.builders import RESIDENT as RESIDENT_INBOX
from services.notify.tests.builders import VOLUNTEER as VOLUNTEER_INBOX
from services.notify.tests.builders import inbox_of, notify
from services.points.app import create_app as create_points
from services.points.policy import POLICY as POINTS
from services.points.tests.builders import credit, rates
from shared.admission import IncompletePolicy, enforce
from shared.auth import Principal, issue_token
from shared.errors import Forbidden
from shared.policy import (
    ADMIN,
    GRID_LEADER,
    HEALTH,
    RESIDENT,
    STAFF,
    SYSTEM,
    TEAM_LEAD,
    VOLUNTEER,
    Policy,
    allow,
)
from tests.support import openapi_path

PROBLEM = "application/problem+json"
APPS: dict[str, tuple[Flask, Policy]] = {
    "intake": (create_intake(), INTAKE),
    "dispatch": (create_dispatch(), DISPATCH),
    "points": (create_points(), POINTS),
    "notify": (create_notify(), NOTIFY),
}
# Other systems reach intake with API keys; people reach every service with tokens.
CALLERS = {
    "intake": (SYSTEM, STAFF, VOLUNTEER, RESIDENT, HEALTH, ADMIN, GRID_LEADER, None),
    "dispatch": (STAFF, VOLUNTEER, RESIDENT, TEAM_LEAD, None),
    "points": (STAFF, VOLUNTEER, RESIDENT, None),
    "notify": (STAFF, VOLUNTEER, RESIDENT, None),
}
# Path parameters that must look like what they name to get past the door.
PATH_SAMPLES = {"recipient": "resident:r-0", "holder": "volunteer:v-0", "key": "request.accepted"}


def spec_of(service: str) -> dict[str, Any]:
    app, _ = APPS[service]
    spec: dict[str, Any] = app.test_client().get("/openapi.json").json
    return spec


def documented(service: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation of ``service``'s OpenAPI document, by method and path."""
    return {
        (method, path): operation
        for path, by_method in spec_of(service)["paths"].items()
        for method, operation in by_method.items()
        if method != "parameters"
    }


def operation_names(service: str) -> dict[tuple[str, str], str]:
    """Each view of ``service``'s app, by method and OpenAPI path, as its policy names it."""
    app, _ = APPS[service]
    return {
        (method.lower(), openapi_path(rule.rule)): f"{rule.endpoint}.{method}"
        for rule in app.url_map.iter_rules()
        for method in (name.lower() for name in rule.methods or ())
        if method not in ("head", "options")
    }


def example_of(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A value that looks valid for ``schema``: required fields only, the simplest of each."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example_of(spec["components"]["schemas"][name], spec)
    if "allOf" in schema:
        return example_of(schema["allOf"][0], spec)
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example_of(properties[name], spec) for name in schema.get("required", [])}
    if kind in ("number", "integer"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "x"


def body_for(service: str, operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return None if content is None else example_of(content["schema"], spec_of(service))


def matrix() -> Iterator[Any]:
    for service, callers in CALLERS.items():
        _, policy = APPS[service]
        names = operation_names(service)
        for (method, path), operation in sorted(documented(service).items()):
            name = names[(method, path)]
            for role in callers:
                expected = (
                    401 if role is None else "admitted" if role in policy.rule(name).roles else 403
                )
                yield pytest.param(
                    service,
                    method,
                    path,
                    body_for(service, operation),
                    role,
                    expected,
                    id=f"{service} {method} {path} as {role or 'anonymous'}",
                )


@pytest.fixture
def credentials() -> Callable[[str, str | None], dict[str, str]]:
    def of(service: str, role: str | None) -> dict[str, str]:
        if role is None:
            return {}
        if role == SYSTEM:
            with intake_runtime().db.transaction() as session:
                _, key = directory.create_api_client(session, name="authorization-matrix")
            return {"X-API-Key": key}
        return bearer(role, f"someone-{role}", service=service)

    return of


def bearer(role: str, subject: str, *, service: str = "intake") -> dict[str, str]:
    secret = intake_runtime().settings.auth_secret
    token = issue_token(secret, subject=subject, role=role, audience=(service,))
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("service", "method", "path", "body", "role", "expected"), list(matrix()))
def test_each_operation_answers_each_caller_as_its_policy_says(
    credentials: Callable[[str, str | None], dict[str, str]],
    service: str,
    method: str,
    path: str,
    body: Any,
    role: str | None,
    expected: int | str,
) -> None:
    app, _ = APPS[service]
    url = re.sub(r"{([^{}]+)}", lambda match: PATH_SAMPLES.get(match[1], "not-there"), path)

    response = app.test_client().open(
        url, method=method.upper(), json=body, headers=credentials(service, role)
    )

    if expected == "admitted":
        assert response.status_code not in (401, 403), response.json
        assert response.status_code < 500
    else:
        assert response.status_code == expected, response.json
        assert response.mimetype == PROBLEM
        assert response.json["type"].endswith(
            "/unauthenticated" if expected == 401 else "/forbidden"
        )


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_documented_operation_has_a_rule_and_every_rule_an_operation(service: str) -> None:
    _, policy = APPS[service]
    names = operation_names(service)

    without_view = set(documented(service)) - set(names)
    ruled = {names[key] for key in documented(service) if key in names}

    assert without_view == set()
    assert sorted(ruled - set(policy.rules)) == [], "operations without a rule"
    assert sorted(set(policy.rules) - ruled) == [], "rules without an operation"


@pytest.mark.parametrize("service", sorted(APPS))
def test_an_operation_documents_403_exactly_when_its_policy_refuses_a_caller(service: str) -> None:
    _, policy = APPS[service]
    names = operation_names(service)
    people = {role for role in CALLERS[service] if role is not None}

    for key, operation in documented(service).items():
        refuses_someone = bool(people - policy.rule(names[key]).roles)
        assert ("403" in operation["responses"]) == refuses_someone, key


@pytest.mark.parametrize("service", sorted(APPS))
def test_an_operation_that_hides_others_things_documents_404(service: str) -> None:
    _, policy = APPS[service]
    names = operation_names(service)

    for key, operation in documented(service).items():
        responses = operation["responses"]
        success = next(responses[code] for code in sorted(responses) if code.startswith("2"))
        # A list is not refused: it is kept to the caller's own (see the tests below).
        is_list = success["content"]["application/json"]["schema"].get("type") == "array"
        if policy.rule(names[key]).own and not is_list:
            assert "404" in responses, key


# Building an app


def probe_blueprint() -> Blueprint:
    blueprint = Blueprint("probe", __name__)

    @blueprint.route("/probe")
    class Probe(MethodView):
        def get(self) -> dict[str, str]:
            return {}

        def post(self) -> dict[str, str]:
            return {}

    return blueprint


def test_an_app_with_a_view_its_policy_has_no_rule_for_is_never_built() -> None:
    blueprint = probe_blueprint()
    enforce(Policy("probe", roles=(STAFF,), rules={"probe.Probe.get": allow(STAFF)}), blueprint)

    with pytest.raises(IncompletePolicy, match=r"views without a rule \['probe\.Probe\.post'\]"):
        Flask("probe").register_blueprint(blueprint)


def test_an_app_whose_policy_names_a_view_it_lacks_is_never_built() -> None:
    blueprint = probe_blueprint()
    rules = {
        name: allow(STAFF) for name in ("probe.Probe.get", "probe.Probe.post", "probe.Gone.get")
    }
    enforce(Policy("probe", roles=(STAFF,), rules=rules), blueprint)

    with pytest.raises(IncompletePolicy, match=r"rules without a view \['probe\.Gone\.get'\]"):
        Flask("probe").register_blueprint(blueprint)


def test_a_policy_naming_another_blueprints_views_is_refused_at_once() -> None:
    policy = Policy("probe", roles=(STAFF,), rules={"elsewhere.Probe.get": allow(STAFF)})

    with pytest.raises(IncompletePolicy, match=r"elsewhere\.Probe\.get"):
        enforce(policy, probe_blueprint())


def test_an_operation_without_a_rule_is_refused_to_everyone() -> None:
    policy = Policy("probe", roles=(STAFF,), rules={"probe.Probe.get": allow(STAFF)})

    with pytest.raises(Forbidden, match=r"no rule for probe\.Probe\.post"):
        policy.check_role("probe.Probe.post", Principal("duty-officer", STAFF))


def test_a_rule_admitting_a_role_that_never_calls_the_service_is_refused() -> None:
    with pytest.raises(ValueError, match="system"):
        Policy("probe", roles=(STAFF,), rules={"probe.Probe.get": allow(SYSTEM, STAFF)})


# Another person's things are hidden: 404, exactly as if they did not exist


class TestAtIntake:
    @pytest.fixture
    def client(self) -> Any:
        return APPS["intake"][0].test_client()

    @pytest.fixture
    def requests_of_two_residents(self) -> tuple[str, str, str]:
        """(the resident's id, their request's id, another resident's request's id)."""
        with intake_runtime().db.transaction() as session:
            own = a_request(session)
            other = a_request(session, resident=a_resident(session, number="502"))
            walk_to_completed(session, other)
            return own.resident_id, own.id, other.id

    def test_a_resident_reads_their_own_request_but_not_another_residents(
        self, client: Any, requests_of_two_residents: tuple[str, str, str]
    ) -> None:
        resident, own, other = requests_of_two_residents
        headers = bearer(RESIDENT, resident)

        mine = client.get(f"/v1/requests/{own}", headers=headers)
        theirs = client.get(f"/v1/requests/{other}", headers=headers)
        missing = client.get("/v1/requests/nothing", headers=headers)

        assert mine.status_code == 200
        assert (theirs.status_code, missing.status_code) == (404, 404)
        assert theirs.json["detail"] == f"No request {other}"
        assert missing.json["detail"] == "No request nothing"

    def test_a_resident_cannot_confirm_another_residents_request_nor_learn_it_exists(
        self, client: Any, requests_of_two_residents: tuple[str, str, str]
    ) -> None:
        resident, _, other = requests_of_two_residents

        response = client.post(
            f"/v1/requests/{other}/confirmation", headers=bearer(RESIDENT, resident)
        )

        assert response.status_code == 404
        assert response.json["detail"] == f"No request {other}"
        staff = bearer(STAFF, "duty-officer")
        assert client.get(f"/v1/requests/{other}", headers=staff).json["status"] == "completed"

    def test_a_resident_lists_only_their_own_requests(
        self, client: Any, requests_of_two_residents: tuple[str, str, str]
    ) -> None:
        resident, own, _ = requests_of_two_residents

        listed = client.get("/v1/requests", headers=bearer(RESIDENT, resident))

        assert [request["id"] for request in listed.json] == [own]

    def test_a_resident_neither_sees_nor_posts_for_another_resident(
        self, client: Any, requests_of_two_residents: tuple[str, str, str]
    ) -> None:
        resident, _, other_request = requests_of_two_residents
        staff = bearer(STAFF, "duty-officer")
        other = client.get(f"/v1/requests/{other_request}", headers=staff).json["resident_id"]
        headers = bearer(RESIDENT, resident)

        shown = client.get(f"/v1/residents/{other}", headers=headers)
        posted = client.post("/v1/requests", json=request_body(other), headers=headers)

        assert client.get(f"/v1/residents/{resident}", headers=headers).status_code == 200
        assert (shown.status_code, posted.status_code) == (404, 404)
        assert shown.json["detail"] == posted.json["detail"] == f"No resident {other}"
        assert len(client.get("/v1/requests", headers=staff).json) == 2


class TestAtDispatch:
    def test_a_volunteer_neither_sees_nor_works_another_volunteers_assignment(self) -> None:
        volunteer("Lao Zhang", routed_for="knife_sharpening")
        assignment = assigned()
        stranger = bearer(VOLUNTEER, volunteer("Stranger").id, service="dispatch")
        client = APPS["dispatch"][0].test_client()
        url = f"/v1/assignments/{assignment.id}"

        answers = [
            client.get(url, headers=stranger),
            client.post(f"{url}/acceptance", headers=stranger),
            client.post(f"{url}/completion", json={"hours": 1}, headers=stranger),
        ]

        assert [answer.status_code for answer in answers] == [404, 404, 404]
        assert {answer.json["detail"] for answer in answers} == {f"No assignment {assignment.id}"}
        assert client.get("/v1/assignments", headers=stranger).json == []
        staff = bearer(STAFF, "staff-1", service="dispatch")
        assert client.get(url, headers=staff).json["status"] == "assigned"


class TestAtPoints:
    def test_a_volunteer_sees_their_own_account_but_not_another_volunteers(self) -> None:
        rates(knife_sharpening=10)
        own = credit(volunteer_id="v-7")
        other = credit(volunteer_id="v-8")
        headers = bearer(VOLUNTEER, "v-7", service="points")
        client = APPS["points"][0].test_client()

        assert client.get("/v1/accounts/volunteer:v-7", headers=headers).status_code == 200
        assert client.get(f"/v1/transfers/{own.id}", headers=headers).status_code == 200
        hidden = [
            client.get("/v1/accounts/volunteer:v-8", headers=headers),
            client.get("/v1/accounts/volunteer:v-8/entries", headers=headers),
            client.get(f"/v1/transfers/{other.id}", headers=headers),
        ]
        missing = client.get("/v1/accounts/volunteer:v-9", headers=headers)

        assert [answer.status_code for answer in hidden] == [404, 404, 404]
        assert hidden[0].json["detail"] == "No account 'volunteer:v-8'"
        assert hidden[2].json["detail"] == f"No transfer {other.id!r}"
        assert (missing.status_code, missing.json["detail"]) == (404, "No account 'volunteer:v-9'")


class TestAtNotify:
    @pytest.fixture(autouse=True)
    def templates(self) -> None:
        with notify_runtime().db.transaction() as session:
            delivery.ensure_default_templates(session)

    def test_a_person_can_neither_read_nor_mark_another_persons_inbox(self) -> None:
        notify(VOLUNTEER_INBOX)
        (message,) = inbox_of(VOLUNTEER_INBOX)
        resident = bearer(RESIDENT, RESIDENT_INBOX.split(":", 1)[1], service="notify")
        client = APPS["notify"][0].test_client()

        listed = client.get(f"/v1/inbox/{VOLUNTEER_INBOX}", headers=resident)
        marked = client.post(
            f"/v1/inbox/{VOLUNTEER_INBOX}/messages/{message.id}/read", headers=resident
        )
        missing = client.post(
            f"/v1/inbox/{RESIDENT_INBOX}/messages/{message.id}/read", headers=resident
        )

        assert (listed.status_code, marked.status_code, missing.status_code) == (404, 404, 404)
        assert marked.json["detail"] == f"No message {message.id} in the inbox of {VOLUNTEER_INBOX}"
        assert inbox_of(VOLUNTEER_INBOX)[0].read_at is None
        assert client.get(f"/v1/inbox/{RESIDENT_INBOX}", headers=resident).status_code == 200

    def test_the_same_id_under_another_role_is_another_persons_inbox(self) -> None:
        notify(RESIDENT_INBOX)
        same_id = RESIDENT_INBOX.split(":", 1)[1]
        client = APPS["notify"][0].test_client()

        response = client.get(
            f"/v1/inbox/{RESIDENT_INBOX}", headers=bearer(VOLUNTEER, same_id, service="notify")
        )

        assert response.status_code == 404
