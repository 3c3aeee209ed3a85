"""The services as real processes: gunicorn, dramatiq workers and relays, from deploy/Procfile."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.community import seed_demo
from stack.processes import SERVICES, ProcessGroup, wait_until_ready
from stack.redis_server import free_port


class Stack:
    def __init__(self, group: ProcessGroup, env: dict[str, str], urls: dict[str, str]) -> None:
        self.group = group
        self.env = env
        self.urls = urls

    def seed(self) -> dict[str, Any]:
        return seed_demo(self.env, self.urls)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    var_dir = Path(tempfile.mkdtemp(prefix="redvest-e2e-"))
    ports = {service: free_port(0) for service in SERVICES}
    env = {
        **os.environ,  # the run's own databases, broker and namespace (see the root conftest)
        "REDVEST_VAR_DIR": str(var_dir),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "1",
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "2",
        **{f"{service.upper()}_PORT": str(port) for service, port in ports.items()},
    }
    urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    group = ProcessGroup(env, var_dir / "logs")
    group.start()
    try:
        wait_until_ready(urls.values(), timeout=90, group=group)
        yield Stack(group, env, urls)
    finally:
        group.stop()
