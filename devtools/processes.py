"""Start, watch and stop the processes named in ``deploy/Procfile``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

import requests

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "deploy" / "Procfile"


def procfile_commands(path: Path = PROCFILE) -> dict[str, str]:
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def venv_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this interpreter's bin directory first on PATH."""
    merged = dict(env)
    bin_dir = str(Path(sys.executable).parent)
    merged["PATH"] = bin_dir + os.pathsep + merged.get("PATH", os.environ.get("PATH", ""))
    return merged


def spawn(
    command: str, env: Mapping[str, str], *, stdout: int | IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start a Procfile command in a session of its own, stderr merged into ``stdout``.

    Its own session keeps a terminal's Ctrl-C away from it (the caller decides how it stops) and
    makes its process group, children included, one thing to kill.
    """
    # exec: the shell becomes the process, so signals reach it, not a bystander.
    return subprocess.Popen(
        f"exec {command}",
        shell=True,
        cwd=ROOT,
        env=dict(env),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(pid: int) -> None:
    """SIGKILL whatever is left of the process group ``pid`` leads."""
    # PermissionError: some systems refuse to signal a group left with zombies only.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_gracefully(
    processes: Sequence[subprocess.Popen[bytes]],
    *,
    grace: float,
    hurry: Callable[[], bool] = lambda: False,
) -> None:
    """SIGTERM each leader, wait up to ``grace`` seconds, then kill what is left of each group.

    Only leaders are signalled, as an orchestrator would: gunicorn's and dramatiq's masters pass
    the signal on to their children themselves, and a child signalled twice stops hard instead of
    draining. ``hurry`` returning true cuts the wait short.
    """
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if hurry():
            break
        time.sleep(0.05)
    for process in processes:
        kill_group(process.pid)
        process.wait()


class ProcessGroup:
    """Processes from the Procfile, each in its own session, each with its own log file."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = venv_env(env)
        self.log_dir = log_dir
        self.commands = procfile_commands()
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, names: Iterable[str] | None = None) -> None:
        for name in names if names is not None else self.commands:
            with (self.log_dir / f"{name}.log").open("ab") as log:
                self.running[name] = spawn(self.commands[name], self.env, stdout=log)

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to the leader of ``name`` only, as ``stop_gracefully`` does."""
        os.kill(self.running[name].pid, signum)

    def kill(self, name: str) -> None:
        """SIGKILL to every process of ``name``, as a crash would: no clean shutdown, no acks."""
        kill_group(self.running[name].pid)
        self.running[name].wait()

    def stop(self, names: Iterable[str] | None = None, timeout: float = 15.0) -> None:
        """SIGTERM each process and wait; whatever is left of its group after that is killed."""
        chosen = [
            n for n in (names if names is not None else list(self.running)) if n in self.running
        ]
        stop_gracefully([self.running.pop(name) for name in chosen], grace=timeout)

    def exited(self) -> dict[str, int]:
        return {name: code for name, p in self.running.items() if (code := p.poll()) is not None}

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def wait_until_ready(
    urls: Iterable[str], *, timeout: float = 60.0, group: ProcessGroup | None = None
) -> None:
    """Wait until every ``<url>/readyz`` answers 200."""
    pending = list(urls)
    deadline = time.monotonic() + timeout
    while pending:
        url = pending[0]
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                pending.pop(0)
                continue
        except requests.RequestException:
            pass
        if group is not None and (dead := group.exited()):
            details = "\n".join(f"--- {n} (exit {c})\n{group.log_tail(n)}" for n, c in dead.items())
            raise RuntimeError(f"processes exited during start:\n{details}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready after {timeout:.0f}s")
        time.sleep(0.2)


def run_command(args: list[str], env: Mapping[str, str]) -> str:
    """Run a one-shot command (migrate, seed) and return its stdout; fail loudly."""
    result = subprocess.run(args, cwd=ROOT, env=venv_env(env), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout
