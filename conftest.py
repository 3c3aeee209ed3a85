"""Test set-up for every service: databases of the test run's own, a Redis namespace of its own.

The backend comes from ``REDVEST_TEST_DATABASE`` (``sqlite``, the default, or ``postgresql``)
and the broker from ``REDVEST_TEST_BROKER_URL``. Everything is created for this run and removed
afterwards: tests never touch databases or Redis keys they did not create.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

SERVICES = ("intake", "dispatch", "points", "notify")
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


# Services read their settings once, on first use: set them before any service is imported.
os.environ.update(
    {
        "REDVEST_VAR_DIR": VAR_DIR,
        "BROKER_URL": os.environ.get("REDVEST_TEST_BROKER_URL", "redis://127.0.0.1:6379/0"),
        "BROKER_NAMESPACE": f"redvest-test-{RUN_ID}",
        "REDVEST_AUTH_SECRET": f"redvest-test-secret-{RUN_ID}-not-for-production",
        "LOG_FORMAT": "console",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "RELAY_INTERVAL_S": "0.05",
        **{f"{service.upper()}_DATABASE_URL": _database_url(service) for service in SERVICES},
    }
)
os.environ.pop("REDIS_URL", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Races between writers need PostgreSQL: deselect them on SQLite rather than skip them."""
    if BACKEND == "postgresql":
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    deselected = [item for item in items if item.get_closest_marker("postgres") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def _service_runtimes() -> dict[str, object]:
    from services.dispatch.config import runtime as dispatch
    from services.intake.config import runtime as intake
    from services.notify.config import runtime as notify
    from services.points.config import runtime as points

    return {"intake": intake(), "dispatch": dispatch(), "points": points(), "notify": notify()}


@pytest.fixture(scope="session", autouse=True)
def _databases() -> Iterator[None]:
    from shared.migrations import upgrade

    if BACKEND == "postgresql":
        for service in SERVICES:
            _admin_execute(f"CREATE DATABASE redvest_test_{RUN_ID}_{service}")
    runtimes = _service_runtimes()
    for runtime in runtimes.values():
        upgrade(runtime.migrations, runtime.settings.database_url)  # type: ignore[attr-defined]
    yield
    for runtime in runtimes.values():
        runtime.db.dispose()  # type: ignore[attr-defined]
    if BACKEND == "postgresql":
        for service in SERVICES:
            _admin_execute(f"DROP DATABASE IF EXISTS redvest_test_{RUN_ID}_{service} WITH (FORCE)")


@pytest.fixture(scope="session", autouse=True)
def _broker_namespace() -> Iterator[None]:
    yield
    import redis

    url = os.environ["BROKER_URL"]
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{os.environ['BROKER_NAMESPACE']}*", count=500):
            client.delete(key)
        client.close()


@pytest.fixture(autouse=True)
def _empty_tables() -> Iterator[None]:
    """Each test starts from empty tables in every service's database."""
    yield
    from sqlalchemy import delete

    for runtime in _service_runtimes().values():
        with runtime.db.transaction() as session:  # type: ignore[attr-defined]
            for table in reversed(runtime.metadata.sorted_tables):  # type: ignore[attr-defined]
                session.execute(delete(table))
