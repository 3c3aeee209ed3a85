"""``DirectStatement`` against ``session.execute``, each case run both ways: pending ORM
changes flushed first, the pool invalidated after a lost server, statements logged when
SQLAlchemy's logger asks for them, values held with ``.params()``, a value its type refuses."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import (
    bindparam,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import registry

from shared.database import Database, DirectStatement
from shared.tests.test_direct_statement import a_row, db, dropped, made_table, table

__all__ = ["db", "table"]  # fixtures of the tests beside these


def _run(how: str, statement: Any, session: Any, parameters: dict[str, Any]) -> Any:
    if how == "direct":
        return DirectStatement(statement).first(session, parameters)
    row = session.execute(statement, parameters).first()
    return None if row is None else tuple(row)


# Autoflush: session.execute flushes the session's pending ORM changes before any statement,
# Core ones included; session.connection() alone does not. Without the flush a claim (ON
# CONFLICT DO NOTHING RETURNING, as messaging's inbox claim and dispatch's assignment) would not
# see a row the same transaction already added, and the commit's flush would fail on it.
@pytest.mark.parametrize("how", ["session", "direct"])
def test_a_claim_after_a_pending_orm_row_reports_the_duplicate(db, table, how):
    class Thing:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update(kw)

    mapper_registry = registry()
    mapper_registry.map_imperatively(Thing, table)
    try:
        dialect = postgresql if not db.is_sqlite else sqlite
        claim = (
            dialect.insert(table)
            .on_conflict_do_nothing(index_elements=[table.c.code])
            .returning(table.c.id)
        )
        session = db.sessions()
        try:
            session.begin()
            session.add(Thing(**a_row("taken")))
            claimed = _run(how, claim, session, a_row("taken", kind="claim"))
            assert claimed is None, "the claim did not see the row its own transaction added"
        finally:
            session.rollback()
            session.close()
    finally:
        mapper_registry.dispose()


# A lost server: SQLAlchemy invalidates the whole pool, so every connection made before the
# server went away is replaced at its next checkout; were only the one that failed replaced,
# the next transaction would fail again on the next stale one (within PING_AFTER_IDLE_S of its
# last use nothing pings it).
@pytest.mark.postgres
@pytest.mark.parametrize("how", ["session", "direct"])
def test_after_a_lost_server_only_one_transaction_fails(database_url, how):
    db = Database(database_url, pool_size=2, max_overflow=0)
    table = made_table(db)
    try:
        statement = insert(table).returning(table.c.id)
        # Two pooled connections, both just used.
        first, second = db.engine.connect(), db.engine.connect()
        pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in (first, second)]
        first.close()
        second.close()
        with psycopg.connect(database_url, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        with pytest.raises(OperationalError), db.transaction() as session:
            _run(how, statement, session, a_row("lost"))
        with db.transaction() as session:
            _run(how, statement, session, a_row("next"))
    finally:
        db.engine.dispose()
        dropped(db, table)
        db.dispose()


# Statement logging: without echo, SQLAlchemy still logs each statement when the
# sqlalchemy.engine logger is enabled for INFO.
@pytest.mark.parametrize("how", ["session", "direct"])
def test_a_statement_is_logged_when_sqlalchemys_logger_is_enabled(db, table, caplog, how):
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    with db.transaction() as session:
        _run(how, insert(table).returning(table.c.id), session, a_row("logged"))
    assert any(r.getMessage().startswith("INSERT INTO") for r in caplog.records)


# Values held by the statement through Executable.params() are sent, not the bind's own.
@pytest.mark.parametrize("how", ["session", "direct"])
def test_values_given_by_the_statements_params_are_sent(db, table, how):
    with db.transaction() as session:
        session.execute(insert(table), a_row("x", kind="given"))
    query = (
        select(table.c.code).where(table.c.kind == bindparam("kind", "other")).params(kind="given")
    )
    with db.read() as session:
        assert _run(how, query, session, {}) == ("x",)


# A value its type refuses: SQLAlchemy's StatementError (naming the statement), not a bare
# ValueError from the bind processor.
@pytest.mark.parametrize("how", ["session", "direct"])
def test_a_value_its_type_refuses_is_a_statement_error(db, table, how):
    with pytest.raises(StatementError), db.transaction() as session:
        naive = a_row("naive", at=datetime(2026, 1, 1))
        _run(how, insert(table).returning(table.c.id), session, naive)
