"""The services as real processes: gunicorn, dramatiq workers and relays, from deploy/Procfile."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.community import seed_demo, wait_until_drained
from devtools.processes import ProcessGroup, wait_until_ready
from devtools.redis_server import free_port
from shared.topology import SERVICES
from tests.environment import process_env


class Stack:
    def __init__(self, group: ProcessGroup, env: dict[str, str], urls: dict[str, str]) -> None:
        self.group = group
        self.env = env
        self.urls = urls

    def seed(self) -> dict[str, Any]:
        return seed_demo(self.env, self.urls)

    def settle(self, timeout: float = 60) -> None:
        """Wait until what the test set going is done: every outbox published, every queue
        empty, no message held by a worker; the tables are emptied only then."""
        wait_until_drained(self.env, self.urls, timeout=timeout)


@pytest.fixture(autouse=True)
def _settled(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that ran the stack, wait until the services are done with what it set
    going: set up after the root conftest's emptying of the tables, this is torn down before
    it, so nothing the services still write meets a table being emptied."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").settle()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    var_dir = Path(tempfile.mkdtemp(prefix="redvest-e2e-"))
    ports = {service: free_port(0) for service in SERVICES}
    env = process_env(str(var_dir), ports)
    urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    group = ProcessGroup(env, var_dir / "logs")
    group.start()
    try:
        wait_until_ready(urls.values(), timeout=90, group=group)
        yield Stack(group, env, urls)
    finally:
        group.stop()
