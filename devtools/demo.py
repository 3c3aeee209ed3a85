"""``make demo``: walk the knife-sharpening story through the running system."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from devtools.thread import KnifeSharpeningThread, ThreadFailed


def walk_the_thread(credentials: Mapping[str, Any]) -> int:
    try:
        KnifeSharpeningThread(credentials).walk()
    except ThreadFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except OSError as error:
        print(
            f"FAILED: cannot reach the services ({error}); is `make run` running?", file=sys.stderr
        )
        return 1
    print(
        "The thread went through all four services: the volunteer was credited and every "
        "inbox holds its notification."
    )
    return 0
