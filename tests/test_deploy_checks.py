"""The deploy files hold what the code says, and each check of devtools/deploy_checks.py finds
the fault it is there for, with the real tool."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import deploy_checks
from devtools.processes import procfile_commands
from shared.topology import SERVICES


@cache
def rendered(directory: str = "base") -> str:
    return deploy_checks.render(deploy_checks.K8S / directory)


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def find(text: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents(text) if (d["kind"], d["metadata"]["name"]) == (kind, name)]
    return found


def changed(text: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> str:
    """The manifests with ``change`` made to their documents."""
    return yaml.safe_dump_all(change(documents(text)))


def without(kind: str, name: str) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    return lambda docs: [d for d in docs if (d["kind"], d["metadata"]["name"]) != (kind, name)]


def editing(kind: str, name: str, edit: Callable[[dict[str, Any]], None]) -> Callable[..., Any]:
    def change(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for document in docs:
            if (document["kind"], document["metadata"]["name"]) == (kind, name):
                edit(document)
        return docs

    return change


def findings(text: str) -> list[str]:
    return deploy_checks.manifest_findings(text, label="manifests")


# What the manifests hold


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_the_base_and_the_example_overlay_hold_everything_the_code_says(overlay: str) -> None:
    assert findings(rendered(overlay)) == []


def test_every_process_of_the_procfile_is_a_deployment_of_its_service_image() -> None:
    text = rendered()

    for process in procfile_commands():
        service, command = process.split("-")
        container = find(text, "Deployment", process)["spec"]["template"]["spec"]["containers"][0]
        assert (container["image"], container["args"]) == (f"redvest-{service}", [command])


def test_a_service_reaches_only_its_own_database_the_broker_and_dns() -> None:
    text = rendered()
    deny = find(text, "NetworkPolicy", "redvest-default-deny")["spec"]
    egress = find(text, "NetworkPolicy", "intake-egress")["spec"]

    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in deny and "ingress" not in deny
    database, broker = egress["egress"]
    assert database["to"][0]["podSelector"]["matchExpressions"] == [
        {"key": "redvest.io/database", "operator": "In", "values": ["intake"]}
    ]
    assert database["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert broker["to"][0]["podSelector"]["matchExpressions"][0]["key"] == "redvest.io/broker"
    assert egress["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "intake"


def test_the_web_port_is_open_to_anyone_and_only_on_web_pods() -> None:
    ingress = find(rendered(), "NetworkPolicy", "dispatch-web-ingress")["spec"]

    assert ingress["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/component": "web",
        "app.kubernetes.io/name": "dispatch",
    }
    assert ingress["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]


def test_secrets_are_read_by_reference_and_never_written_into_the_manifests() -> None:
    text = rendered("overlays/example")

    assert not [d for d in documents(text) if d["kind"] == "Secret"]
    for document in documents(text):
        if document["kind"] in ("Deployment", "Job"):
            env = document["spec"]["template"]["spec"]["containers"][0]["env"]
            assert all("valueFrom" in entry and "value" not in entry for entry in env)


def test_the_example_overlay_reaches_its_managed_services_by_address() -> None:
    egress = find(rendered("overlays/example"), "NetworkPolicy", "points-egress")["spec"]

    assert [rule["to"] for rule in egress["egress"]] == [
        [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
        [{"ipBlock": {"cidr": "192.0.2.20/32"}}],
    ]


# What the manifest check finds


def test_a_process_without_its_deployment_is_found() -> None:
    text = changed(rendered(), without("Deployment", "notify-scheduler"))

    assert "manifests: no Deployment for the Procfile's notify-scheduler" in findings(text)


def test_a_deployment_without_a_disruption_budget_is_found() -> None:
    text = changed(rendered(), without("PodDisruptionBudget", "points-worker"))

    assert "manifests: no PodDisruptionBudget for points-worker" in findings(text)


def test_a_web_process_on_another_port_or_without_readiness_is_found() -> None:
    def edit(deployment: dict[str, Any]) -> None:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        container["ports"][0]["containerPort"] = 8080
        del container["readinessProbe"]

    found = findings(changed(rendered(), editing("Deployment", "intake-web", edit)))

    assert "manifests: intake-web does not listen on intake's port 8001" in found
    assert "manifests: intake-web has no readinessProbe on /readyz" in found


def test_a_process_given_another_services_database_is_found() -> None:
    def edit(deployment: dict[str, Any]) -> None:
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        env.append({"name": "POINTS_DATABASE_URL", "valueFrom": env[0]["valueFrom"]})

    found = findings(changed(rendered(), editing("Deployment", "dispatch-worker", edit)))

    assert (
        "manifests: dispatch-worker is given another service's database: POINTS_DATABASE_URL"
        in found
    )


def test_a_secret_written_as_a_value_is_found() -> None:
    def edit(job: dict[str, Any]) -> None:
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        env[-1] = {"name": "REDVEST_AUTH_SECRET", "value": "written-into-the-manifest"}

    found = findings(changed(rendered(), editing("Job", "notify-migrate", edit)))

    assert (
        "manifests: notify-migrate does not read REDVEST_AUTH_SECRET from secret redvest-auth "
        "key secret" in found
    )


def test_a_worker_autoscaler_on_another_queue_is_found() -> None:
    def edit(autoscaler: dict[str, Any]) -> None:
        autoscaler["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"] = {
            "queue": "intake"
        }

    found = findings(changed(rendered(), editing("HorizontalPodAutoscaler", "points-worker", edit)))

    assert (
        "manifests: no HorizontalPodAutoscaler on redvest_queue_depth{queue='points'} for "
        "points-worker" in found
    )


def test_a_setting_in_the_configmap_that_no_process_reads_is_found() -> None:
    (config,) = [d["metadata"]["name"] for d in documents(rendered()) if d["kind"] == "ConfigMap"]

    def edit(config_map: dict[str, Any]) -> None:
        config_map["data"]["RELAY_INTERVAL"] = "1"

    found = findings(changed(rendered(), editing("ConfigMap", config, edit)))

    assert found == [f"manifests: ConfigMap {config} sets RELAY_INTERVAL, which no process reads"]


# The tools


def test_kubernetes_validate_refuses_what_the_api_server_would() -> None:
    def edit(deployment: dict[str, Any]) -> None:
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"

    text = changed(rendered(), editing("Deployment", "intake-web", edit))

    (finding, *_) = deploy_checks.validate_manifests(text, label="manifests")
    assert "deployment/intake-web" in finding
    assert "containerPort: '80' is not of type 'integer'" in finding


def test_kubernetes_validate_passes_the_rendered_manifests() -> None:
    assert deploy_checks.validate_manifests(rendered("overlays/example"), label="example") == []


def test_hadolint_finds_an_image_built_from_an_untagged_base(tmp_path: Path) -> None:
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text("FROM debian\nRUN echo built\n")

    found = deploy_checks.lint_containerfiles([containerfile])

    assert any("DL3006" in line for line in found)


def test_every_containerfile_under_deploy_is_linted() -> None:
    found = deploy_checks.containerfiles()

    for service in SERVICES:
        assert deploy_checks.DEPLOY / "images" / f"{service}.Containerfile" in found


def test_a_compose_file_outside_the_specification_is_found(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    image: redvest-intake\n    restrat: always\n")

    found = deploy_checks.check_compose(compose)

    assert found and any("restrat" in line for line in found)


def test_the_compose_file_follows_the_specification() -> None:
    assert deploy_checks.check_compose() == []


def test_the_alert_rules_pass_promtool_and_their_own_cases() -> None:
    assert deploy_checks.check_prometheus() == []


def test_a_dashboard_query_that_does_not_parse_is_found_by_its_panel() -> None:
    found = deploy_checks._promql_findings(
        {"panel 'Queue depth' A": "max by (service (redvest_queue_depth)", "fine": "up"}
    )

    assert len(found) == 1
    assert found[0].startswith("panel 'Queue depth' A: could not parse expression")


def test_the_dashboards_variables_are_given_values_before_its_queries_are_checked() -> None:
    expressions = deploy_checks.dashboard_expressions()

    assert expressions
    assert not [query for query in expressions.values() if "$" in query]
