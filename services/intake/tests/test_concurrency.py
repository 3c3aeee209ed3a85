"""Writers racing for the same row, each in its own transaction and thread.

SQLite serialises writers, so only PostgreSQL (READ COMMITTED) can lose an update: the races
that need it are skipped elsewhere, and the idempotency race runs on both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from services.intake import actors, directory, requests
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.models import ServiceRequest
from services.intake.tests.builders import (
    NOW,
    a_category,
    a_request,
    a_resident,
    request_body,
    resident_of,
    walk_to_completed,
)
from shared import events
from shared.errors import Conflict
from tests.support import deliver_to, message_for, staged_messages

# Collected only on PostgreSQL (see the root conftest): SQLite has one writer at a time.
postgresql_only = pytest.mark.postgres


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread, released together; what each returned or raised."""
    start = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        start.wait(timeout=10)
        try:
            outcomes[index] = call()
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def status_of(request_id: str) -> str:
    with runtime().db.read() as session:
        request = session.get(ServiceRequest, request_id)
        assert request is not None
        return request.status


@postgresql_only
def test_completion_and_acceptance_arriving_together_always_end_completed():
    for _ in range(20):
        with runtime().db.transaction() as session:
            request = a_request(session)
            requests.record_assignment(
                session,
                request_id=request.id,
                assignment_id="a1",
                assignee=requests.Assignee(type="volunteer", id="v1", name="Lao Zhang"),
                at=NOW,
            )
        base = {"request_id": request.id, "assignment_id": "a1", "volunteer_id": "v1"}
        by = "volunteer:v1"
        accepted = message_for(
            events.REQUEST_ACCEPTED, {**base, "accepted_by": by, "accepted_at": NOW}
        )
        completed = message_for(
            events.REQUEST_COMPLETED,
            {**base, "hours": "1.5", "completed_by": by, "completed_at": NOW},
            to="intake",
        )
        outcomes = at_once(
            partial(deliver_to, actors.CONSUMERS, completed),
            partial(deliver_to, actors.CONSUMERS, accepted),
        )
        assert outcomes == [True, True]
        assert status_of(request.id) == "completed"


@postgresql_only
def test_two_confirmations_at_once_confirm_once_and_stage_one_event():
    with runtime().db.transaction() as session:
        request = a_request(session)
        walk_to_completed(session, request)
    resident = resident_of(request)

    def confirm() -> str:
        with runtime().db.transaction() as session:
            return requests.confirm_request(
                session, request_id=request.id, confirmed_by=resident
            ).status

    outcomes = at_once(confirm, confirm)
    refused = [outcome for outcome in outcomes if isinstance(outcome, Conflict)]
    assert outcomes.count("confirmed") == len(refused) == 1
    assert "already confirmed" in str(refused[0])
    assert len(staged_messages(runtime(), events.REQUEST_CONFIRMED, to="points")) == 1


def test_two_posts_at_once_with_the_same_idempotency_key_create_one_request(monkeypatch):
    with runtime().db.transaction() as session:
        a_category(session)
        resident_id = a_resident(session).id
        _, key = directory.create_api_client(session, name="city-hotline")
    if not runtime().db.is_sqlite:
        both_inside = threading.Barrier(2)
        submit = requests.submit_request

        def submit_then_wait(session: Any, **fields: Any) -> ServiceRequest:
            created = submit(session, **fields)
            # Both transactions are now past their look-up of the key: whichever commits
            # second meets the first one's key and must answer with the first one's request.
            both_inside.wait(timeout=10)
            return created

        monkeypatch.setattr(requests, "submit_request", submit_then_wait)
    app = create_app()

    def post() -> Any:
        return app.test_client().post(
            "/v1/requests",
            json=request_body(resident_id),
            headers={"X-API-Key": key, "Idempotency-Key": "hotline-901"},
        )

    first, second = at_once(post, post)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json["id"] == second.json["id"]
    with runtime().db.read() as session:
        assert session.scalar(select(func.count()).select_from(ServiceRequest)) == 1
