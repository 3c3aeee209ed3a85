"""Pooled server connections: pinged only after sitting idle, and replaced when dead."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from shared import database
from shared.database import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(database_url):
    # The run's own database, through a pool of one connection of this test's own.
    db = Database(database_url, pool_size=1, max_overflow=0)
    yield db
    db.dispose()


def backend_of(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def closed_by_the_server(db, database_url) -> int:
    """The server process of the pool's one connection, ended by the server while it sat in
    the pool, as a restart or an idle timeout would."""
    backend = backend_of(db)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    return backend


def test_a_connection_is_pinged_only_once_it_sat_idle(db, monkeypatch):
    pings = []
    ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda c: pings.append(1) or ping(c))
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)
    backends = {backend_of(db) for _ in range(3)}
    assert pings == []
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)
    backends.add(backend_of(db))
    assert pings == [1]
    assert len(backends) == 1


def test_an_idle_connection_the_server_closed_is_replaced_before_the_transaction(
    db, closed_by_the_server, monkeypatch
):
    first = closed_by_the_server
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)
    # Without the ping the transaction would fail on the dead connection.
    second = backend_of(db)
    assert second != first


def test_without_the_ping_a_connection_the_server_closed_fails_the_transaction(
    db, closed_by_the_server, monkeypatch
):
    """What the ping is for: a connection used again soon after is trusted as it is."""
    first = closed_by_the_server
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)
    with pytest.raises(OperationalError):
        backend_of(db)
    # The pool dropped it: the next transaction gets a new connection.
    assert backend_of(db) != first
