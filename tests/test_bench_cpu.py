"""The bench's CPU meter (devtools/bench.py): what each part of a running system spent a request,
and whether the machine can carry the rate; its figure means something only if it counts the
processes it names, their children, and nothing of the others."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devtools.bench import CpuMeter, describe_cpu, server_pids

# Spends 0.3 s of its own CPU (and, with an argument, starts a child that does the same first),
# says so on a line of its own, then waits to be killed: what it spent stays readable.
_BURNER = """
import subprocess, sys, time
child = None
if len(sys.argv) > 1:
    child = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
while time.process_time() < 0.3:
    pass
print("spent", flush=True)
time.sleep(600)
"""


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[Path]:
    script = tmp_path / "burner.py"
    script.write_text(_BURNER)
    yield script


def _start(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)


def _start_under_shell(script: Path, *args: str) -> tuple[subprocess.Popen[str], psutil.Process]:
    """``script`` run by a shell that waits for it: its parent is not a Python."""
    quoted = " ".join(f"'{part}'" for part in (sys.executable, str(script), *args))
    shell = subprocess.Popen(["sh", "-c", f"{quoted}; true"], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (children := psutil.Process(shell.pid).children()):
        assert time.monotonic() < deadline, "the shell started nothing"
        time.sleep(0.02)
    return shell, children[0]


def _stop(process: subprocess.Popen[str]) -> None:
    for child in psutil.Process(process.pid).children(recursive=True):
        child.kill()
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_each_part_is_charged_what_its_processes_and_their_children_spent(burner: Path) -> None:
    idle = _start(burner)
    idle.stdout.readline()  # type: ignore[union-attr]
    tree = None
    try:
        meter = CpuMeter({"busy": lambda: [tree.pid] if tree else [], "idle": lambda: [idle.pid]})
        tree = _start(burner, "with a child")
        meter.start()
        assert tree.stdout is not None
        assert tree.stdout.readline().strip() == "spent"
        cpu = meter.stop(requests=2)
    finally:
        _stop(idle)
        if tree is not None:
            _stop(tree)

    parts = cpu["parts_ms"]
    assert set(parts) == {"busy", "idle", CpuMeter.SENDER}
    # The child's 0.3 s and the parent's 0.3 s (less what the parent spent before the start: it
    # was only starting its child then), over two requests.
    assert parts["busy"] >= 250
    assert parts["idle"] < 50
    assert cpu["total_ms"] == pytest.approx(sum(parts.values()))


def test_a_part_that_names_no_process_spent_nothing() -> None:
    meter = CpuMeter({"gone": lambda: [], "no such process": lambda: [2**22 + 12345]})
    meter.start()
    cpu = meter.stop(requests=10)
    assert cpu["parts_ms"]["gone"] == 0
    assert cpu["parts_ms"]["no such process"] == 0


def test_the_line_says_the_cores_a_rate_needs() -> None:
    cpu = {"parts_ms": {"services": 15.0, "broker": 1.0}, "total_ms": 16.0}
    line = describe_cpu(cpu, rate=100)
    assert line.startswith("CPU a request at 100 req/s: services 15.0 ms, broker 1.0 ms; ")
    assert "16.0 ms in all, 1.6 of " in line


def test_a_servers_leaders_are_its_main_processes_not_their_children(burner: Path) -> None:
    shell, leader = _start_under_shell(burner, "with a child")
    try:
        assert shell.stdout is not None
        shell.stdout.readline()
        (child,) = leader.children()
        assert child.name() == leader.name()
        leaders = server_pids(leader.name())
    finally:
        _stop(shell)
    assert leader.pid in leaders
    assert child.pid not in leaders
