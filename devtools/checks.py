"""``make test``: every check, against real servers.

Static checks (the deploy files by their own tools included), then pytest on SQLite and again on
PostgreSQL with a real Redis broker, end-to-end tests included (the services as real processes),
each leg spread over processes with pytest-xdist; then the broker tests on RabbitMQ, then a short
chaos run on SQLite (``devtools/chaos.py``: processes killed, nothing lost or doubled); meanwhile,
in the background, the container leg (the images built with podman, the compose file brought up,
a request walked through it). Redis, PostgreSQL and RabbitMQ are used where they answer on
127.0.0.1; with no Redis the run starts one of its own. Without PostgreSQL, RabbitMQ or podman
those legs are skipped, saying so, except under CI (``CI=true``), where a missing server fails
the run and podman is installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.processes import ROOT
from devtools.redis_server import EmbeddedRedis, is_reachable

BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get(
    "REDVEST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RABBITMQ_URL = os.environ.get("REDVEST_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
NO_TESTS = 5
# Processes each database's leg runs its tests over (pytest-xdist): each has databases, a broker
# namespace and a directory of its own (tests/environment.py).
TEST_PROCESSES = os.environ.get("REDVEST_TEST_PROCESSES", str(min(4, max(2, os.cpu_count() or 1))))
# devtools.containers' exit code when podman is missing and cannot be installed (never in CI).
CONTAINERS_SKIPPED = 3


class Run:
    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []
        self.failed = False

    def step(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        print(f"\n=== {name}: {' '.join(args)}", flush=True)
        started = time.monotonic()
        code = subprocess.call(args, cwd=ROOT, env={**os.environ, **(env or {})})
        took = f"{time.monotonic() - started:.0f}s"
        if code == NO_TESTS:
            self.record(name, f"FAILED: no tests ran ({took})", failed=True)
        elif code != 0:
            self.record(name, f"FAILED: exit {code} ({took})", failed=True)
        else:
            self.record(name, f"ok ({took})")

    def record(self, name: str, outcome: str, *, failed: bool = False) -> None:
        self.results.append((name, outcome))
        self.failed = self.failed or failed

    def skip_or_fail(self, name: str, why: str) -> None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            self.record(name, f"FAILED: {why} (CI requires it)", failed=True)
        else:
            print(f"\n=== {name}: SKIPPED, {why}", flush=True)
            self.record(name, f"SKIPPED: {why}")


def static_checks(run: Run) -> None:
    run.step("ruff", [str(BIN / "ruff"), "check", "."])
    run.step("ruff format", [str(BIN / "ruff"), "format", "--check", "."])
    run.step("import contracts", [str(BIN / "lint-imports")])
    run.step("mypy", [str(BIN / "mypy"), "shared", "services", "devtools"])
    run.step("deploy files", [sys.executable, "-m", "devtools.deploy_checks"])


def pytest(run: Run, name: str, env: dict[str, str], *args: str) -> None:
    run.step(name, [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.checks")
    parser.add_argument("--only-static", action="store_true")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for every pytest leg")
    args = parser.parse_args(argv)
    run = Run()
    static_checks(run)
    redis = None
    if not args.only_static:
        if is_reachable("127.0.0.1", 6379):
            broker = "redis://127.0.0.1:6379/0"
        elif os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            broker = ""
            run.record("redis", "FAILED: no Redis on 127.0.0.1:6379 (CI requires it)", failed=True)
        else:
            redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="redvest-redis-"))).start()
            broker = redis.url
            print(f"\n=== no Redis on 127.0.0.1:6379: started one at {broker}", flush=True)
        try:
            # The container leg mostly waits on image builds and containers starting: it runs
            # beside the test legs, its output held back until it is done.
            container_leg = ContainerLeg.start()
            try:
                if broker:
                    legs(run, broker, args.pytest_args)
                chaos(run)
            finally:
                container_leg.finish(run)
        finally:
            if redis is not None:
                redis.stop()
    print("\n=== summary")
    for name, outcome in run.results:
        print(f"  {name:<28} {outcome}")
    return 1 if run.failed else 0


def legs(run: Run, broker: str, extra: list[str]) -> None:
    common = {"REDVEST_TEST_BROKER_URL": broker}
    spread = ["--numprocesses", TEST_PROCESSES]
    pytest(
        run,
        "pytest (SQLite, Redis)",
        {**common, "REDVEST_TEST_DATABASE": "sqlite"},
        *spread,
        "-m",
        "not rabbitmq",
        *extra,
    )
    if is_reachable("127.0.0.1", 5432):
        pytest(
            run,
            "pytest (PostgreSQL, Redis)",
            {
                **common,
                "REDVEST_TEST_DATABASE": "postgresql",
                "REDVEST_TEST_POSTGRES_URL": POSTGRES_URL,
            },
            *spread,
            "-m",
            "not rabbitmq",
            *extra,
        )
    else:
        run.skip_or_fail("pytest (PostgreSQL, Redis)", "no PostgreSQL on 127.0.0.1:5432")
    if is_reachable("127.0.0.1", 5672):
        pytest(
            run,
            "pytest (RabbitMQ broker)",
            {
                "REDVEST_TEST_BROKER_URL": broker,
                "REDVEST_TEST_RABBITMQ_URL": RABBITMQ_URL,
                "REDVEST_TEST_DATABASE": "sqlite",
            },
            "-m",
            "rabbitmq",
            *extra,
        )
    else:
        run.skip_or_fail("pytest (RabbitMQ broker)", "no RabbitMQ on 127.0.0.1:5672")


class ContainerLeg:
    """The images built with podman and deploy/compose.yaml brought up, a request walked through
    the containers' ports, then taken down (``devtools/containers.py``), in the background."""

    NAME = "containers (compose, podman)"

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.started = time.monotonic()

    @classmethod
    def start(cls) -> ContainerLeg:
        print(f"\n=== {cls.NAME}: started in the background", flush=True)
        log = Path(tempfile.mkdtemp(prefix="redvest-containers-")) / "leg.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "devtools.containers", "leg"],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return cls(process, log)

    def finish(self, run: Run) -> None:
        """Wait for the leg, show what it printed and record how it went."""
        code = self.process.wait()
        took = f"{time.monotonic() - self.started:.0f}s"
        print(f"\n=== {self.NAME}", flush=True)
        sys.stdout.buffer.write(self.log.read_bytes())
        sys.stdout.flush()
        if code == CONTAINERS_SKIPPED:
            # Only outside CI: there the leg installs what it needs or fails.
            run.record(self.NAME, f"SKIPPED: podman is missing and cannot be installed ({took})")
        elif code != 0:
            run.record(self.NAME, f"FAILED: exit {code} ({took})", failed=True)
        else:
            run.record(self.NAME, f"ok ({took})")


def chaos(run: Run) -> None:
    """A short ``make chaos`` on SQLite: processes killed, Redis restarted, nothing lost."""
    run.step(
        "chaos (SQLite, 200 requests)",
        [
            sys.executable,
            "-m",
            "devtools.chaos",
            "--requests",
            "200",
            "--kill-every",
            "2",
            # The run fails rather than hold up the checks past three minutes.
            "--time-limit",
            "170",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
