"""What the metrics tell an operator: the queue a worker autoscaler follows, the counters of what
needs a person, and that the alert rules and the dashboard read only metrics that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import yaml
from dramatiq.brokers.stub import StubBroker
from prometheus_client import REGISTRY

from services.intake.app import create_app
from services.intake.config import runtime
from shared import metrics
from shared.broker import create_broker
from shared.health import readiness
from shared.metrics import MessagingCollector, QueueCollector
from shared.settings import Settings
from tests.environment import TEST_ENV

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "redvest.json"
METRIC_NAME = re.compile(r"\b((?:redvest|dramatiq)_[a-z_]+)\b")
SERIES_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


@pytest.fixture
def broker() -> Iterator[dramatiq.Broker]:
    """A Redis broker on a namespace of this test's own, removed afterwards."""
    namespace = f"{TEST_ENV['BROKER_NAMESPACE']}-metrics-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env("intake", {**TEST_ENV, "BROKER_NAMESPACE": namespace})
    made = create_broker(settings)
    made.declare_queue("intake")
    yield made
    client = made.client  # type: ignore[attr-defined]
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)
    made.close()


def message_to(queue: str) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name=queue, actor_name="request.assigned.v1", args=(), kwargs={}, options={}
    )


def gauges(collector: QueueCollector) -> dict[str, tuple[dict[str, str], float]]:
    return {
        family.name: (family.samples[0].labels, family.samples[0].value)
        for family in collector.collect()
    }


# The queue


def test_queue_depth_counts_the_messages_waiting_in_the_services_queue(broker) -> None:
    for _ in range(3):
        broker.enqueue(message_to("intake"))
    broker.enqueue(message_to("intake"), delay=60_000)

    found = gauges(QueueCollector(service="intake", broker=broker))

    assert found["redvest_queue_depth"] == ({"service": "intake", "queue": "intake"}, 3)
    assert found["redvest_queue_delayed"] == ({"service": "intake", "queue": "intake"}, 1)


def test_an_empty_queue_reports_a_depth_of_zero(broker) -> None:
    found = gauges(QueueCollector(service="intake", broker=broker))

    assert found["redvest_queue_depth"][1] == 0
    assert found["redvest_queue_delayed"][1] == 0


def test_a_broker_that_cannot_be_reached_leaves_the_queue_out_of_the_scrape() -> None:
    settings = Settings.from_env("intake", {**TEST_ENV, "BROKER_URL": "redis://127.0.0.1:9/0"})
    unreachable = create_broker(settings)
    try:
        assert gauges(QueueCollector(service="intake", broker=unreachable)) == {}
    finally:
        unreachable.close()


def test_a_broker_other_than_redis_reports_no_queue_of_its_own() -> None:
    assert gauges(QueueCollector(service="intake", broker=StubBroker())) == {}


def test_every_web_process_serves_its_queue_depth_on_metrics() -> None:
    scraped = create_app().test_client().get("/metrics").data.decode()

    assert re.search(r'redvest_queue_depth\{queue="intake",service="intake"\} \d', scraped)


# Readiness: a web process without its broker stays in service; without its database it leaves


def test_readiness_without_the_broker_is_degraded_but_in_service() -> None:
    def broker_down() -> None:
        raise ConnectionError("refused")

    body, status = readiness(
        {"database": lambda: None, "broker": broker_down}, required=["database"]
    )

    assert status == 200
    assert body == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "unavailable: ConnectionError"},
    }


def test_readiness_without_the_database_takes_the_process_out_of_service() -> None:
    def database_down() -> None:
        raise TimeoutError

    body, status = readiness(
        {"database": database_down, "broker": lambda: None}, required=["database"]
    )

    assert (status, body["status"]) == (503, "not ready")


# What needs a person


def test_an_escalation_to_nobody_is_counted_apart_from_one_to_the_backup() -> None:
    def counted(to: str) -> float:
        labels = {"service": "dispatch", "escalated_to": to}
        return REGISTRY.get_sample_value("redvest_escalations_total", labels) or 0.0

    before = counted("nobody"), counted("backup")

    metrics.count_escalation("dispatch", escalated_to="nobody")

    assert (counted("nobody"), counted("backup")) == (before[0] + 1, before[1])


def test_an_escalation_to_someone_the_chain_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="escalated_to must be one of"):
        metrics.count_escalation("dispatch", escalated_to="volunteer-42")


def test_ledger_findings_are_counted_by_the_check_that_found_them() -> None:
    labels = {"service": "points", "check": "unbalanced_transfer"}
    before = REGISTRY.get_sample_value("redvest_ledger_audit_findings_total", labels) or 0.0

    metrics.count_ledger_findings("points", check="unbalanced_transfer", findings=2)

    assert REGISTRY.get_sample_value("redvest_ledger_audit_findings_total", labels) == before + 2


# Alert rules and dashboard


def exposed_names(broker: dramatiq.Broker) -> set[str]:
    """Every metric name the code exposes: this process's, the database's, the queue's, and the
    worker metrics of dramatiq's Prometheus middleware."""
    families = [
        *REGISTRY.collect(),
        *MessagingCollector(
            service="intake", db=runtime().db, messaging=runtime().messaging
        ).collect(),
        *QueueCollector(service="intake", broker=broker).collect(),
    ]
    names = {family.name for family in families}
    # Read, not imported: importing it makes its metrics directory under /tmp.
    spec = importlib.util.find_spec("dramatiq.middleware.prometheus")
    assert spec is not None and spec.origin is not None
    middleware = Path(spec.origin).read_text()
    names |= set(re.findall(r'"(dramatiq_[a-z_]+)"', middleware))
    return names | {name + suffix for name in names for suffix in SERIES_SUFFIXES}


def expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    found += [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    return found


def test_the_alert_rules_and_the_dashboard_read_only_metrics_the_code_exposes(broker) -> None:
    read = {name for expr in expressions() for name in METRIC_NAME.findall(expr)}

    assert read, "no metric found in the alert rules and the dashboard"
    assert read - exposed_names(broker) == set()


def test_every_thing_that_needs_a_person_has_an_alert() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    alerted = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])

    for metric in (
        "redvest_dead_letters",
        "redvest_outbox_oldest_pending_age_seconds",
        "redvest_escalations_total",
        "redvest_ledger_audit_findings_total",
    ):
        assert metric in alerted
