"""The supervisor behind ``make run``, with real short-lived child processes."""

from __future__ import annotations

import io
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.processes import ROOT
from devtools.supervisor import Backoff, Supervisor
from tests.support import eventually

EXIT_LINE = re.compile(
    r"\| (?P<name>\S+) (?P<how>exited with code \d+|was killed by \w+) after (?P<ran>[0-9.]+) s; "
    r"restart (?P<count>\d+) in (?P<delay>[0-9.]+) s$"
)


# Waits short enough for tests; the limits are the supervisor's parameters.
QUICK = Backoff(first=0.1, longest=1, reset_after=30)


def python(code: str, *args: object) -> str:
    """A Procfile-style command line running ``code`` in a fresh interpreter."""
    return " ".join(shlex.quote(str(part)) for part in (sys.executable, "-c", code, *args))


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Run:
    """A supervisor running in a background thread, its output captured."""

    def __init__(self, supervisor: Supervisor, output: io.StringIO) -> None:
        self.supervisor = supervisor
        self.output = output
        self.returned: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.returned.append(supervisor.run(handle_signals=False))
        )

    def lines(self) -> list[str]:
        return self.output.getvalue().splitlines()

    def exits(self) -> list[re.Match[str]]:
        return [m for line in self.lines() if (m := EXIT_LINE.search(line))]

    def stop(self, timeout: float = 10.0) -> float:
        """Stop the supervisor; the seconds it took."""
        started = time.monotonic()
        self.supervisor.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the supervisor did not stop"
        return time.monotonic() - started


@contextmanager
def supervising(
    commands: dict[str, str],
    *,
    backoff: Backoff = QUICK,
    grace: float = 5.0,
    pid_dir: Path | None = None,
) -> Iterator[Run]:
    output = io.StringIO()
    supervisor = Supervisor(
        commands,
        env=dict(os.environ),
        backoff=backoff,
        grace=grace,
        pid_dir=pid_dir,
        output=output,
    )
    run = Run(supervisor, output)
    run.thread.start()
    try:
        yield run
    finally:
        if run.thread.is_alive():
            run.stop()


def test_a_process_that_keeps_exiting_is_restarted_after_waits_that_double_up_to_the_longest():
    code = "import time; print('up at', time.monotonic(), flush=True); raise SystemExit(3)"
    backoff = Backoff(first=0.2, longest=0.8, reset_after=30)
    with supervising({"crasher": python(code)}, backoff=backoff) as run:
        eventually(lambda: len(run.exits()) >= 5, timeout=20, what="five exits")
        run.stop()

    exits = run.exits()[:4]
    assert [m["name"] for m in exits] == ["crasher"] * 4
    assert [m["how"] for m in exits] == ["exited with code 3"] * 4
    assert [float(m["delay"]) for m in exits] == [0.2, 0.4, 0.8, 0.8]
    assert [int(m["count"]) for m in exits] == [1, 2, 3, 4]
    # Each start, as the child itself saw it, came at least the announced wait after the last.
    starts = [
        float(line.rsplit(" ", 1)[1])
        for line in run.lines()
        if re.search(r" crasher +\| up at ", line)
    ]
    assert len(starts) >= 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= delay for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8], strict=False))
    assert run.returned == [0]


def test_a_process_that_stayed_up_long_enough_is_restarted_after_the_first_wait_again(tmp_path):
    counter = tmp_path / "runs"
    # Runs 1 to 3 fail at once, run 4 stays up longer than reset_after, run 5 fails at once.
    code = (
        "import pathlib, sys, time\n"
        "counter = pathlib.Path(sys.argv[1])\n"
        "runs = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(runs))\n"
        "time.sleep(1.0 if runs == 4 else 0)\n"
        "raise SystemExit(1)\n"
    )
    backoff = Backoff(first=0.1, longest=10, reset_after=0.8)
    with supervising({"flaky": python(code, counter)}, backoff=backoff) as run:
        eventually(lambda: len(run.exits()) >= 5, timeout=20, what="five exits")
        run.stop()

    exits = run.exits()[:5]
    assert [float(m["delay"]) for m in exits] == [0.1, 0.2, 0.4, 0.1, 0.2]
    assert float(exits[3]["ran"]) >= 0.8
    assert [int(m["count"]) for m in exits] == [1, 2, 3, 4, 5]


def test_a_killed_process_is_restarted_and_what_it_left_behind_is_killed_first(tmp_path):
    child_pid_file = tmp_path / "child.pid"
    # The leader starts a child of its own, as gunicorn and dramatiq do, then waits.
    code = (
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "pathlib.Path(sys.argv[1]).write_text(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    pid_dir = tmp_path / "run"
    with supervising({"master": python(code, child_pid_file)}, pid_dir=pid_dir) as run:
        child = int(eventually(lambda: child_pid_file.exists() and child_pid_file.read_text()))
        leader = int((pid_dir / "master.pid").read_text())
        assert leader == run.supervisor.pid("master")
        child_pid_file.unlink()

        os.kill(leader, signal.SIGKILL)

        eventually(lambda: not is_alive(child), timeout=5, what="the orphaned child to be killed")
        restarted = eventually(
            lambda: (
                (pid_dir / "master.pid").exists()
                and int((pid_dir / "master.pid").read_text()) != leader
                and int((pid_dir / "master.pid").read_text())
            ),
            timeout=5,
            what="a new pid",
        )
        assert is_alive(restarted)
        [killed] = run.exits()
        assert killed["how"] == "was killed by SIGKILL"
        assert killed["count"] == "1"
        run.stop()
    assert not (pid_dir / "master.pid").exists()
    assert not is_alive(restarted)


def test_stopping_signals_each_leader_only_lets_it_drain_then_kills_the_rest(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    # The leader drains for 0.3 s on SIGTERM; its child notes any SIGTERM it gets.
    child_code = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: pathlib.Path(sys.argv[1], 'child').touch())\n"
        "time.sleep(60)\n"
    )
    code = (
        "import pathlib, signal, subprocess, sys, time\n"
        "marks = pathlib.Path(sys.argv[1])\n"
        "child = subprocess.Popen([sys.executable, '-c', sys.argv[2], str(marks)])\n"
        "(marks / 'child.pid').write_text(str(child.pid))\n"
        "def drain(*_):\n"
        "    (marks / 'leader').touch()\n"
        "    time.sleep(0.3)\n"
        "    print('drained', flush=True)\n"
        "    raise SystemExit(0)\n"
        "signal.signal(signal.SIGTERM, drain)\n"
        "print('serving', flush=True)\n"
        "time.sleep(60)\n"
    )
    with supervising({"web": python(code, marks, child_code)}, grace=5) as run:
        eventually(lambda: (marks / "child.pid").exists(), what="the child to start")
        eventually(lambda: any(line.endswith("| serving") for line in run.lines()))
        child = int((marks / "child.pid").read_text())
        took = run.stop()

    assert (marks / "leader").exists()
    assert not (marks / "child").exists()
    # SIGKILL is sent before stop() returns; the kernel takes a moment to end the process.
    eventually(lambda: not is_alive(child), timeout=2, what="the child to be killed")
    assert took < 5
    assert any(re.search(r" web +\| drained$", line) for line in run.lines())
    assert any("web stopped: it exited with code 0" in line for line in run.lines())
    assert not run.exits()
    assert run.returned == [0]


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period():
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn', flush=True)\n"
        "time.sleep(60)\n"
    )
    with supervising({"stubborn": python(code)}, grace=0.5) as run:
        eventually(lambda: any(line.endswith("| stubborn") for line in run.lines()))
        took = run.stop()

    assert 0.5 <= took < 5
    assert any("stubborn stopped: it was killed by SIGKILL" in line for line in run.lines())
    assert run.returned == [0]


def test_sigterm_to_the_supervisor_stops_every_process_and_it_exits_0(tmp_path):
    program = (
        "import os, sys\n"
        "from devtools.supervisor import Supervisor\n"
        "sleeper = f'{sys.executable} -c \"import time; time.sleep(60)\"'\n"
        "commands = {'one': sleeper, 'two': sleeper}\n"
        "sys.exit(Supervisor(commands, env=os.environ, grace=5).run())\n"
    )
    log = tmp_path / "supervisor.log"
    with log.open("wb") as output:
        supervisor = subprocess.Popen(
            [sys.executable, "-c", program], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        eventually(
            lambda: len(re.findall(r"started \(pid", log.read_text())) == 2,
            what="both processes to start",
        )
        pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log.read_text())]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    text = log.read_text()
    assert "one stopped: it was killed by SIGTERM" in text
    assert "two stopped: it was killed by SIGTERM" in text
    assert not any(is_alive(pid) for pid in pids)
