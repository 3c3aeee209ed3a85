"""Merges that cross: two requests merged into each other at once, and a merge that would make a
chain (a request merged into one that is itself merged). Each ends with one merge made, the
other refused with a 409, and every duplicate pointing at a request that carries its need."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest

from services.intake import requests
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.models import ServiceRequest
from services.intake.tests.builders import DUTY_OFFICER, a_request, a_resident
from services.intake.tests.test_api import bearer
from services.intake.tests.test_concurrency import at_once

STAFF = bearer(DUTY_OFFICER.subject, DUTY_OFFICER.role)


def requests_for_one_resident(count: int) -> list[str]:
    with runtime().db.transaction() as session:
        resident = a_resident(session)
        return [a_request(session, resident=resident).id for _ in range(count)]


def merged_into(request_id: str) -> str | None:
    with runtime().db.read() as session:
        request = session.get(ServiceRequest, request_id)
        assert request is not None
        return request.duplicate_of


def no_chain(*request_ids: str) -> bool:
    """No request among these is merged into one that is merged in turn."""
    return all(
        (original := merged_into(request_id)) is None or merged_into(original) is None
        for request_id in request_ids
    )


def merge(client: Any, request_id: str, into: str) -> Any:
    return client.post(f"/v1/requests/{request_id}/merge", json={"into": into}, headers=STAFF)


class TestAMergeNeverMakesAChain:
    def test_a_request_others_were_merged_into_is_not_itself_merged(self, client):
        first, second, third = requests_for_one_resident(3)
        assert merge(client, first, second).status_code == 200

        refused = merge(client, second, third)

        assert refused.status_code == 409
        assert f"Request {second} carries the need of {first}" in refused.json["detail"]
        assert f"merge request {third} into {second} instead" in refused.json["detail"]
        assert refused.json["duplicates"] == [first]
        assert (merged_into(first), merged_into(second)) == (second, None)

    def test_a_request_is_not_merged_into_one_that_was_merged(self, client):
        first, second, third = requests_for_one_resident(3)
        assert merge(client, second, third).status_code == 200

        refused = merge(client, first, second)

        assert refused.status_code == 409
        assert f"merge into request {third}, which carries the need" in refused.json["detail"]
        assert (merged_into(first), merged_into(second)) == (None, third)

    def test_the_refusal_leaves_the_request_open_to_be_merged_the_other_way(self, session):
        first, second, third = (a_request(session).id for _ in range(3))
        requests.merge_request(session, request_id=first, into=second, merged_by=DUTY_OFFICER)
        with pytest.raises(requests.IllegalTransition, match="cannot itself be merged") as refused:
            requests.merge_request(session, request_id=second, into=third, merged_by=DUTY_OFFICER)
        assert refused.value.status == 409

        requests.merge_request(session, request_id=third, into=second, merged_by=DUTY_OFFICER)

        session.commit()
        assert (merged_into(first), merged_into(second), merged_into(third)) == (
            second,
            None,
            second,
        )


@pytest.mark.postgres
class TestMergesAtOnce:
    def test_two_requests_merged_into_each_other_at_once_merge_once_without_a_deadlock(
        self, monkeypatch
    ):
        """Each merge holds its duplicate, then waits (up to a moment) until the other holds its
        own: taken in the caller's order, the locks would cross and PostgreSQL would end one of
        the transactions as a deadlock."""
        both_hold = threading.Barrier(2)
        held = requests._held

        def held_then_wait(*arguments: Any, **keywords: Any) -> ServiceRequest:
            request = held(*arguments, **keywords)
            # Held in id order, the other merge waits for this one's locks and cannot come here
            # yet: the wait ends at its timeout.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_hold.wait(timeout=2)
            return request

        monkeypatch.setattr(requests, "_held", held_then_wait)
        app = create_app()
        first, second = requests_for_one_resident(2)

        outcomes = at_once(
            lambda: merge(app.test_client(), first, second),
            lambda: merge(app.test_client(), second, first),
        )

        assert sorted(outcome.status_code for outcome in outcomes) == [200, 409]
        refused = next(outcome for outcome in outcomes if outcome.status_code == 409)
        assert refused.json["type"].endswith("/illegal-transition")
        assert [merged_into(first), merged_into(second)].count(None) == 1

    @pytest.mark.parametrize("holding_first", ["merge into it", "merge of it"])
    def test_a_merge_into_a_request_and_a_merge_of_it_at_once_make_no_chain(
        self, monkeypatch, holding_first
    ):
        """One merge holds its rows, not yet committed, when the other starts: the other waits
        for the lock, then must read what the first committed and refuse."""
        first, second, third = requests_for_one_resident(3)
        into_it, of_it = (first, second), (second, third)
        leading, following = (
            (into_it, of_it) if holding_first == "merge into it" else (of_it, into_it)
        )
        leader_holds = threading.Event()
        merge_request = requests.merge_request

        def merge_then_hold(session: Any, **fields: Any) -> ServiceRequest:
            merged = merge_request(session, **fields)
            if fields["request_id"] == leading[0]:
                leader_holds.set()
                time.sleep(0.5)  # the other merge now waits for this one's locks
            return merged

        def follow() -> Any:
            assert leader_holds.wait(timeout=10)
            return merge(app.test_client(), *following)

        monkeypatch.setattr(requests, "merge_request", merge_then_hold)
        app = create_app()

        led, followed = at_once(lambda: merge(app.test_client(), *leading), follow)

        assert (led.status_code, followed.status_code) == (200, 409)
        assert no_chain(first, second, third)
