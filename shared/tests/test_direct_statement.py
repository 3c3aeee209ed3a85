"""Statements run on the DBAPI cursor (``DirectStatement``): the rows, errors and transactions
are those of ``session.execute``, and what it cannot do as SQLAlchemy would goes through it."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from shared import database
from shared.database import Database, DirectStatement, UtcDateTime

AT = datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_size=1, max_overflow=0)
    yield db
    db.dispose()


def made_table(db: Database) -> Table:
    """A table of the caller's own in ``db``, to be dropped with ``dropped``."""
    table = Table(
        f"direct_{uuid.uuid4().hex[:12]}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("code", String(20), nullable=False, unique=True),
        Column("kind", String(10), nullable=False, default="plain"),
        Column("is_open", Boolean, nullable=False),
        Column("details", JSON, nullable=False),
        Column("amount", Numeric(10, 2)),
        Column("at", UtcDateTime, nullable=False),
    )
    table.create(db.engine)
    return table


def dropped(db: Database, table: Table) -> None:
    table.drop(db.engine)


@pytest.fixture
def table(db: Database) -> Iterator[Table]:
    """A table of the test's own in the run's database, dropped afterwards."""
    table = made_table(db)
    yield table
    dropped(db, table)


def a_row(code: str, **overrides: Any) -> dict[str, Any]:
    return {
        "code": code,
        "kind": "given",
        "is_open": True,
        "details": {"asked": ["knife", 2], "note": "ü"},
        "amount": Decimal("12.50"),
        "at": AT,
        **overrides,
    }


def rows_of(db: Database, table: Table, *, raw: bool = False) -> dict[str, dict[str, Any]]:
    """Each row but its id by its code, read through its types (or as the driver gives it)."""
    query: Any = text(f"SELECT * FROM {table.name}") if raw else select(table)
    with db.read() as session:
        found = session.execute(query).mappings().all()
    return {row["code"]: {k: v for k, v in row.items() if k not in ("id", "code")} for row in found}


def executes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The statements that went through ``Session.execute`` from now on."""
    seen: list[Any] = []
    original = Session.execute

    def counted(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(statement)
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", counted)
    return seen


def test_a_row_written_directly_is_the_row_session_execute_writes(db, table, monkeypatch):
    statement = insert(table)
    direct = DirectStatement(statement)
    through_session = executes(monkeypatch)
    with db.transaction() as session:
        direct.execute(session, a_row("direct"))
        direct.execute(session, a_row("nulls", amount=None, details=[]))
    assert through_session == []
    with db.transaction() as session:
        session.execute(statement, a_row("orm"))
        session.execute(statement, a_row("orm-nulls", amount=None, details=[]))
    rows, stored = rows_of(db, table), rows_of(db, table, raw=True)
    assert rows["direct"] == rows["orm"]
    assert rows["nulls"] == rows["orm-nulls"]
    assert stored["direct"] == stored["orm"]
    assert stored["nulls"] == stored["orm-nulls"]
    assert rows["direct"]["at"] == AT
    assert rows["direct"]["at"].tzinfo is not None
    assert rows["direct"]["details"] == {"asked": ["knife", 2], "note": "ü"}
    assert rows["direct"]["amount"] == Decimal("12.50")
    assert rows["nulls"]["details"] == []


def test_returning_answers_the_written_row(db, table):
    direct = DirectStatement(insert(table).returning(table.c.id, table.c.code))
    with db.transaction() as session:
        first = direct.first(session, a_row("a"))
        second = direct.first(session, a_row("b"))
    assert first is not None and second is not None
    assert first[1] == "a" and second[1] == "b"
    assert second[0] > first[0]
    with db.read() as session:
        ids = {code: id_ for code, id_ in session.execute(select(table.c.code, table.c.id))}
    assert ids == {"a": first[0], "b": second[0]}


def test_the_write_belongs_to_the_callers_transaction(db, table):
    direct = DirectStatement(insert(table))

    class Undone(Exception):
        pass

    with pytest.raises(Undone), db.transaction() as session:
        direct.execute(session, a_row("rolled-back"))
        raise Undone
    assert rows_of(db, table) == {}


def test_a_broken_constraint_is_sqlalchemys_integrity_error_and_changes_nothing(db, table):
    direct = DirectStatement(insert(table))
    with db.transaction() as session:
        direct.execute(session, a_row("taken"))
    with pytest.raises(IntegrityError) as raised, db.transaction() as session:
        direct.execute(session, a_row("new"))
        direct.execute(session, a_row("taken", kind="again"))
    assert "INSERT INTO" in str(raised.value.statement)
    assert set(rows_of(db, table)) == {"taken"}
    # The pool's one connection is usable afterwards.
    with db.transaction() as session:
        direct.execute(session, a_row("after"))
    assert set(rows_of(db, table)) == {"taken", "after"}


def test_values_the_statement_holds_are_sent_with_the_callers(db, table, monkeypatch):
    direct = DirectStatement(insert(table).values(kind="held"))
    through_session = executes(monkeypatch)
    with db.transaction() as session:
        direct.execute(session, {k: v for k, v in a_row("held").items() if k != "kind"})
    assert through_session == []
    assert rows_of(db, table)["held"]["kind"] == "held"


def test_what_it_cannot_do_directly_goes_through_session_execute(db, table, monkeypatch):
    with db.transaction() as session:
        DirectStatement(insert(table)).execute(session, a_row("x"))
        DirectStatement(insert(table)).execute(session, a_row("y", is_open=False))
    through_session = executes(monkeypatch)
    # A column default SQLAlchemy computes, and a list expanded into IN.
    defaulted = {k: v for k, v in a_row("defaulted").items() if k != "kind"}
    expanding = DirectStatement(
        select(table.c.code).where(table.c.code.in_(["x", "y"]), table.c.is_open.is_(True))
    )
    with db.transaction() as session:
        DirectStatement(insert(table)).execute(session, defaulted)
        found = expanding.first(session, {})
    assert len(through_session) == 2
    assert found == ("x",)
    assert rows_of(db, table)["defaulted"]["kind"] == "plain"


def test_a_row_read_directly_is_the_row_session_execute_reads(db, table, monkeypatch):
    with db.transaction() as session:
        DirectStatement(insert(table)).execute(session, a_row("full"))
        DirectStatement(insert(table)).execute(
            session, a_row("empty", amount=None, details=None, is_open=False)
        )
    query = select(
        table.c.code, table.c.is_open, table.c.details, table.c.amount, table.c.at, table.c.id
    ).where(table.c.code == bindparam("code"), table.c.kind == "given")
    with db.read() as session:
        expected = {
            code: tuple(session.execute(query, {"code": code}).one()) for code in ("full", "empty")
        }
    through_session = executes(monkeypatch)
    direct = DirectStatement(query)
    with db.read() as session:
        found = {code: direct.first(session, {"code": code}) for code in ("full", "empty")}
        missing = direct.first(session, {"code": "none"})
    assert through_session == []
    assert found == expected
    assert missing is None
    assert found["full"][2:5] == ({"asked": ["knife", 2], "note": "ü"}, Decimal("12.50"), AT)
    assert found["empty"][1:4] == (False, None, None)


def test_statements_go_through_session_execute_while_cursor_events_are_listened_to(
    db, table, monkeypatch
):
    seen: list[str] = []

    def listener(*args: Any) -> None:
        seen.append(args[2])

    direct = DirectStatement(insert(table))
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        with db.transaction() as session:
            direct.execute(session, a_row("traced"))
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert any(statement.startswith("INSERT INTO") for statement in seen)
    seen.clear()
    through_session = executes(monkeypatch)
    with db.transaction() as session:
        direct.execute(session, a_row("untraced"))
    assert seen == [] and through_session == []
    assert set(rows_of(db, table)) == {"traced", "untraced"}


@pytest.mark.postgres
def test_a_connection_lost_mid_transaction_is_invalidated(db, table, database_url):
    direct = DirectStatement(insert(table))
    with pytest.raises(OperationalError) as raised, db.transaction() as session:
        backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        direct.execute(session, a_row("lost"))
    assert raised.value.connection_invalidated
    # The pool replaced the connection: the next transaction works.
    with db.transaction() as session:
        direct.execute(session, a_row("next"))
    assert set(rows_of(db, table)) == {"next"}


def test_aware_times_are_stored_in_utc(db, table):
    with db.transaction() as session:
        DirectStatement(insert(table)).execute(session, a_row("utc"))
    with db.read() as session:
        stored = session.execute(
            text(f"SELECT at FROM {table.name} WHERE code = 'utc'")
        ).scalar_one()
    as_text = stored if isinstance(stored, str) else stored.astimezone(UTC).isoformat(" ")
    assert as_text.startswith(AT.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


@pytest.mark.sqlite
def test_a_writer_that_cannot_begin_gets_sqlalchemys_error_and_the_next_one_begins(
    database_url, table, monkeypatch
):
    # SQLite's BEGIN is sent on the driver's connection (shared/database.py): a lock held
    # elsewhere past the busy timeout is still SQLAlchemy's OperationalError.
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 50)
    db = Database(database_url)
    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"), db.transaction() as session:
            DirectStatement(insert(table)).execute(session, a_row("blocked"))
        holder.execute("ROLLBACK")
        with db.transaction() as session:
            DirectStatement(insert(table)).execute(session, a_row("after"))
        assert set(rows_of(db, table)) == {"after"}
    finally:
        holder.close()
        db.dispose()
