"""The message fabric, shown on intake: outbox and relay, inbox, dead letters and replay."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import dramatiq
import pytest
import redis
from sqlalchemy import func, select

from services.intake import actors
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.models import ServiceRequest
from services.intake.tests.builders import a_request
from shared import events
from shared.consumers import PermanentError
from shared.dead_letters import list_dead_letters, record_dead_letter, replay_dead_letter
from shared.relay import drain
from shared.topology import SERVICES
from tests.support import deliver_to, eventually, message_for, running_worker


def published_on(queue: str) -> dict[str, dict]:
    """Messages waiting on ``queue`` in the run's own Redis namespace, by message id."""
    settings = runtime().settings
    client = redis.Redis.from_url(settings.broker_url)
    raw = client.hgetall(f"{settings.broker_namespace}:{queue}.msgs")
    client.close()
    decoded = [json.loads(value) for value in raw.values()]
    return {message["message_id"]: message for message in decoded}


def pending_outbox() -> int:
    outbox = runtime().messaging.outbox
    with runtime().db.read() as session:
        return (
            session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
            or 0
        )


def submitted_request() -> tuple[str, str]:
    """A request stored and its request.submitted event committed to the outbox."""
    with runtime().db.transaction() as session:
        request = a_request(session)
        outbox = runtime().messaging.outbox
        message_id = session.scalar(
            select(outbox.c.id).where(outbox.c.event == "request.submitted")
        )
    assert message_id is not None
    return request.id, message_id


def status_of(request_id: str) -> str | None:
    with runtime().db.read() as session:
        request = session.get(ServiceRequest, request_id)
        return request.status if request else None


def assigned_payload(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "assignment_id": uuid.uuid4().hex,
        "assignee_type": "volunteer",
        "assignee_id": "v1",
        "assignee_name": "Lao Zhang",
        "assigned_at": datetime.now(UTC),
    }


class TestOutboxRelay:
    def test_relay_publishes_a_committed_event_under_the_outbox_row_id(self):
        request_id, message_id = submitted_request()
        assert drain(runtime().relay()) == 1
        message = published_on("dispatch")[message_id]
        assert message["actor_name"] == "request.submitted.v1"
        assert message["kwargs"]["request_id"] == request_id
        assert message["options"]["correlation_id"]
        assert pending_outbox() == 0

    def test_an_event_is_not_lost_when_the_broker_fails_after_the_commit(self, monkeypatch):
        _, message_id = submitted_request()
        broker = runtime().broker

        def broker_down(message, *, delay=None):
            raise ConnectionError("broker unreachable")

        monkeypatch.setattr(broker, "enqueue", broker_down)
        assert runtime().relay().publish_pending() == 0
        assert pending_outbox() == 1
        assert message_id not in published_on("dispatch")

        monkeypatch.undo()
        assert runtime().relay().publish_pending() == 1
        assert message_id in published_on("dispatch")
        assert pending_outbox() == 0

    def test_a_failed_publish_records_the_attempt_and_the_error(self, monkeypatch):
        submitted_request()
        monkeypatch.setattr(
            runtime().broker,
            "enqueue",
            lambda message, delay=None: (_ for _ in ()).throw(OSError("down")),
        )
        relay = runtime().relay()
        relay.publish_pending()
        assert relay.last_failed  # so the relay backs off instead of hammering the broker
        outbox = runtime().messaging.outbox
        with runtime().db.read() as session:
            row = session.execute(select(outbox)).one()
        assert row.attempts == 1
        assert "down" in row.last_error

    def test_publishing_again_after_a_crash_is_consumed_once(self):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id
        message = message_for(events.REQUEST_ASSIGNED, assigned_payload(request_id))
        # The relay crashed after the broker took the message but before marking it sent,
        # so the same message id is published again.
        assert deliver_to(actors.CONSUMERS, message) is True
        assert deliver_to(actors.CONSUMERS, message) is False
        with runtime().db.read() as session:
            request = session.get(ServiceRequest, request_id)
            assert request is not None
            assert request.status == "assigned"
            assert [entry.status for entry in request.timeline] == ["submitted", "assigned"]


class TestConsumers:
    def test_a_payload_that_breaks_the_contract_is_permanent_and_changes_nothing(self):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id
        payload = events.REQUEST_ASSIGNED.validate_outgoing(assigned_payload(request_id))
        del payload["assignee_name"]
        message = dramatiq.Message(
            queue_name="intake",
            actor_name="request.assigned.v1",
            args=(),
            kwargs=payload,
            options={},
        )
        with pytest.raises(PermanentError, match="assignee_name"):
            deliver_to(actors.CONSUMERS, message)
        assert status_of(request_id) == "submitted"

    def test_unknown_fields_from_a_newer_publisher_are_ignored(self):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id
        message = message_for(events.REQUEST_ASSIGNED, assigned_payload(request_id))
        message.kwargs["added_in_a_later_release"] = {"anything": 1}
        assert deliver_to(actors.CONSUMERS, message) is True


class TestDeadLetters:
    def test_bad_messages_are_dead_lettered_with_their_error_and_the_worker_keeps_working(self):
        with runtime().db.transaction() as session:
            request_id = a_request(session).id
        broker = runtime().broker
        garbage = dramatiq.Message(
            queue_name="intake",
            actor_name="request.assigned.v1",
            args=(),
            kwargs={"request_id": 42, "assigned_at": "yesterday"},
            options={},
        )
        unknown_actor = dramatiq.Message(
            queue_name="intake", actor_name="no.such.actor.v1", args=(), kwargs={}, options={}
        )
        good = message_for(events.REQUEST_ASSIGNED, assigned_payload(request_id))
        with running_worker(broker, "intake"):
            for message in (garbage, unknown_actor, good):
                broker.enqueue(message)
            letters = eventually(
                lambda: (
                    (found := list_dead_letters(runtime().db, runtime().messaging.dead_letters))
                    and len(found) == 2
                    and found
                ),
                what="two dead letters",
            )
            eventually(
                lambda: status_of(request_id) == "assigned", what="the good message to be processed"
            )
        by_id = {letter.message_id: letter for letter in letters}
        assert "assignee_name" in by_id[garbage.message_id].error
        assert "ActorNotFound" in by_id[unknown_actor.message_id].error

    def test_a_dead_letter_replays_under_the_same_message_id_once_its_cause_is_fixed(self):
        broker = runtime().broker
        missing = uuid.uuid4().hex
        early = message_for(events.REQUEST_ASSIGNED, assigned_payload(missing))
        with running_worker(broker, "intake"):
            broker.enqueue(early)
            eventually(
                lambda: list_dead_letters(runtime().db, runtime().messaging.dead_letters),
                what="the dead letter",
            )
        assert (
            "NotFound" in list_dead_letters(runtime().db, runtime().messaging.dead_letters)[0].error
        )

        with runtime().db.transaction() as session:
            template = a_request(session)
            columns = {c.key: getattr(template, c.key) for c in ServiceRequest.__table__.columns}
            session.add(ServiceRequest(**{**columns, "id": missing}))
        with running_worker(broker, "intake"):
            assert (
                replay_dead_letter(
                    runtime().db,
                    runtime().messaging.dead_letters,
                    runtime().broker,
                    early.message_id,
                )
                is True
            )
            eventually(
                lambda: status_of(missing) == "assigned",
                what="the replayed message to be processed",
            )
        assert list_dead_letters(runtime().db, runtime().messaging.dead_letters) == []
        assert (
            list_dead_letters(
                runtime().db, runtime().messaging.dead_letters, include_replayed=True
            )[0].replays
            == 1
        )

        # Failing again after the replay puts it back among the outstanding dead letters.
        record_dead_letter(
            runtime().db,
            runtime().messaging.dead_letters,
            message=early.asdict(),
            error="NotFound: again",
        )
        assert [
            letter.message_id
            for letter in list_dead_letters(runtime().db, runtime().messaging.dead_letters)
        ] == [early.message_id]
        metrics = create_app().test_client().get("/metrics").data.decode()
        assert 'redvest_dead_letters{service="intake"} 1.0' in metrics

    def test_replaying_an_unknown_dead_letter_says_so(self):
        assert (
            replay_dead_letter(
                runtime().db, runtime().messaging.dead_letters, runtime().broker, "no-such-message"
            )
            is False
        )


class TestHousekeeping:
    def test_purge_forgets_only_what_is_old_and_already_done(self):
        from datetime import timedelta

        from sqlalchemy import update

        submitted_request()
        submitted_request()
        drain(runtime().relay())
        messaging = runtime().messaging
        with runtime().db.transaction() as session:
            oldest = session.scalar(select(messaging.outbox.c.id).limit(1))
            session.execute(
                update(messaging.outbox)
                .where(messaging.outbox.c.id == oldest)
                .values(published_at=datetime.now(UTC) - timedelta(days=30))
            )
        submitted_request()  # pending: never purged, however old
        with runtime().db.transaction() as session:
            removed = messaging.purge(session, older_than=timedelta(days=14))
        assert removed == {"outbox": 1, "inbox": 0, "idempotency_keys": 0}
        assert pending_outbox() == 1


class TestCorrelation:
    def test_events_a_consumer_causes_carry_the_correlation_and_the_causing_message(self):
        from services.dispatch import actors as dispatch_actors
        from services.dispatch.config import runtime as dispatch_runtime
        from services.dispatch.tests.builders import submitted, volunteer
        from tests.support import staged_messages

        volunteer(routed_for="knife_sharpening")
        message = message_for(
            events.REQUEST_SUBMITTED, submitted(), correlation_id="corr-hotline-1"
        )
        assert deliver_to(dispatch_actors.CONSUMERS, message)
        caused = staged_messages(dispatch_runtime())
        assert caused
        assert {m.options["correlation_id"] for m in caused} == {"corr-hotline-1"}
        assert {m.options["causation_id"] for m in caused} == {message.message_id}


class TestRelayCrash:
    def test_a_crash_after_the_broker_took_the_batch_republishes_and_it_is_consumed_once(
        self, monkeypatch
    ):
        """The relay dies between enqueue and marking the rows sent: nothing is lost or doubled."""
        from services.dispatch import actors as dispatch_actors
        from services.dispatch.config import runtime as dispatch_runtime
        from services.dispatch.tests.builders import assignments, volunteer

        volunteer(routed_for="knife_sharpening")
        request_id, message_id = submitted_request()
        relay = runtime().relay()

        def crash(*args, **kwargs):
            raise SystemExit("relay killed")

        monkeypatch.setattr(relay, "_mark", crash)
        with pytest.raises(SystemExit):
            relay.publish_pending()
        assert pending_outbox() == 1
        monkeypatch.undo()
        assert runtime().relay().publish_pending() == 1
        assert pending_outbox() == 0

        with running_worker(dispatch_runtime().broker, "dispatch"):
            eventually(lambda: assignments(request_id=request_id), what="the assignment")
            dispatch_runtime().broker.join("dispatch", timeout=30_000)
        assert len(assignments(request_id=request_id)) == 1
        inbox = dispatch_runtime().messaging.inbox
        with dispatch_runtime().db.read() as session:
            handled = session.scalar(
                select(func.count()).select_from(inbox).where(inbox.c.message_id == message_id)
            )
        assert handled == 1
        assert "request.submitted.v1" in dispatch_actors.CONSUMERS.handlers


def _good_messages() -> dict[str, tuple]:
    """For each service: its runtime, its queue, and a valid message it can process now."""
    from decimal import Decimal

    from services.dispatch.config import runtime as dispatch
    from services.dispatch.tests.builders import submitted
    from services.notify import delivery
    from services.notify.config import runtime as notify
    from services.points import ledger
    from services.points.config import runtime as points

    with points().db.transaction() as session:
        ledger.set_rate(session, category="knife_sharpening", points_per_hour=Decimal(10))
    with notify().db.transaction() as session:
        delivery.ensure_default_templates(session)
    with runtime().db.transaction() as session:
        request_id = a_request(session).id
    confirmed = {
        "request_id": uuid.uuid4().hex,
        "category": "knife_sharpening",
        "resident_id": "r1",
        "volunteer_id": "v1",
        "hours": "1.00",
        "confirmed_by": "resident:r1",
        "accepted_by": "volunteer:v1",
        "completed_by": "volunteer:v1",
        "confirmed_at": datetime.now(UTC),
    }
    notification = {
        "recipient": "resident:r1",
        "template": "request.accepted",
        "data": {
            "request_id": request_id,
            "volunteer_name": "Lao Zhang",
            "category": "knife_sharpening",
            "summary": "Two kitchen knives",
        },
    }
    return {
        "intake": (runtime(), message_for(events.REQUEST_ASSIGNED, assigned_payload(request_id))),
        "dispatch": (dispatch(), message_for(events.REQUEST_SUBMITTED, submitted())),
        "points": (points(), message_for(events.REQUEST_CONFIRMED, confirmed, to="points")),
        "notify": (notify(), message_for(events.NOTIFICATION_REQUESTED, notification)),
    }


@pytest.mark.parametrize("service", SERVICES)
def test_garbage_on_any_queue_is_dead_lettered_and_the_worker_goes_on(service):
    service_runtime, good = _good_messages()[service]
    broker = service_runtime.broker
    garbage = dramatiq.Message(
        queue_name=good.queue_name,
        actor_name=good.actor_name,
        args=(),
        kwargs={"no": "such fields", "hours": "many"},
        options={},
    )
    handled = service_runtime.messaging.inbox

    def processed() -> bool:
        with service_runtime.db.read() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(handled)
                    .where(handled.c.message_id == good.message_id)
                )
                == 1
            )

    with running_worker(broker, good.queue_name):
        broker.enqueue(garbage)
        broker.enqueue(good)
        letters = eventually(
            lambda: list_dead_letters(service_runtime.db, service_runtime.messaging.dead_letters),
            what=f"{service}'s dead letter",
        )
        eventually(processed, what=f"{service} to process the good message")
    assert [letter.message_id for letter in letters] == [garbage.message_id]
    assert "Missing data for required field" in letters[0].error


def test_log_lines_of_a_consumer_carry_the_correlation_and_message_ids(caplog):
    import logging

    with runtime().db.transaction() as session:
        request_id = a_request(session).id
    message = message_for(
        events.REQUEST_ASSIGNED, assigned_payload(request_id), correlation_id="corr-log-7"
    )
    with caplog.at_level(logging.INFO):
        deliver_to(actors.CONSUMERS, message)
    processed = [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "message.processed"
    ]
    assert processed, [record.msg for record in caplog.records]
    assert processed[0]["correlation_id"] == "corr-log-7"
    assert processed[0]["message_id"] == message.message_id
    assert processed[0]["actor"] == "request.assigned.v1"


def test_purging_within_the_redelivery_window_is_refused(capsys):
    from services.intake.commands import EXTRA_COMMANDS
    from shared.cli import run_cli

    assert run_cli(runtime, ["purge", "--older-than-days", "3"], extra=EXTRA_COMMANDS) == 2
    assert "at least 8" in capsys.readouterr().err


def test_a_handler_that_does_not_fit_its_contract_is_dead_lettered_not_retried():
    from marshmallow import Schema, fields

    from shared.consumers import PermanentError, deliver
    from shared.events import Event

    class PingSchema(Schema):
        ping_id = fields.Str(required=True)

    event = Event(f"test.misfit.{uuid.uuid4().hex[:8]}", 1, PingSchema)

    def handler(session, received, *, something_else: str) -> None:
        raise AssertionError("never called")

    message = dramatiq.Message(
        queue_name="intake-misfit",
        actor_name=event.actor_name,
        args=(),
        kwargs={"ping_id": "p1"},
        options={},
    )
    with pytest.raises(PermanentError, match="does not fit the contract"):
        deliver(
            db=runtime().db,
            messaging=runtime().messaging,
            event=event,
            handler=handler,
            message=message,
        )


def test_a_malformed_idempotency_key_is_a_422_naming_the_header():
    from services.intake import directory
    from services.intake.tests.builders import a_category, a_resident

    with runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="hotline")
        a_category(session)
        resident_id = a_resident(session).id
    response = (
        create_app()
        .test_client()
        .post(
            "/v1/requests",
            json={"category": "knife_sharpening", "summary": "x", "resident_id": resident_id},
            headers={"X-API-Key": key, "Idempotency-Key": "k" * 300},
        )
    )
    assert response.status_code == 422
    assert response.json["field"] == "Idempotency-Key"


class TestFanOut:
    def test_an_event_with_two_subscribers_is_delivered_once_to_each_under_redelivery(self):
        """request.confirmed goes to points (the hours earn points) and to dispatch (the
        assignment is closed): one outbox row, one copy per queue under one message id, and
        each consumer acts once however often its copy arrives."""
        from services.dispatch.config import runtime as dispatch_runtime
        from services.dispatch.tests.builders import assigned, assignment_for, volunteer
        from services.intake import requests
        from services.intake.tests.builders import resident_of, walk_to_completed
        from services.points.config import runtime as points_runtime
        from services.points.tests.builders import rates, transfers

        volunteer(routed_for="knife_sharpening")
        rates(knife_sharpening=10)
        with runtime().db.transaction() as session:
            request = a_request(session)
            walk_to_completed(session, request, hours="2")
        assigned(request_id=request.id)
        with runtime().db.transaction() as session:
            requests.confirm_request(
                session, request_id=request.id, confirmed_by=resident_of(request)
            )
        outbox = runtime().messaging.outbox
        with runtime().db.read() as session:
            (message_id,) = session.scalars(
                select(outbox.c.id).where(outbox.c.event == "request.confirmed")
            ).all()

        drain(runtime().relay())

        copies = {"points": published_on("points"), "dispatch": published_on("dispatch")}
        assert message_id in copies["points"] and message_id in copies["dispatch"]
        assert copies["points"][message_id]["actor_name"] == "request.confirmed.v1"
        for service, service_runtime in (
            ("points", points_runtime()),
            ("dispatch", dispatch_runtime()),
        ):
            again = dramatiq.Message(
                **{
                    key: copies[service][message_id][key]
                    for key in (
                        "queue_name",
                        "actor_name",
                        "args",
                        "kwargs",
                        "options",
                        "message_id",
                    )
                }
            )
            service_runtime.broker.enqueue(again)  # a redelivery of the same copy
            with running_worker(service_runtime.broker, service):
                service_runtime.broker.join(service, timeout=30_000)
            inbox = service_runtime.messaging.inbox
            with service_runtime.db.read() as session:
                handled = session.scalar(
                    select(func.count()).select_from(inbox).where(inbox.c.message_id == message_id)
                )
            assert handled == 1, service

        assert [transfer.amount for transfer in transfers()] == [Decimal("20.00")]
        assert assignment_for(request.id).status == "confirmed"
