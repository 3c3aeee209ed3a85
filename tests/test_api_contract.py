"""Every service keeps the promises of its own OpenAPI document, whatever a caller sends.

Schemathesis reads each service's /openapi.json, generates valid and invalid requests for every
operation and calls the app in-process (WSGI). No answer may be a 5xx; each must have a
documented status code and content type and match the schema documented for it. A few records
are stored first, and valid requests aim at them, so the fuzzing reaches past "404 Not Found".
Runs are small and seeded: a failure replays the same way on the next run.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from services.dispatch.app import create_app as create_dispatch
from services.dispatch.tests.builders import assigned, volunteer
from services.intake import directory
from services.intake.app import create_app as create_intake
from services.intake.config import runtime as intake_runtime
from services.intake.tests.builders import a_request, a_resident, walk_to_completed
from services.notify import delivery
from services.notify.app import create_app as create_notify
from services.notify.config import runtime as notify_runtime
from services.notify.tests.builders import RESIDENT, inbox_of, notify
from services.points.app import create_app as create_points
from services.points.ledger import volunteer_holder
from services.points.tests.builders import credit, rates
from shared.auth import issue_token
from shared.notifications import REQUEST_ACCEPTED

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261126,
        "generation": {"max-examples": 15, "deterministic": True, "database": "none"},
    }
)
FUZZING = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        # The records and credentials a test stores serve all of its examples, on purpose.
        HealthCheck.function_scoped_fixture,
    ],
)


@schemathesis.check
def success_is_documented(ctx: Any, response: Any, case: Any) -> bool | None:
    """Errors may fall back on the documented ``default`` problem; a success may not.

    Flask answers OPTIONS for every route by itself (listing the allowed methods), so probes
    with a method the operation does not have are left to the other checks.
    """
    if response.status_code < 400 and case.method.upper() == case.operation.method.upper():
        documented = case.operation.definition.raw.get("responses", {})
        if str(response.status_code) not in documented:
            raise AssertionError(f"{response.status_code} is not documented for {case.operation}")
    return None


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    success_is_documented,
]


def _schema(create_app: Any) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", create_app(), config=CONFIG)


intake = _schema(create_intake)
dispatch = _schema(create_dispatch)
points = _schema(create_points)
notify_api = _schema(create_notify)


def staff_headers() -> dict[str, str]:
    # Every service checks tokens with the same secret; any runtime's settings will do.
    secret = intake_runtime().settings.auth_secret
    token = issue_token(secret, subject="duty-officer", role="staff")
    return {"Authorization": f"Bearer {token}"}


def call_and_validate(case: Any, headers: dict[str, str], known: dict[str, Any]) -> None:
    """Valid requests name the stored records; invalid ones keep what was generated."""
    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        for name in case.path_parameters or {}:
            if name in known:
                case.path_parameters[name] = known[name]
        if isinstance(case.body, dict):
            for name in case.body:
                if name in known:
                    case.body[name] = known[name]
    case.call_and_validate(headers=headers, checks=CHECKS)


@pytest.fixture
def intake_records() -> tuple[dict[str, str], dict[str, Any]]:
    with intake_runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="contract-fuzzer")
        resident = a_resident(session)
        request = a_request(session, resident=resident)
        walk_to_completed(session, request)
        home = resident.household
        known = {
            "request_id": request.id,
            "resident_id": resident.id,
            "category": request.category,
            "location": {
                "community": home.community,
                "building": home.building,
                "unit": home.unit,
                "household": home.number,
            },
        }
    return {"X-API-Key": key}, known


@pytest.fixture
def dispatch_records() -> dict[str, str]:
    person = volunteer(routed_for="knife_sharpening")
    return {"assignment_id": assigned().id, "volunteer_id": person.id}


@pytest.fixture
def points_records() -> dict[str, str]:
    rates(knife_sharpening=10)
    transfer = credit(volunteer_id="v-7")
    return {
        "holder": volunteer_holder("v-7"),
        "transfer_id": transfer.id,
        "category": "knife_sharpening",
    }


@pytest.fixture
def notify_records() -> dict[str, str]:
    with notify_runtime().db.transaction() as session:
        delivery.ensure_default_templates(session)
    notify(recipient=RESIDENT, kind=REQUEST_ACCEPTED)
    return {
        "recipient": RESIDENT,
        "message_id": inbox_of(RESIDENT)[0].id,
        "key": "request.accepted",
    }


@intake.parametrize()
@FUZZING
def test_intake_keeps_its_documented_contract(case, intake_records):
    api_key, known = intake_records
    call_and_validate(case, api_key, known)


@dispatch.parametrize()
@FUZZING
def test_dispatch_keeps_its_documented_contract(case, dispatch_records):
    call_and_validate(case, staff_headers(), dispatch_records)


@points.parametrize()
@FUZZING
def test_points_keeps_its_documented_contract(case, points_records):
    call_and_validate(case, staff_headers(), points_records)


@notify_api.parametrize()
@FUZZING
def test_notify_keeps_its_documented_contract(case, notify_records):
    call_and_validate(case, staff_headers(), notify_records)
