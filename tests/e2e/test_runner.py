"""``make run``'s runner keeps the embedded stack going when one of its processes dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.processes import ROOT, kill_group, wait_until_ready
from devtools.redis_server import free_port
from devtools.thread import KnifeSharpeningThread
from shared.topology import SERVICES
from tests.environment import process_env
from tests.support import eventually

pytestmark = pytest.mark.e2e

GRACE = 20.0


@dataclass
class Runner:
    process: subprocess.Popen[bytes]
    var_dir: Path
    log: Path
    urls: dict[str, str]

    def pid_of(self, name: str) -> int | None:
        path = self.var_dir / "run" / f"{name}.pid"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def processes_in_group(pgid: int) -> list[int]:
    """Live processes (zombies excluded) whose process group is ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    """``python -m devtools run`` with the test run's databases, broker and namespace."""
    var_dir = tmp_path / "var"
    ports = {service: free_port(0) for service in SERVICES}
    env = process_env(str(var_dir), ports)
    log = tmp_path / "runner.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools", "run", "--grace", str(GRACE)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    started = Runner(
        process,
        var_dir,
        log,
        {service: f"http://127.0.0.1:{port}" for service, port in ports.items()},
    )
    try:
        yield started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=GRACE + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever a failed run left behind, in the process groups its pid files name.
        for pid_file in (var_dir / "run").glob("*.pid"):
            if text := pid_file.read_text().strip():
                kill_group(int(text))


def test_a_killed_worker_is_restarted_and_the_thread_still_runs_through(runner):
    try:
        wait_until_ready(runner.urls.values(), timeout=120)
    except RuntimeError:
        pytest.fail(f"the runner did not get ready:\n{runner.output()[-4000:]}")
    killed = runner.pid_of("dispatch-worker")
    assert killed is not None

    os.kill(killed, signal.SIGKILL)

    restarted = eventually(
        lambda: (pid := runner.pid_of("dispatch-worker")) not in (None, killed) and pid,
        timeout=30,
        what="dispatch-worker to be restarted",
    )
    assert processes_in_group(restarted)
    eventually(lambda: not processes_in_group(killed), timeout=10, what="the old worker's group")
    assert "dispatch-worker was killed by SIGKILL" in runner.output()
    assert runner.process.poll() is None

    credentials = json.loads((runner.var_dir / "demo-credentials.json").read_text())
    steps: list[str] = []
    KnifeSharpeningThread(credentials, say=steps.append, timeout=60).walk()
    assert steps[-1].startswith("7. notify")

    runner.process.send_signal(signal.SIGINT)
    assert runner.process.wait(timeout=GRACE + 10) == 0
    assert "dispatch-worker stopped" in runner.output()
    assert not list((runner.var_dir / "run").glob("*.pid"))
