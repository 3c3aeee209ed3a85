"""Webhooks: a system's receivers hear, signed and in order, what happens to its requests.

The receiver is a real HTTP server on a free port of this machine. What the scheduler and
intake's worker would do is done here in the test's thread, by the same code: the scheduler
fires the due timers (the fan-out over the timeline among them) and each ``webhook.delivery_due``
in the outbox is handed to intake's consumer, whose transaction the worker's sender follows.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select

from services.intake import actors, destinations, directory, requests, sending, webhooks
from services.intake.config import runtime
from services.intake.models import (
    ApiClient,
    ServiceRequest,
    TimelineEntry,
    WebhookDelivery,
    WebhookFeed,
)
from services.intake.tests.builders import (
    HOTLINE,
    a_request,
    a_resident,
    post,
    request_body,
    walk_to_completed,
)
from services.intake.tests.test_api import bearer
from shared import clock, events
from shared.errors import Invalid
from shared.relay import drain
from shared.scheduler import Scheduler
from shared.timers import Timers
from tests.support import deliver_to, eventually, running_worker, staged_messages

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
LOCAL = destinations.destinations_for("test")
PRODUCTION = destinations.destinations_for("production")


# A receiver of the test's own.


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    @property
    def signatures(self) -> tuple[int, list[str]]:
        """The signature header's time and its v1 signatures."""
        parts = [part.split("=", 1) for part in self.headers["Redvest-Signature"].split(",")]
        stamps = [int(value) for name, value in parts if name == "t"]
        assert len(stamps) == 1
        return stamps[0], [value for name, value in parts if name == "v1"]

    def is_signed_by(self, secret: str) -> bool:
        """Checked as a receiver would, from the header and the body alone."""
        stamp, signatures = self.signatures
        expected = hmac.new(
            secret.encode(), f"{stamp}.".encode() + self.body, hashlib.sha256
        ).hexdigest()
        return expected in signatures


@dataclass
class Receiver:
    """An HTTP server in a thread: what it was sent, in order, and what it answers."""

    answer: Callable[[Received], int] = lambda _: 200
    answer_body: bytes = b'{"ok": true}'
    # When set, each answer waits for it: a receiver that is slow to answer.
    held: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got = Received(self.path, dict(self.headers.items()), body)
                with receiver.lock:
                    receiver.received.append(got)
                if receiver.held is not None:
                    receiver.held.wait(timeout=30)
                # The sender may have hung up already: it waits for no one.
                with contextlib.suppress(ConnectionError):
                    self.send_response(receiver.answer(got))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(receiver.answer_body)))
                    self.end_headers()
                    self.wfile.write(receiver.answer_body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutting the server down waits for its next one.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.held is not None:
            self.held.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/redvest"

    def events(self) -> list[tuple[str, str, str]]:
        """(event type, request id, event id) of each delivery received, in order."""
        with self.lock:
            return [
                (got.event["type"], got.event["data"]["request_id"], got.event["id"])
                for got in self.received
            ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.start()
    yield found
    found.stop()


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.freeze(T0):
        yield


@pytest.fixture
def sender() -> Iterator[webhooks.Sender]:
    """The worker's sender, on the test's database."""
    attached = webhooks.Sender(runtime().db, destinations=LOCAL, timeout_s=5).attach()
    yield attached
    attached.detach()


def scheduler() -> Scheduler:
    importlib.import_module("services.intake.timers")
    timers = Timers.on(runtime().metadata)
    assert timers is not None
    return Scheduler(service="intake", db=runtime().db, timers=timers, interval_s=1)


def pump() -> None:
    """Do what is due now, as the scheduler and intake's worker would, until nothing is."""
    for _ in range(50):
        fired = scheduler().fire_due()
        handled = [
            deliver_to(actors.CONSUMERS, message)
            for message in staged_messages(runtime(), events.WEBHOOK_DELIVERY_DUE)
        ]
        if not fired and not any(handled):
            return
    raise AssertionError("the webhooks never settled")


def tick(seconds: float = 1) -> None:
    """Let time pass (the fan-out reads the timeline each second), then do what is due."""
    clock.advance(timedelta(seconds=seconds))
    pump()


def subscribe(client: Any, key: str, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": url, **fields}, headers={"X-API-Key": key})
    assert response.status_code == 201, response.json
    created: dict[str, Any] = response.json
    return created


def rotate(client: Any, key: str, subscription_id: str, *, overlap_minutes: int) -> dict[str, Any]:
    """The subscription with a new secret, the old one signing too for ``overlap_minutes``."""
    response = client.post(
        f"/v1/webhooks/{subscription_id}/secret",
        json={"overlap_minutes": overlap_minutes},
        headers={"X-API-Key": key},
    )
    assert response.status_code == 200, response.json
    rotated: dict[str, Any] = response.json
    return rotated


def submitted(number: str = "501") -> ServiceRequest:
    """A request the hotline submitted for a resident of household 3-2-``number``."""
    with runtime().db.transaction() as session:
        return a_request(session, resident=a_resident(session, number=number))


def deliveries(client: Any, key: str, subscription_id: str) -> list[dict[str, Any]]:
    url = f"/v1/webhooks/{subscription_id}/deliveries"
    found: list[dict[str, Any]] = client.get(url, headers={"X-API-Key": key}).json
    return found


def delivery(client: Any, key: str, subscription_id: str, delivery_id: str) -> dict[str, Any]:
    url = f"/v1/webhooks/{subscription_id}/deliveries/{delivery_id}"
    found: dict[str, Any] = client.get(url, headers={"X-API-Key": key}).json
    return found


def api_key_of(name: str) -> str:
    with runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name=name)
    return key


class TestSigning:
    def test_a_delivery_is_signed_with_the_secret_shown_once_and_the_receiver_verifies_it(
        self, client, api_key, resident_id, receiver, sender
    ):
        created = subscribe(client, api_key, receiver.url)
        secret = created["secret"]
        shown = client.get(f"/v1/webhooks/{created['id']}", headers={"X-API-Key": api_key})

        request = post(client, api_key, request_body(resident_id)).json

        # The request that changed the state sent nothing: the worker does, later.
        assert receiver.received == []
        pump()
        [got] = receiver.received
        assert got.is_signed_by(secret)
        assert got.signatures[0] == int(T0.timestamp())
        assert got.path == "/hooks/redvest"
        assert got.event["type"] == "request.submitted"
        assert got.event["data"]["request_id"] == request["id"]
        assert got.event["data"]["request"]["status"] == "submitted"
        assert got.headers["Redvest-Event-Id"] == got.event["id"]
        assert got.headers["Redvest-Event-Type"] == "request.submitted"
        assert secret.startswith("whsec_") and "secret" not in shown.json
        assert sending.verify_signature(
            got.headers["Redvest-Signature"], got.body, secret=secret, now=T0
        )
        assert not sending.verify_signature(
            got.headers["Redvest-Signature"], got.body + b" ", secret=secret, now=T0
        )
        assert not sending.verify_signature(
            got.headers["Redvest-Signature"], got.body, secret="whsec_other", now=T0
        )

    def test_an_old_signature_is_refused_by_the_receivers_check(self):
        body = b'{"id": "1"}'
        header = sending.signature(body, timestamp=int(T0.timestamp()), keys=["whsec_k"])

        late = T0 + timedelta(minutes=6)

        assert sending.verify_signature(header, body, secret="whsec_k", now=T0)
        assert not sending.verify_signature(header, body, secret="whsec_k", now=late)

    def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
        self, client, api_key, receiver, sender
    ):
        created = subscribe(client, api_key, receiver.url)
        rotated = rotate(client, api_key, created["id"], overlap_minutes=60)
        old, new = created["secret"], rotated["secret"]

        submitted()
        tick()
        clock.advance(timedelta(minutes=61))
        submitted(number="502")
        tick()

        during, after = receiver.received
        assert new != old
        assert rotated["previous_secret_until"] == (T0 + timedelta(minutes=60)).isoformat()
        assert rotated["history"][0]["action"] == "secret_rotated"
        assert len(during.signatures[1]) == 2
        assert during.is_signed_by(old) and during.is_signed_by(new)
        assert len(after.signatures[1]) == 1
        assert after.is_signed_by(new) and not after.is_signed_by(old)

    def test_a_rotation_without_overlap_retires_the_old_secret_at_once(
        self, client, api_key, receiver, sender
    ):
        created = subscribe(client, api_key, receiver.url)
        rotated = rotate(client, api_key, created["id"], overlap_minutes=0)

        submitted()
        tick()

        [got] = receiver.received
        assert got.is_signed_by(rotated["secret"]) and not got.is_signed_by(created["secret"])


class TestRetries:
    def test_a_receiver_answering_500_is_tried_again_after_its_backoff_until_it_answers(
        self, client, api_key, receiver, sender
    ):
        answers = iter([500, 500])
        receiver.answer = lambda _: next(answers, 200)
        created = subscribe(client, api_key, receiver.url)
        submitted()

        tick()
        first = len(receiver.received)
        tick(29)
        still = len(receiver.received)
        tick(1)
        second = len(receiver.received)
        tick(60)

        assert (first, still, second, len(receiver.received)) == (1, 1, 2, 3)
        assert len({got.event["id"] for got in receiver.received}) == 1
        [listed] = deliveries(client, api_key, created["id"])
        assert (listed["state"], listed["attempts"]) == ("delivered", 3)
        shown = delivery(client, api_key, created["id"], listed["id"])
        log = shown["attempt_log"]
        assert [attempt["status_code"] for attempt in log] == [500, 500, 200]
        assert [attempt["number"] for attempt in log] == [1, 2, 3]
        assert all(attempt["latency_ms"] >= 0 for attempt in log)
        assert log[-1]["response_excerpt"] == '{"ok": true}'
        assert shown["payload"] == receiver.received[-1].event

    def test_a_delivery_that_keeps_failing_is_given_up_and_the_next_of_its_request_goes(
        self, client, api_key, receiver
    ):
        receiver.answer = lambda got: 500 if got.event["type"] == "request.submitted" else 200
        retries = webhooks.Retries(max_attempts=3)
        attached = webhooks.Sender(runtime().db, destinations=LOCAL, retries=retries).attach()
        try:
            created = subscribe(client, api_key, receiver.url)
            request = submitted()
            tick()
            with runtime().db.transaction() as session:
                walk_to_completed(session, requests.get_request(session, request.id))
            tick()
            tick(30)
            tick(60)
        finally:
            attached.detach()

        kinds = [kind for kind, _, _ in receiver.events()]
        assert kinds == ["request.submitted"] * 3 + [
            "request.assigned",
            "request.accepted",
            "request.completed",
        ]
        listed = deliveries(client, api_key, created["id"])
        assert [(d["event_type"], d["state"]) for d in reversed(listed)] == [
            ("request.submitted", "failed"),
            ("request.assigned", "delivered"),
            ("request.accepted", "delivered"),
            ("request.completed", "delivered"),
        ]
        shown = client.get(f"/v1/webhooks/{created['id']}", headers={"X-API-Key": api_key})
        assert shown.json["status"] == "active"

    def test_a_delivery_whose_sender_died_is_sent_again_when_its_lease_runs_out(
        self, client, api_key, receiver
    ):
        created = subscribe(client, api_key, receiver.url)
        submitted()
        # Claimed by a worker that died before it sent anything: no sender follows its commit.
        tick()
        [claimed] = deliveries(client, api_key, created["id"])

        revived = webhooks.Sender(runtime().db, destinations=LOCAL, timeout_s=5).attach()
        try:
            tick(webhooks.LEASE.total_seconds() - 2)
            before_the_lease_ends = len(receiver.received)
            tick(2)
        finally:
            revived.detach()

        assert (claimed["state"], before_the_lease_ends, len(receiver.received)) == (
            "sending",
            0,
            1,
        )
        log = delivery(client, api_key, created["id"], claimed["id"])["attempt_log"]
        assert [(a["number"], a["status_code"]) for a in log] == [(1, None), (2, 200)]
        assert log[0]["error"].startswith("No outcome was recorded")


class TestOrder:
    def test_a_requests_events_arrive_in_order_even_when_the_first_needs_retries(
        self, client, api_key, receiver, sender
    ):
        first = submitted()
        failures = {first.id: 1}

        def answer(got: Received) -> int:
            request_id = got.event["data"]["request_id"]
            if failures.get(request_id):
                failures[request_id] -= 1
                return 503
            return 200

        receiver.answer = answer
        subscribe(client, api_key, receiver.url)
        request = submitted(number="502")
        other = submitted(number="503")
        failures[request.id] = 1
        tick()
        with runtime().db.transaction() as session:
            walk_to_completed(session, requests.get_request(session, request.id))
        tick()
        held_back = [kind for kind, of, _ in receiver.events() if of == request.id]
        tick(30)

        ours = [(kind, event_id) for kind, of, event_id in receiver.events() if of == request.id]
        assert held_back == ["request.submitted"]
        assert [kind for kind, _ in ours] == [
            "request.submitted",
            "request.submitted",
            "request.assigned",
            "request.accepted",
            "request.completed",
        ]
        event_ids = [int(event_id) for _, event_id in ours[1:]]
        assert event_ids == sorted(event_ids)
        # Another request's chain is not held up by this one's, and what was made before the
        # subscription is no one's news.
        assert ("request.submitted", other.id) in [(k, of) for k, of, _ in receiver.events()]
        assert first.id not in {of for _, of, _ in receiver.events()}

    def test_an_entry_committed_after_a_later_one_is_still_sent(self, client, api_key, receiver):
        created = subscribe(client, api_key, receiver.url)
        one, two = submitted(), submitted(number="502")
        with runtime().db.transaction() as session:
            webhooks.fan_out(session)
            last = session.scalar(select(func.max(TimelineEntry.id)))
            # The later entry commits first, as a transaction holding the earlier id may let
            # it on PostgreSQL.
            session.add(cancelled(two.id, entry_id=last + 2))
        with runtime().db.transaction() as session:
            webhooks.fan_out(session)
            feed = session.get_one(WebhookFeed, webhooks.FEED)
            passed = (feed.position, dict(feed.gaps))
        with runtime().db.transaction() as session:
            session.add(cancelled(one.id, entry_id=last + 1))
        with runtime().db.transaction() as session:
            webhooks.fan_out(session)
            feed = session.get_one(WebhookFeed, webhooks.FEED)
            settled = (feed.position, dict(feed.gaps))

        listed = deliveries(client, api_key, created["id"])
        # (Ids other transactions took and rolled back are gaps as well, for a while.)
        assert passed[0] == settled[0] == last + 2
        assert passed[1][str(last + 1)] == T0.isoformat()
        assert str(last + 1) not in settled[1]
        assert sorted(d["event_id"] for d in listed if d["event_type"] == "request.cancelled") == [
            str(last + 1),
            str(last + 2),
        ]

    @pytest.mark.postgres
    def test_on_postgresql_a_change_whose_transaction_commits_late_is_still_sent(
        self, client, api_key, receiver, sender
    ):
        subscribe(client, api_key, receiver.url)
        slow, quick = submitted(), submitted(number="502")
        tick()
        late = runtime().db.sessions()
        late.begin()
        requests.cancel_request(late, request_id=slow.id, cancelled_by=HOTLINE, reason="moved")
        late.flush()
        with runtime().db.transaction() as session:
            requests.cancel_request(session, request_id=quick.id, cancelled_by=HOTLINE, reason="x")
        tick()
        before = [of for kind, of, _ in receiver.events() if kind == "request.cancelled"]
        late.commit()
        late.close()
        tick()

        after = [of for kind, of, _ in receiver.events() if kind == "request.cancelled"]
        assert (before, after) == ([quick.id], [quick.id, slow.id])


def cancelled(request_id: str, *, entry_id: int) -> TimelineEntry:
    return TimelineEntry(
        id=entry_id,
        request_id=request_id,
        status="cancelled",
        action="cancel",
        actor="system:client:city-hotline",
        is_public=True,
        note="Cancelled: moved away",
        details={},
        at=T0,
        recorded_at=T0,
    )


class TestPausing:
    def test_a_receiver_that_keeps_failing_is_paused_its_owner_is_told_and_resuming_sends_all(
        self, client, api_key, receiver, sender
    ):
        receiver.answer = lambda _: 503
        created = subscribe(client, api_key, receiver.url)
        headers = {"X-API-Key": api_key}
        url = f"/v1/webhooks/{created['id']}"
        request = submitted()
        tick()
        for wait in webhooks.RETRIES.backoff[:5]:
            tick(wait.total_seconds())
        # Six failures in 51 minutes: not yet as many, nor as long, as pausing takes.
        early = client.get(url, headers=headers).json
        for wait in webhooks.RETRIES.backoff[5:]:
            tick(wait.total_seconds())
        paused = client.get(url, headers=headers).json
        tried = len(receiver.received)
        with runtime().db.transaction() as session:
            walk_to_completed(session, requests.get_request(session, request.id))
        tick(3600)
        while_paused = len(receiver.received)
        receiver.answer = lambda _: 200
        resumed = client.post(f"{url}/resumption", headers=headers)
        pump()

        assert (early["status"], early["consecutive_failures"]) == ("active", 6)
        assert paused["status"] == "paused"
        assert paused["paused_reason"].startswith("Paused after 10 failed attempts in a row over")
        assert paused["paused_reason"].endswith("the last: HTTP 503")
        assert paused["history"][0]["action"] == "paused"
        assert paused["history"][0]["note"] == paused["paused_reason"]
        assert (tried, while_paused) == (10, 10)
        assert resumed.status_code == 200
        assert resumed.json["status"] == "active"
        assert resumed.json["history"][0]["action"] == "resumed"
        assert [kind for kind, _, _ in receiver.events()[10:]] == [
            "request.submitted",
            "request.assigned",
            "request.accepted",
            "request.completed",
        ]
        assert client.post(f"{url}/resumption", headers=headers).status_code == 409

    def test_a_revoked_clients_subscription_is_paused_rather_than_sent(
        self, client, api_key, receiver, sender
    ):
        created = subscribe(client, api_key, receiver.url)
        submitted()
        revoke("city-hotline", at=T0)
        tick()

        staff = bearer("duty-officer", "staff")
        shown = client.get(f"/v1/webhooks/{created['id']}", headers=staff).json
        assert receiver.received == []
        assert shown["status"] == "paused"
        assert shown["paused_reason"] == "The API client client:city-hotline is revoked"

    def test_a_delivery_whose_sender_died_while_paused_is_sent_once_resumed(
        self, client, api_key, receiver
    ):
        created = subscribe(client, api_key, receiver.url)
        submitted()
        tick()  # claimed by a worker that dies before sending: no sender follows it
        revoke("city-hotline", at=T0)
        tick(webhooks.LEASE.total_seconds())  # the lease runs out; the claim finds it revoked
        revoke("city-hotline", at=None)
        staff = bearer("duty-officer", "staff")
        url = f"/v1/webhooks/{created['id']}"
        paused = client.get(url, headers=staff).json["status"]

        revived = webhooks.Sender(runtime().db, destinations=LOCAL).attach()
        try:
            client.post(f"{url}/resumption", headers=staff)
            pump()
        finally:
            revived.detach()

        [listed] = deliveries(client, api_key, created["id"])
        assert (paused, listed["state"], len(receiver.received)) == ("paused", "delivered", 1)


def revoke(name: str, *, at: datetime | None) -> None:
    with runtime().db.transaction() as session:
        found = session.scalar(select(ApiClient).where(ApiClient.name == name))
        assert found is not None
        found.revoked_at = at


class TestReplay:
    def test_the_owner_replays_one_delivery_and_then_a_span_of_them(
        self, client, api_key, receiver, sender
    ):
        created = subscribe(client, api_key, receiver.url)
        headers = {"X-API-Key": api_key}
        url = f"/v1/webhooks/{created['id']}"
        submitted(), submitted(number="502")
        tick()
        newest, oldest = deliveries(client, api_key, created["id"])

        one = client.post(f"{url}/deliveries/{oldest['id']}/replay", headers=headers)
        pump()
        span = client.post(
            f"{url}/replays", json={"since": (T0 - timedelta(hours=1)).isoformat()}, headers=headers
        )
        pump()
        none_failed = client.post(
            f"{url}/replays",
            json={"since": (T0 - timedelta(hours=1)).isoformat(), "only_failed": True},
            headers=headers,
        )

        assert one.status_code == 201
        assert one.json["replay_of"] == oldest["id"]
        assert span.status_code == 201
        assert span.json["replayed"] == 2
        assert [d["replay_of"] for d in span.json["deliveries"]] == [oldest["id"], newest["id"]]
        assert none_failed.json == {"replayed": 0, "deliveries": []}
        sent = [got.event["id"] for got in receiver.received]
        assert sent[2] == oldest["event_id"]
        assert sorted(sent[3:]) == sorted([oldest["event_id"], newest["event_id"]])
        assert (
            receiver.received[2].event
            == delivery(client, api_key, created["id"], one.json["id"])["payload"]
        )
        delivered_as = [got.headers["Redvest-Delivery-Id"] for got in receiver.received]
        assert len(set(delivered_as)) == 5
        assert all(got.is_signed_by(created["secret"]) for got in receiver.received)

    def test_a_span_replayed_must_end_after_it_begins(self, client, api_key, receiver):
        created = subscribe(client, api_key, receiver.url)

        response = client.post(
            f"/v1/webhooks/{created['id']}/replays",
            json={"since": T0.isoformat(), "until": T0.isoformat()},
            headers={"X-API-Key": api_key},
        )

        assert (response.status_code, response.json["field"]) == (422, "until")


class TestWhatIsSent:
    def test_only_the_kinds_of_event_asked_for_are_sent(self, client, api_key, receiver, sender):
        subscribe(client, api_key, receiver.url, events=["request.completed"])
        request = submitted()
        tick()
        with runtime().db.transaction() as session:
            walk_to_completed(session, requests.get_request(session, request.id))
        tick()

        assert [kind for kind, _, _ in receiver.events()] == ["request.completed"]
        [got] = receiver.received
        assert got.event["data"]["request"]["assignee"] == {
            "type": "volunteer",
            "id": "v1",
            "name": "Lao Zhang",
        }

    def test_the_events_of_requests_another_system_submitted_are_not_sent(
        self, client, api_key, receiver, sender
    ):
        partner = api_key_of("partner-hospital")
        subscribe(client, partner, receiver.url)
        submitted()
        tick()

        assert receiver.received == []

    def test_a_removed_subscription_is_sent_nothing_more(self, client, api_key, receiver, sender):
        created = subscribe(client, api_key, receiver.url)
        submitted()
        tick()
        removed = client.delete(f"/v1/webhooks/{created['id']}", headers={"X-API-Key": api_key})
        submitted(number="502")
        tick()

        assert (removed.status_code, removed.json["id"]) == (200, created["id"])
        assert len(receiver.received) == 1
        with runtime().db.read() as session:
            assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0

    def test_a_long_answer_is_kept_as_its_excerpt_and_a_slow_one_times_out(self, receiver):
        receiver.answer_body = b"x" * 200_000
        claim = a_claim(receiver.url)

        long = sending.post(claim, destinations=LOCAL)
        receiver.held = threading.Event()
        slow = sending.post(claim, destinations=LOCAL, timeout_s=0.5)
        receiver.held.set()

        assert (long.status_code, long.error, len(long.excerpt)) == (200, None, 1000)
        assert (slow.status_code, slow.error) == (None, "Timed out")

    def test_a_redirect_is_not_followed(self, receiver):
        receiver.answer = lambda _: 302

        outcome = sending.post(a_claim(receiver.url), destinations=LOCAL)

        assert not outcome.is_delivered
        assert outcome.error == "HTTP 302: redirects are not followed"


def a_claim(url: str) -> sending.Claim:
    return sending.Claim(
        delivery_id=1,
        attempt=1,
        claimed_at=T0,
        subscription_id="0" * 32,
        url=url,
        event_id="1",
        event_type="request.submitted",
        body=b'{"id": "1"}',
        keys=("whsec_k",),
    )


class TestChanging:
    def test_a_changed_receiver_is_checked_as_a_new_one_and_the_change_is_in_the_history(
        self, client, api_key, receiver
    ):
        created = subscribe(client, api_key, receiver.url)
        url = f"/v1/webhooks/{created['id']}"
        headers = {"X-API-Key": api_key}

        refused = client.patch(url, json={"url": "https://169.254.169.254/"}, headers=headers)
        changed = client.patch(
            url, json={"events": ["request.confirmed", "request.assigned"]}, headers=headers
        )

        assert (refused.status_code, refused.json["field"]) == (422, "url")
        assert changed.json["url"] == receiver.url
        assert changed.json["events"] == ["request.assigned", "request.confirmed"]
        assert [entry["action"] for entry in changed.json["history"]] == ["changed", "created"]


class TestWhereDeliveriesMayGo:
    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:169.254.169.254]/",
            "https://[fd00:ec2::254]/",
            "https://2852039166/",
            "https://0xa9.0xfe.0xa9.0xfe/",
            "https://100.100.100.200/latest/meta-data/",
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://[fe80::1]/hook",
            "https://0.0.0.0/hook",
            "https://224.0.0.1/hook",
            "ftp://hooks.example.org/hook",
            "https://user:password@hooks.example.org/hook",
            "https://hooks.example.org/hook#fragment",
            "https://hooks.example.org:99999/hook",
            "https:///hook",
            "https://hooks.example.org/a hook",
        ],
    )
    def test_a_receiver_deliveries_may_never_go_to_is_refused(self, client, api_key, url):
        response = subscribe_response(client, api_key, url)

        assert (response.status_code, response.json["field"]) == (422, "url")
        assert client.get("/v1/webhooks", headers={"X-API-Key": api_key}).json == []

    @pytest.mark.parametrize(
        "url",
        [
            "http://hooks.example.org/hook",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://[::1]/hook",
            "https://localhost/hook",
        ],
    )
    def test_in_production_plain_http_and_private_or_loopback_receivers_are_refused(self, url):
        with pytest.raises(Invalid) as refused:
            destinations.check_receiver(url, PRODUCTION)

        assert refused.value.extra["field"] == "url"

    def test_a_name_that_resolves_to_loopback_in_production_is_refused_naming_the_address(self):
        with pytest.raises(Invalid, match=r"localhost resolves to 127\.0\.0\.1, a loopback"):
            destinations.check_receiver("https://localhost/hook", PRODUCTION)

    def test_in_production_a_trusted_host_takes_plain_http_even_on_a_private_address(self):
        trusted = destinations.destinations_for(
            "production", trusted_hosts=["10.0.0.7", "hooks.lan", "169.254.169.254"]
        )

        assert destinations.check_receiver("http://10.0.0.7:8080/hook", trusted)
        assert destinations.check_receiver("http://hooks.lan/hook", trusted)
        with pytest.raises(Invalid):
            destinations.check_receiver("http://10.0.0.8/hook", trusted)
        with pytest.raises(Invalid):
            destinations.check_receiver("http://169.254.169.254/", trusted)

    def test_a_receiver_whose_name_resolves_to_a_refused_address_when_sent_to_gets_nothing(
        self, client, api_key, receiver
    ):
        created = subscribe(client, api_key, f"https://localhost:{receiver.port}/hook")
        submitted()
        production = webhooks.Sender(runtime().db, destinations=PRODUCTION).attach()
        try:
            tick()
        finally:
            production.detach()

        [listed] = deliveries(client, api_key, created["id"])
        [attempt] = delivery(client, api_key, created["id"], listed["id"])["attempt_log"]
        assert receiver.received == []
        assert attempt["status_code"] is None
        assert "localhost resolves to 127.0.0.1, a loopback address" in attempt["error"]


def subscribe_response(client: Any, key: str, url: str) -> Any:
    return client.post("/v1/webhooks", json={"url": url}, headers={"X-API-Key": key})


class TestWhoMayDoWhat:
    def test_a_system_sees_and_changes_only_its_own_subscriptions(self, client, api_key, receiver):
        partner = api_key_of("partner-hospital")
        theirs = subscribe(client, partner, receiver.url)
        headers = {"X-API-Key": api_key}
        url = f"/v1/webhooks/{theirs['id']}"

        answers = [
            client.get(url, headers=headers),
            client.patch(url, json={"description": "mine now"}, headers=headers),
            client.post(f"{url}/secret", json={}, headers=headers),
            client.get(f"{url}/deliveries", headers=headers),
            client.delete(url, headers=headers),
        ]
        missing = client.get(f"/v1/webhooks/{'0' * 32}", headers=headers)

        assert [answer.status_code for answer in answers] == [404] * 5
        assert answers[0].json["detail"] == f"No webhook subscription {theirs['id']}"
        assert missing.json["detail"] == f"No webhook subscription {'0' * 32}"
        assert client.get("/v1/webhooks", headers=headers).json == []
        staff = bearer("duty-officer", "staff")
        assert [s["id"] for s in client.get("/v1/webhooks", headers=staff).json] == [theirs["id"]]
        assert client.get(url, headers={"X-API-Key": partner}).json["description"] == ""

    def test_staff_register_a_receiver_for_a_named_client_and_a_system_only_for_itself(
        self, client, api_key, receiver
    ):
        staff = bearer("duty-officer", "staff")

        unnamed = client.post("/v1/webhooks", json={"url": receiver.url}, headers=staff)
        named = client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "owner": "client:city-hotline"},
            headers=staff,
        )
        unknown = client.post(
            "/v1/webhooks", json={"url": receiver.url, "owner": "client:nobody"}, headers=staff
        )
        for_another = client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "owner": "client:partner-hospital"},
            headers={"X-API-Key": api_key},
        )

        assert (unnamed.status_code, unnamed.json["field"]) == (422, "owner")
        assert named.status_code == 201
        assert named.json["owner"] == "client:city-hotline"
        assert named.json["history"][0]["actor"] == "staff:duty-officer"
        assert (unknown.status_code, for_another.status_code) == (404, 404)
        assert unknown.json["detail"] == "No API client client:nobody of the system role"
        assert for_another.json["detail"] == (
            "No API client client:partner-hospital of the system role"
        )
        listed = client.get("/v1/webhooks", headers={"X-API-Key": api_key}).json
        assert [s["id"] for s in listed] == [named.json["id"]]

    def test_a_system_holds_at_most_ten_subscriptions(self, client, api_key, receiver):
        for _ in range(webhooks.MAX_SUBSCRIPTIONS):
            subscribe(client, api_key, receiver.url)

        response = subscribe_response(client, api_key, receiver.url)

        assert response.status_code == 409

    def test_the_same_idempotency_key_registers_one_receiver(self, client, api_key, receiver):
        headers = {"X-API-Key": api_key, "Idempotency-Key": "hook-1"}

        first = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers)
        again = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers)

        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json == first.json
        assert again.headers["Idempotent-Replayed"] == "true"
        assert len(client.get("/v1/webhooks", headers={"X-API-Key": api_key}).json) == 1


class TestThroughTheRealFabric:
    def test_the_relay_and_a_real_worker_carry_a_delivery_to_the_receiver(
        self, client, api_key, resident_id, receiver, sender
    ):
        subscribe(client, api_key, receiver.url)
        post(client, api_key, request_body(resident_id))
        clock.advance(timedelta(seconds=1))
        scheduler().fire_due()

        with running_worker(runtime().broker, "intake"):
            drain(runtime().relay())
            eventually(lambda: receiver.received, what="the delivery at the receiver")

        assert receiver.received[0].event["type"] == "request.submitted"
