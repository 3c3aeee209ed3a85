"""Operating one service at a time while the others serve: dispatch away for a while, points
migrated down and up again."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import redis
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from devtools.processes import run_command, wait_until_ready
from devtools.thread import KnifeSharpeningThread
from services.points.config import runtime as points_runtime
from shared.migrations import alembic_config, upgrade
from shared.topology import SERVICES, queue_of
from tests.support import eventually

pytestmark = pytest.mark.e2e

REQUESTS = 30
DEADLINE = 60.0
PAGE_SIZE = 100


def quiet(_: str) -> None:
    pass


def processes_of(stack, service: str) -> list[str]:
    """Every process of ``service`` in deploy/Procfile: web, worker, relay, scheduler."""
    return [name for name in stack.group.commands if name.startswith(f"{service}-")]


def gauge(stack, service: str, name: str) -> float:
    metrics = requests.get(f"{stack.urls[service]}/metrics", timeout=5).text
    found = re.search(rf'^{name}{{service="{service}"}} ([0-9.e+-]+)$', metrics, re.MULTILINE)
    assert found, f"{service} reports no {name}"
    return float(found.group(1))


def dead_letters(stack) -> dict[str, float]:
    return {service: gauge(stack, service, "redvest_dead_letters") for service in SERVICES}


def outboxes_drained(stack) -> bool:
    return all(gauge(stack, service, "redvest_outbox_pending") == 0 for service in SERVICES)


def waiting_in_queue(stack, service: str) -> set[str]:
    """The request ids of the messages in ``service``'s queue that no worker has taken."""
    client = redis.Redis.from_url(stack.env["BROKER_URL"])
    key = f"{stack.env['BROKER_NAMESPACE']}:{queue_of(service)}"
    try:
        message_ids = client.lrange(key, 0, -1)
        bodies = client.hmget(f"{key}.msgs", message_ids) if message_ids else []
    finally:
        client.close()
    return {json.loads(body)["kwargs"].get("request_id", "") for body in bodies if body is not None}


def status_of(thread: KnifeSharpeningThread, request_id: str) -> str:
    status: str = thread.call("GET", "intake", f"/v1/requests/{request_id}", who="system")["status"]
    return status


def all_reach(
    thread: KnifeSharpeningThread, request_ids: Iterable[str], status: str
) -> Callable[[], bool]:
    """A check for ``eventually``: true once every request has shown ``status`` at intake."""
    pending = set(request_ids)

    def check() -> bool:
        pending.difference_update([r for r in list(pending) if status_of(thread, r) == status])
        return not pending

    return check


def every_page(thread: KnifeSharpeningThread, service: str, path: str) -> Iterator[dict[str, Any]]:
    """Every item of a paginated list, read as staff."""
    page = 1
    while True:
        items = thread.call(
            "GET", service, path, who="staff", params={"page": page, "page_size": PAGE_SIZE}
        )
        yield from items
        if len(items) < PAGE_SIZE:
            return
        page += 1


def assignment_notices(thread: KnifeSharpeningThread) -> Counter[str]:
    """How many ``assignment.created`` messages the volunteer's inbox holds, by request."""
    volunteer = f"volunteer:{thread.credentials['volunteer']['id']}"
    return Counter(
        message["data"].get("request_id", "")
        for message in every_page(thread, "notify", f"/v1/inbox/{volunteer}")
        if message["template"] == "assignment.created"
    )


def assignments(thread: KnifeSharpeningThread) -> Counter[str]:
    """How many assignments dispatch holds, by request, and whose they are."""
    return Counter(
        (a["request_id"], a["volunteer_id"])
        for a in every_page(thread, "dispatch", "/v1/assignments")
    )


def submitted(thread: KnifeSharpeningThread) -> str:
    thread.submit()
    return thread.request_id


def assert_each_handled_once(thread: KnifeSharpeningThread, request_ids: Iterable[str]) -> None:
    """One assignment to the demo volunteer, and one message telling them of it, per request."""
    ids = list(request_ids)
    volunteer = thread.credentials["volunteer"]["id"]
    notices = eventually(
        lambda: (found := assignment_notices(thread)) and all(found[r] for r in ids) and found,
        timeout=DEADLINE,
        interval=0.2,
        what="a notification in the volunteer's inbox for every request",
    )
    assert {r: notices[r] for r in ids} == {r: 1 for r in ids}
    held = assignments(thread)
    assert {r: held[r, volunteer] for r in ids} == {r: 1 for r in ids}
    mine = set(ids)
    assert sum(n for (r, _), n in held.items() if r in mine) == len(ids), "someone else's too"


def test_requests_posted_while_dispatch_is_down_are_each_assigned_and_notified_once_on_its_return(
    stack,
):
    thread = KnifeSharpeningThread(stack.seed(), say=quiet, timeout=DEADLINE)
    dead_before = dead_letters(stack)
    dispatch = processes_of(stack, "dispatch")
    assert dispatch == [f"dispatch-{p}" for p in ("web", "worker", "relay", "scheduler")]

    stack.group.stop(dispatch)
    try:
        posted = [submitted(thread) for _ in range(REQUESTS)]
        eventually(
            lambda: set(posted) <= waiting_in_queue(stack, "dispatch"),
            what="every request to wait in dispatch's queue",
        )
        assert {status_of(thread, r) for r in posted} == {"submitted"}
    finally:
        stack.group.start(dispatch)
    wait_until_ready([stack.urls["dispatch"]], timeout=DEADLINE, group=stack.group)

    eventually(
        all_reach(thread, posted, "assigned"),
        timeout=DEADLINE,
        interval=0.2,
        what="every request posted during the outage to be assigned",
    )
    assert not set(posted) & waiting_in_queue(stack, "dispatch")
    assert_each_handled_once(thread, posted)
    eventually(
        partial(outboxes_drained, stack),
        timeout=DEADLINE,
        interval=0.2,
        what="every outbox to drain",
    )
    assert dead_letters(stack) == dead_before


class Traffic:
    """A resident's requests posted through intake and read back at intake, dispatch and notify,
    round after round in a thread of its own, each answer checked."""

    def __init__(self, credentials: Mapping[str, Any]) -> None:
        self.thread = KnifeSharpeningThread(credentials, say=quiet, timeout=DEADLINE)
        self.posted: list[str] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.runner = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _round(self) -> None:
        request_id = submitted(self.thread)
        self.posted.append(request_id)
        status_of(self.thread, request_id)
        self.thread.call("GET", "dispatch", "/v1/assignments", who="volunteer")
        volunteer = f"volunteer:{self.thread.credentials['volunteer']['id']}"
        self.thread.call("GET", "notify", f"/v1/inbox/{volunteer}", who="volunteer")

    def _run(self) -> None:
        # Paced so that the migration has the machine's cores to itself part of the time.
        while not self.stopping.wait(0.1):
            try:
                self._round()
            except Exception as error:  # an answer that was not 2xx, or none at all
                self.failures.append(repr(error))

    def more_posted(self, than: int, what: str) -> None:
        """Wait until the traffic has posted more than ``than`` requests."""
        eventually(lambda: len(self.posted) > than, timeout=DEADLINE, what=what)

    @contextmanager
    def running(self) -> Iterator[Traffic]:
        self.runner.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self.runner.join(timeout=DEADLINE)
            self.thread.http.close()


def points_revision() -> str | None:
    with points_runtime().db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def points_schema_differences() -> list[Any]:
    """What sets points' database apart from the tables its models declare."""
    runtime = points_runtime()
    with runtime.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences: list[Any] = compare_metadata(context, runtime.metadata)
    return differences


def test_points_migrates_down_and_up_again_while_intake_dispatch_and_notify_keep_serving(stack):
    credentials = stack.seed()
    runtime = points_runtime()
    scripts = ScriptDirectory.from_config(
        alembic_config(runtime.migrations, runtime.settings.database_url)
    )
    head = scripts.get_current_head()
    assert head is not None
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str), "points' head has a single revision before it"
    assert points_revision() == head
    points = processes_of(stack, "points")
    dead_before = dead_letters(stack)
    # Walked to the resident's confirmation while points is away: its credit waits for points.
    earner = KnifeSharpeningThread(credentials, say=quiet, timeout=DEADLINE)

    with Traffic(credentials).running() as traffic:
        traffic.more_posted(0, "traffic to flow")
        stack.group.stop(points)
        posted_before = len(traffic.posted)
        try:
            run_command([sys.executable, "-m", "services.points", "downgrade", previous], stack.env)
            assert points_revision() == previous
            assert points_schema_differences()
            traffic.more_posted(posted_before, "traffic while points is downgraded")
            earner.submit()
            earner.assigned()
            earner.accept()
            earner.complete()
            earner.confirm()
            eventually(
                lambda: earner.request_id in waiting_in_queue(stack, "points"),
                what="the earner's credit to wait in points' queue",
            )
            run_command([sys.executable, "-m", "services.points", "migrate"], stack.env)
            assert points_revision() == head
            assert points_schema_differences() == []
        finally:
            # A failure above must not leave the run's points database behind its code.
            if points_revision() != head:
                upgrade(runtime.migrations, runtime.settings.database_url)
            stack.group.start(points)
        wait_until_ready([stack.urls["points"]], timeout=DEADLINE, group=stack.group)
        posted_while_away = len(traffic.posted) - posted_before
        traffic.more_posted(len(traffic.posted), "traffic once points is back")

    print(f"\n{posted_while_away} request(s) posted and read back while points was away")
    assert traffic.failures == []
    thread = KnifeSharpeningThread(credentials, say=quiet, timeout=DEADLINE)
    eventually(
        all_reach(thread, traffic.posted, "assigned"),
        timeout=DEADLINE,
        interval=0.2,
        what="every request posted during the migration to be assigned",
    )
    assert_each_handled_once(thread, [*traffic.posted, earner.request_id])
    earner.transfer_credited()
    steps: list[str] = []
    KnifeSharpeningThread(credentials, say=steps.append, timeout=DEADLINE).walk()
    assert steps[5].startswith("6. points: volunteer credited"), steps
    eventually(
        partial(outboxes_drained, stack),
        timeout=DEADLINE,
        interval=0.2,
        what="every outbox to drain",
    )
    assert dead_letters(stack) == dead_before
