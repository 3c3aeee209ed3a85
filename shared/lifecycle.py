"""The main loop of a long-running process (relay, scheduler) that a signal stops cleanly."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StoppableLoop:
    """``run`` cycles until ``stop``; SIGTERM and SIGINT let the cycle in hand finish first."""

    def __init__(self) -> None:
        self._stopping = threading.Event()

    def run(self) -> None:
        raise NotImplementedError

    def stop(self, *_: Any) -> None:
        self._stopping.set()

    def run_until_signalled(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.run()
