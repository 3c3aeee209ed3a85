"""The test run's own environment: its databases, broker namespace and secret.

The backend comes from ``REDVEST_TEST_DATABASE`` (``sqlite``, the default, or ``postgresql``)
and the broker from ``REDVEST_TEST_BROKER_URL``. The services of the run are configured from
``TEST_ENV`` (see the root conftest), and the processes end-to-end tests start get it too;
nothing is patched into the test process's own environment.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from shared.topology import SERVICES

RUN_ID = uuid.uuid4().hex[:10]
BACKEND = os.environ.get("REDVEST_TEST_DATABASE", "sqlite")
POSTGRES_URL = os.environ.get(
    "REDVEST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
VAR_DIR = tempfile.mkdtemp(prefix=f"redvest-test-{RUN_ID}-")


def _database_url(service: str) -> str:
    if BACKEND == "postgresql":
        base = POSTGRES_URL.rsplit("/", 1)[0]
        return f"{base}/redvest_test_{RUN_ID}_{service}"
    return f"sqlite:///{VAR_DIR}/{service}.db"


TEST_ENV: dict[str, str] = {
    "REDVEST_ENV": "test",
    "REDVEST_VAR_DIR": VAR_DIR,
    "BROKER_URL": os.environ.get("REDVEST_TEST_BROKER_URL", "redis://127.0.0.1:6379/0"),
    "BROKER_NAMESPACE": f"redvest-test-{RUN_ID}",
    "REDVEST_AUTH_SECRET": f"redvest-test-secret-{RUN_ID}-not-for-production",
    "LOG_FORMAT": "console",
    "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    "RELAY_INTERVAL_S": "0.05",
    **{f"{service.upper()}_DATABASE_URL": _database_url(service) for service in SERVICES},
}


def process_env(var_dir: str, ports: dict[str, int]) -> dict[str, str]:
    """The environment of the services' processes an end-to-end test starts: the run's own
    databases, broker and namespace, a directory of their own and free ports, one worker each."""
    return {
        **os.environ,
        **TEST_ENV,
        "REDVEST_VAR_DIR": var_dir,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "1",
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "2",
        # The processes publish at commit as in production; the relay is their safety net.
        "PUBLISH_AT_COMMIT": "sync",
        **{f"{service.upper()}_PORT": str(port) for service, port in ports.items()},
    }
