"""Keep every Procfile process running: restart what exits, with backoff; stop all on a signal."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from devtools.processes import kill_group, spawn, stop_gracefully

# ANSI colours for the name prefixes, in turn, when the output is a terminal (as honcho does).
COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)


@dataclass(frozen=True)
class Backoff:
    """The wait before a restart: doubling from ``first`` up to ``longest``.

    A process that stayed up ``reset_after`` seconds or more is restarted after ``first`` again.
    """

    first: float = 1.0
    longest: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th exit in a row (1 for the first)."""
        return min(self.first * 2 ** (failures - 1), self.longest)


@dataclass
class _Child:
    name: str
    command: str
    colour: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restarts: int = 0
    restart_at: float | None = None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class Supervisor:
    """Runs named commands, each in its own session, prefixing their output lines with the name.

    A process that exits while the supervisor runs is restarted after ``backoff.delay`` seconds;
    :meth:`stop` (or SIGINT / SIGTERM when :meth:`run` handles signals) stops them all.
    """

    def __init__(
        self,
        commands: Mapping[str, str],
        *,
        env: Mapping[str, str],
        backoff: Backoff = Backoff(),
        grace: float = 30.0,
        pid_dir: Path | None = None,
        output: TextIO = sys.stdout,
        tick: float = 0.1,
    ) -> None:
        self.children = [
            _Child(name, command, COLOURS[i % len(COLOURS)])
            for i, (name, command) in enumerate(commands.items())
        ]
        self.env = dict(env)
        self.backoff = backoff
        self.grace = grace
        self.pid_dir = pid_dir
        self.output = output
        self.tick = tick
        self.width = max([len("supervisor"), *(len(name) for name in commands)])
        self.is_colourful = hasattr(output, "isatty") and output.isatty()
        self._print_lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        # Plain flags, not threading.Event: a signal handler must never wait for a lock.
        self._is_stop_requested = False
        self._is_hurried = False

    # --- control --------------------------------------------------------------------------
    def run(self, *, handle_signals: bool = True) -> int:
        """Start every process and keep it running until stopped; then stop them all; 0."""
        previous = {}
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            if self.pid_dir is not None:
                self.pid_dir.mkdir(parents=True, exist_ok=True)
            for child in self.children:
                self._start(child)
            while not self._is_stop_requested:
                self._check(time.monotonic())
                time.sleep(self.tick)
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def stop(self) -> None:
        """Ask :meth:`run` to stop every process gracefully; asked again, it kills them at once."""
        self._is_hurried = self._is_stop_requested
        self._is_stop_requested = True

    def pid(self, name: str) -> int | None:
        """The pid of the running process ``name`` (its group's leader), if it is running."""
        child = next(c for c in self.children if c.name == name)
        return child.process.pid if child.process is not None else None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    # --- the loop ---------------------------------------------------------------------------
    def _check(self, now: float) -> None:
        for child in self.children:
            if child.process is not None and (code := child.process.poll()) is not None:
                self._exited(child, code, now)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)

    def _start(self, child: _Child) -> None:
        child.process = spawn(child.command, self.env, stdout=subprocess.PIPE)
        child.started = time.monotonic()
        child.restart_at = None
        if self.pid_dir is not None:
            # Written aside and renamed, so a reader never sees a half-written file.
            pending = self.pid_dir / f".{child.name}.pid"
            pending.write_text(f"{child.process.pid}\n")
            pending.replace(self.pid_dir / f"{child.name}.pid")
        assert child.process.stdout is not None
        reader = threading.Thread(
            target=self._relay_output,
            args=(child, child.process.stdout),
            name=f"output of {child.name}",
            daemon=True,  # a grandchild that left the group may hold the pipe open forever
        )
        reader.start()
        self._readers = [r for r in self._readers if r.is_alive()] + [reader]
        self.say(f"{child.name} started (pid {child.process.pid})")

    def _exited(self, child: _Child, returncode: int, now: float) -> None:
        assert child.process is not None
        ran = now - child.started
        # The leader is gone; children it left behind (gunicorn's or dramatiq's workers) go too.
        kill_group(child.process.pid)
        child.process = None
        self._forget_pid(child)
        child.failures = 1 if ran >= self.backoff.reset_after else child.failures + 1
        delay = self.backoff.delay(child.failures)
        child.restart_at = now + delay
        self.say(
            f"{child.name} {describe_exit(returncode)} after {ran:.1f} s; "
            f"restart {child.restarts + 1} in {delay:g} s"
        )

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.process is not None]
        self.say(
            f"stopping: SIGTERM to each process, whatever is left after {self.grace:g} s is killed"
        )
        stop_gracefully(
            [c.process for c in running if c.process is not None],
            grace=self.grace,
            hurry=lambda: self._is_hurried,
        )
        for child in running:
            assert child.process is not None
            self.say(f"{child.name} stopped: it {describe_exit(child.process.returncode)}")
            child.process = None
            self._forget_pid(child)
        for child in self.children:
            child.restart_at = None
        for reader in self._readers:
            reader.join(timeout=2)

    def _forget_pid(self, child: _Child) -> None:
        if self.pid_dir is not None:
            (self.pid_dir / f"{child.name}.pid").unlink(missing_ok=True)

    # --- output -----------------------------------------------------------------------------
    def _relay_output(self, child: _Child, stream: IO[bytes]) -> None:
        with contextlib.closing(stream):
            for raw in iter(stream.readline, b""):
                self._print(child.name, child.colour, raw.decode("utf-8", "replace").rstrip())

    def say(self, message: str) -> None:
        """A line of the supervisor's own, prefixed like the processes' lines."""
        self._print("supervisor", 0, message)

    def _print(self, name: str, colour: int, line: str) -> None:
        prefix = f"{datetime.now():%H:%M:%S} {name:<{self.width}} | "
        if self.is_colourful and colour:
            prefix = f"\033[0m\033[{colour}m{prefix}\033[0m"
        with self._print_lock:
            self.output.write(prefix + line + "\n")
            self.output.flush()
