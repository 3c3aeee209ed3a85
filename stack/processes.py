"""Start, watch and stop the processes named in ``deploy/Procfile``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "deploy" / "Procfile"
SERVICES = ("intake", "dispatch", "points", "notify")
DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "points": 8003, "notify": 8004}


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
                # exec: the shell becomes the process, so signals reach it, not a bystander.
                self.running[name] = subprocess.Popen(
                    f"exec {self.commands[name]}",
                    shell=True,
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to the process ``name`` started, as an orchestrator would.

        Only the leader is signalled: gunicorn's and dramatiq's masters pass it on to their
        children themselves, and a child signalled twice stops hard instead of draining.
        """
        os.kill(self.running[name].pid, signum)

    def kill(self, name: str) -> None:
        """SIGKILL to every process of ``name``, as a crash would: no clean shutdown, no acks."""
        os.killpg(self.running[name].pid, signal.SIGKILL)
        self.running[name].wait()

    def stop(self, names: Iterable[str] | None = None, timeout: float = 15.0) -> None:
        """SIGTERM each process and wait; whatever is left of its group after that is killed."""
        chosen = [
            n for n in (names if names is not None else list(self.running)) if n in self.running
        ]
        for name in chosen:
            if self.running[name].poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in chosen:
            process = self.running.pop(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

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
