"""Story 3 across real processes, and what a crash of a relay or a worker does to it."""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest
import redis
import requests

from devtools.thread import KnifeSharpeningThread
from services.intake import requests as requests_domain
from services.intake.config import runtime as intake_runtime
from shared.auth import Principal
from tests.support import eventually

pytestmark = pytest.mark.e2e


def outbox_pending(stack, service: str) -> float:
    metrics = requests.get(f"{stack.urls[service]}/metrics", timeout=5).text
    found = re.search(rf'redvest_outbox_pending{{service="{service}"}} ([0-9.]+)', metrics)
    assert found, metrics[-500:]
    return float(found.group(1))


def test_a_knife_sharpening_request_runs_through_all_four_services(stack):
    steps: list[str] = []
    KnifeSharpeningThread(stack.seed(), say=steps.append, timeout=60).walk()
    assert len(steps) == 10
    assert steps[-1].startswith("7. notify")


def left_behind_by_a_crash(credentials) -> str:
    """A request committed by a process that died before publishing it at commit: the request
    and its outbox row are in intake's database, and nothing reached the broker."""
    # This process does not publish at commit (REDVEST_ENV=test): its commits are exactly what
    # a crash between the commit and the publish leaves behind.
    with intake_runtime().db.transaction() as session:
        request = requests_domain.submit_request(
            session,
            submitted_by=Principal("client:demo-console", "system", is_system=True),
            category="knife_sharpening",
            summary="Two kitchen knives and scissors",
            resident_id=credentials["resident"]["id"],
        )
    return request.id


def test_an_event_a_crash_left_unpublished_is_published_by_the_relay_when_it_is_back(stack):
    credentials = stack.seed()
    thread = KnifeSharpeningThread(credentials, say=lambda _: None, timeout=60)
    stack.group.stop(["intake-relay"])
    try:
        thread.request_id = left_behind_by_a_crash(credentials)
        assert outbox_pending(stack, "intake") == 1
        time.sleep(1)  # nothing else would publish it: it stays where it is
        assert thread.request_status() == "submitted"
    finally:
        stack.group.start(["intake-relay"])
    thread.assigned()
    eventually(lambda: outbox_pending(stack, "intake") == 0, what="the outbox to drain")
    mine = [
        a
        for a in thread.call(
            "GET", "dispatch", "/v1/assignments", who="staff", params={"page_size": 100}
        )
        if a["request_id"] == thread.request_id
    ]
    assert len(mine) == 1


def hold_database(db):
    """Take the write lock a handler needs, so a worker blocks inside it until released."""
    blocker = db.engine.connect()
    blocker.begin()  # on SQLite the engine begins IMMEDIATE: the write lock is taken here
    if not db.is_sqlite:
        blocker.exec_driver_sql("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
    return blocker


def _messages_held_by_workers(stack, queue: str) -> int:
    url, namespace = stack.env["BROKER_URL"], stack.env["BROKER_NAMESPACE"]
    client = redis.Redis.from_url(url)
    try:
        return sum(client.scard(key) for key in client.scan_iter(f"{namespace}:__acks__.*.{queue}"))
    finally:
        client.close()


def test_a_worker_killed_mid_message_has_the_message_processed_after_restart(stack):
    """SIGKILL the dispatch worker while it holds a message; the restarted worker gets it back."""
    from services.dispatch.config import runtime as dispatch_runtime

    thread = KnifeSharpeningThread(stack.seed(), say=lambda _: None, timeout=180)
    # Hold dispatch's database so the worker blocks inside the handler, message unacknowledged.
    blocker = hold_database(dispatch_runtime().db)
    try:
        thread.submit()
        eventually(
            lambda: _messages_held_by_workers(stack, "dispatch") > 0,
            what="the worker to take the message",
        )
        stack.group.kill("dispatch-worker")
    finally:
        blocker.rollback()
        blocker.close()
    restarted = time.monotonic()
    stack.group.start(["dispatch-worker"])
    thread.wait_for_status("assigned")
    recovered = time.monotonic() - restarted
    print(f"\nkilled worker's message processed {recovered:.1f}s after restart")
    assert thread.request_status() == "assigned"


def test_a_worker_stopped_with_sigterm_finishes_the_message_it_holds(stack):
    """SIGTERM while the notify worker is inside a handler: it finishes and acks before exiting."""
    from services.notify.config import runtime as notify_runtime

    thread = KnifeSharpeningThread(stack.seed(), say=lambda _: None, timeout=60)
    volunteer = f"volunteer:{thread.credentials['volunteer']['id']}"
    blocker = hold_database(notify_runtime().db)
    try:
        thread.submit()
        eventually(
            lambda: _messages_held_by_workers(stack, "notify") > 0,
            what="the notify worker to take the message",
        )
        stack.group.signal("notify-worker", signal.SIGTERM)
    finally:
        blocker.rollback()
        blocker.close()
    stack.group.running.pop("notify-worker").wait(timeout=60)
    try:
        assert _messages_held_by_workers(stack, "notify") == 0
        assert thread.inbox(volunteer, "volunteer", "assignment.created")
    finally:
        stack.group.start(["notify-worker"])


def test_the_same_idempotency_key_yields_one_request_across_processes(stack):
    thread = KnifeSharpeningThread(stack.seed(), say=lambda _: None)
    key = uuid.uuid4().hex
    resident = thread.credentials["resident"]
    body = {
        "category": "knife_sharpening",
        "summary": "Retry after a time-out",
        "resident_id": resident["id"],
    }
    first = thread.call(
        "POST",
        "intake",
        "/v1/requests",
        who="system",
        expect=201,
        headers={"Idempotency-Key": key},
        json=body,
    )
    again = thread.call(
        "POST",
        "intake",
        "/v1/requests",
        who="system",
        expect=201,
        headers={"Idempotency-Key": key},
        json=body,
    )
    assert again["id"] == first["id"]
    thread.call(
        "POST",
        "intake",
        "/v1/requests",
        who="system",
        expect=422,
        headers={"Idempotency-Key": key},
        json={**body, "summary": "Something else"},
    )
