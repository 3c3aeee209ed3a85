"""Test set-up for every service: databases of the test run's own, a Redis namespace of its own.

The backend comes from ``REDVEST_TEST_DATABASE`` (``sqlite``, the default, or ``postgresql``)
and the broker from ``REDVEST_TEST_BROKER_URL``. Everything is created for this run and removed
afterwards: tests never touch databases or Redis keys they did not create.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator

import pytest

from shared.logs import configure_logging
from shared.runtime import ServiceRuntime
from shared.topology import SERVICES
from tests.environment import BACKEND, POSTGRES_URL, RUN_ID, TEST_ENV, VAR_DIR


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Races between writers need PostgreSQL: deselect them on SQLite rather than skip them;
    what the database cannot change (the clients generated from a document) runs on SQLite."""
    other = "sqlite" if BACKEND == "postgresql" else "postgres"
    kept = [item for item in items if item.get_closest_marker(other) is None]
    deselected = [item for item in items if item.get_closest_marker(other) is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's directory (its SQLite files among them) goes with it: in each process of a
    run spread over several (pytest-xdist), the one that hands the tests out included."""
    shutil.rmtree(VAR_DIR, ignore_errors=True)


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def _configure_services() -> dict[str, ServiceRuntime]:
    """Each service's process runtime, on the test run's settings, with its consumers declared
    on its broker as its worker would declare them."""
    runtimes = {}
    for service in SERVICES:
        config = importlib.import_module(f"services.{service}.config")
        actors = importlib.import_module(f"services.{service}.actors")
        runtime = config.configure(config.load_settings(TEST_ENV))
        actors.CONSUMERS.declare(runtime.broker, db=runtime.db, messaging=runtime.messaging)
        runtimes[service] = runtime
    configure_logging(runtimes["intake"].settings)
    return runtimes


# Configured before any test module is collected: some build their app at import.
_configure_services()


def _service_runtimes() -> dict[str, ServiceRuntime]:
    return {
        service: importlib.import_module(f"services.{service}.config").runtime()
        for service in SERVICES
    }


@pytest.fixture
def database_url() -> str:
    """A database of the run's own (intake's), for the tests of the database layer itself."""
    return TEST_ENV["INTAKE_DATABASE_URL"]


@pytest.fixture(scope="session", autouse=True)
def _databases() -> Iterator[None]:
    from shared.migrations import upgrade

    if BACKEND == "postgresql":
        for service in SERVICES:
            _admin_execute(f"CREATE DATABASE redvest_test_{RUN_ID}_{service}")
    runtimes = _service_runtimes()
    for runtime in runtimes.values():
        upgrade(runtime.migrations, runtime.settings.database_url)
    yield
    for runtime in runtimes.values():
        runtime.db.dispose()
    if BACKEND == "postgresql":
        for service in SERVICES:
            _admin_execute(f"DROP DATABASE IF EXISTS redvest_test_{RUN_ID}_{service} WITH (FORCE)")


@pytest.fixture(scope="session", autouse=True)
def _broker_namespace() -> Iterator[None]:
    yield
    import redis

    url = TEST_ENV["BROKER_URL"]
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{TEST_ENV['BROKER_NAMESPACE']}*", count=500):
            client.delete(key)
        client.close()


@pytest.fixture(autouse=True)
def _empty_tables() -> Iterator[None]:
    """Each test starts from empty tables in every service's database."""
    yield
    for runtime in _service_runtimes().values():
        # Every table in one round trip: dependants first, so no foreign key objects.
        script = "".join(
            f'DELETE FROM "{table.name}";' for table in reversed(runtime.metadata.sorted_tables)
        )
        with runtime.db.transaction() as session:
            connection = session.connection().connection.driver_connection
            if runtime.db.is_sqlite:
                for statement in script.split(";")[:-1]:
                    connection.execute(statement)
            else:
                connection.execute(script)
