"""SQLAlchemy engines and transactions for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    Executable,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InvalidatePoolError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

SQLITE_BUSY_TIMEOUT_MS = 15_000
# SQLite copies its write-ahead log back into the database file (a checkpoint) in the commit
# that fills the log to this many pages. The relay checkpoints every service's log from its own
# process long before (Database.checkpoint): a commit holding the write lock does not pay for
# it. This is the backstop for a service whose relay is down (about 40 MB of log).
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
# A pooled server connection left idle this long is pinged before it is used again: a server
# restart or a proxy's idle timeout may have closed it. One in steady use is not, which saves a
# round trip a transaction.
PING_AFTER_IDLE_S = 2.0
_IDLE_SINCE = "redvest.idle_since"
T = TypeVar("T")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_database_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        server = create_engine(url, future=True, **kwargs)
        _ping_when_idle(server)
        return server

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the lock up front: a deferred transaction that later writes can fail
        # with SQLITE_BUSY without waiting, while an immediate one waits its turn. Sent on the
        # driver's connection: every transaction begins here, and SQLAlchemy's execution of a
        # statement costs several times SQLite's BEGIN (its error is still SQLAlchemy's).
        driver = conn.connection.driver_connection
        try:
            driver.execute(begin)
        except sqlite3.Error as error:
            raise DBAPIError.instance(begin, (), error, sqlite3.Error) from error

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections that sat idle: a dead one is replaced
    before the transaction starts rather than failing it."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool throws this connection away and checks out another (a new one if need
            # be); when the server went away, every connection made before goes with it.
            gone = engine.dialect.is_disconnect(error, dbapi_connection, None)
            reason = f"an idle connection no longer answers: {error}"
            raise (InvalidatePoolError if gone else DisconnectionError)(reason) from error


class SQLiteWriterLock:
    """The one-writer-at-a-time of a SQLite file, taken before SQLite is asked for it.

    Threads of a process queue on a lock in order; processes (a service's web workers, worker,
    relay and scheduler) queue on an exclusive ``flock`` of a file beside the database, which
    the kernel hands to the next waiter the moment it is released. SQLite's own busy handler,
    left to settle it, sleeps in growing steps (1, 2, 5, 10 ... 100 ms) and long tails follow.
    Anything else writing the file (a migration, the sqlite3 shell) still meets the busy handler.
    """

    def __init__(self, database_path: str | None) -> None:
        self._threads = threading.Lock()
        self._path = f"{database_path}.writer-lock" if database_path else None
        self._descriptor_of: tuple[int, int] | None = None  # (pid, file descriptor)

    def _descriptor(self) -> int | None:
        if self._path is None:
            return None
        # An open file description is shared across fork, and flock with it: each process
        # opens its own, or a parent and its forked children would never exclude each other.
        if self._descriptor_of is None or self._descriptor_of[0] != os.getpid():
            self._descriptor_of = (os.getpid(), os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        return self._descriptor_of[1]

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            descriptor = self._descriptor()
            if descriptor is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            descriptor = self._descriptor()
            if descriptor is not None:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        """Let go of the lock's file (it is opened again if the lock is taken again)."""
        with self._threads:
            if self._descriptor_of is not None and self._descriptor_of[0] == os.getpid():
                os.close(self._descriptor_of[1])
            self._descriptor_of = None


class Database:
    """One service's database: an engine and the transactions opened on it."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = create_database_engine(self.url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.engine.dialect.name == "sqlite":
            reader = create_database_engine(self.url, immediate=False, **engine_kwargs)
        else:
            reader = self.engine
        self.readers = sessionmaker(reader, expire_on_commit=False)
        # SQLite has one writer at a time: writers queue here rather than in SQLite's busy
        # handler (see SQLiteWriterLock).
        self._writer: AbstractContextManager[Any] = (
            SQLiteWriterLock(_file_of(self.engine)) if self.is_sqlite else nullcontext()
        )
        self._writing = threading.local()
        # Called in the committing thread with the session of each write transaction that
        # committed, once the write lock is free again: work there never holds up other writers.
        self.after_write: list[Callable[[Session], None]] = []

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any exception."""
        if getattr(self._writing, "active", False):
            # A second connection's write would wait on this thread's own first one.
            raise RuntimeError("a write transaction is already open in this thread")
        # The session is made before the write lock is taken and closed once it is let go: on
        # SQLite other writers wait only for the statements and the commit.
        session = self.sessions()
        try:
            with self._writer:
                self._writing.active = True
                try:
                    with session.begin():
                        yield session
                finally:
                    self._writing.active = False
        finally:
            session.close()
        for hook in self.after_write:
            hook(session)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only; on SQLite it does not take the write lock."""
        with self.readers.begin() as session:
            yield session

    def checkpoint(self) -> tuple[int, int] | None:
        """On SQLite, copy what the write-ahead log holds back into the database file without
        waiting for, or holding up, any reader or writer (a PASSIVE checkpoint): the pages
        left in the log and those copied. None on other databases."""
        if not self.is_sqlite:
            return None
        # On the driver's connection: a checkpoint cannot run in a transaction, and one of
        # SQLAlchemy's would begin with the statement.
        connection = self.readers.kw["bind"].raw_connection()
        try:
            cursor = connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            _, logged, copied = cursor.fetchone()
        finally:
            connection.close()
        return logged, copied

    def ping(self) -> None:
        with self.readers.kw["bind"].connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        self.readers.kw["bind"].dispose()
        if isinstance(self._writer, SQLiteWriterLock):
            self._writer.close()


def _file_of(engine: Engine) -> str | None:
    """The file of a SQLite database, or None for one in memory."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return str(Path(database).resolve())


def as_loaded(session: Session, instance: T, **attributes: Any) -> T:
    """``instance``, whose row a plain INSERT just wrote, put in ``session`` as if loaded from
    it: no INSERT at the next flush, and ``attributes`` (relationships, mostly) set as loaded
    values, so that reading them neither queries nor writes."""
    make_transient_to_detached(instance)
    for name, value in attributes.items():
        set_committed_value(instance, name, value)
    session.add(instance)
    return instance


class DirectStatement:
    """A Core statement run on the DBAPI cursor of a session's connection, compiled once for each
    database and set of parameters: SQLAlchemy's execution layer (an execution context, bind and
    result processing, events) costs several times what the driver does for a small statement,
    and on the busiest paths (intake's door) that was a fifth of a request's CPU.

    SQLAlchemy still does all it does well: it renders the statement, and its types' bind and
    result processors (dates, JSON, ``UtcDateTime``) turn values into what the driver takes and
    back, so the rows written and read are those of ``session.execute``. The session's pending
    ORM changes are flushed first, as ``session.execute`` would. An error goes through
    SQLAlchemy's own handling: its exceptions (``IntegrityError``; a value its type refuses, a
    ``StatementError``), ``handle_error`` events, and on a lost server the connection and the
    rest of the pool invalidated. Whatever this cannot do as SQLAlchemy would goes through
    ``session.execute`` unchanged: parameters the caller does not give (column defaults, values
    computed at execution), lists expanded into ``IN``, values held with ``.params()``, and any
    engine whose cursor events are listened to or whose statements are logged, so tracing,
    statement counts and ``echo`` see every statement.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[Dialect, frozenset[str]], _Plan | None] = {}
        # Values given with .params() are merged in by SQLAlchemy's execution alone.
        self._held_params = bool(getattr(statement, "_params", None))

    def execute(self, session: Session, parameters: Mapping[str, Any]) -> None:
        """Run the statement in ``session``'s transaction."""
        self._run(session, parameters, fetch=False)

    def first(self, session: Session, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement returns (RETURNING, or a query's), as a tuple of the
        values its columns' types make (``exported_columns``' order)."""
        row: tuple[Any, ...] | None = self._run(session, parameters, fetch=True)
        return row

    def _run(self, session: Session, parameters: Mapping[str, Any], *, fetch: bool) -> Any:
        if session.autoflush:
            session.flush()
        connection = session.connection()
        plan = self._plan_for(connection, parameters)
        if plan is None:
            result = session.execute(self.statement, parameters)
            return tuple(row) if fetch and (row := result.first()) is not None else None
        return plan.run(connection, parameters, fetch=fetch)

    def _plan_for(self, connection: Connection, parameters: Mapping[str, Any]) -> _Plan | None:
        engine = connection.engine
        if (
            self._held_params
            or engine.logger.isEnabledFor(logging.INFO)
            or _listened(engine)
            or _listened(connection)
        ):
            return None
        key = (connection.dialect, frozenset(parameters))
        try:
            return self._plans[key]
        except KeyError:
            plan = self._plans[key] = _Plan.of(self.statement, connection.dialect, parameters)
            return plan


def _listened(target: Engine | Connection) -> bool:
    dispatch: Any = target.dispatch
    return bool(dispatch.before_cursor_execute) or bool(dispatch.after_cursor_execute)


class _Plan:
    """A statement as one database runs it: its SQL, and how each of its parameters is made
    from the caller's (a name to look up or a value of the statement's own, and its type's bind
    processor)."""

    def __init__(
        self,
        sql: str,
        dialect: Dialect,
        binds: list[tuple[str, str | None, Any, Callable[[Any], Any] | None]],
        columns: list[Any],
    ) -> None:
        self.sql = sql
        self.dialect = dialect
        self.binds = binds
        self.columns = columns
        # Each result column's processor (None: as the driver gives it); known once a cursor
        # has described the columns, as SQLAlchemy asks for them.
        self._results: list[Callable[[Any], Any] | None] | None = None

    @classmethod
    def of(cls, statement: Any, dialect: Dialect, parameters: Mapping[str, Any]) -> _Plan | None:
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(parameters))
        if (
            compiled.post_compile_params
            or compiled.literal_execute_params
            or compiled.insert_prefetch
            or compiled.update_prefetch
        ):
            return None
        names = compiled.positiontup if dialect.positional else list(compiled.bind_names.values())
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        escaped = compiled.escaped_bind_names or {}
        binds = []
        for name in names:
            bind = by_name[name]
            given = bind.key if bind.key in parameters else None
            if given is None and (bind.required or bind.callable is not None):
                return None
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((escaped.get(name, name), given, bind.value, processor))
        return cls(
            compiled.string, dialect, binds, list(getattr(statement, "exported_columns", ()))
        )

    def run(self, connection: Connection, parameters: Mapping[str, Any], *, fetch: bool) -> Any:
        arguments: Any = parameters
        cursor = None
        try:
            values = []
            for _, given, held, processor in self.binds:
                value = parameters[given] if given is not None else held
                values.append(value if processor is None else processor(value))
            arguments = (
                tuple(values)
                if self.dialect.positional
                else {name: value for (name, *_), value in zip(self.binds, values, strict=True)}
            )
            cursor = connection.connection.cursor()
            cursor.execute(self.sql, arguments)
            return self._made(cursor, cursor.fetchone()) if fetch else None
        except Exception as error:
            # SQLAlchemy's own handling raises its exception (a StatementError for a value
            # refused before the driver saw it), runs handle_error events, and on a lost server
            # invalidates the connection and every other the pool made before.
            connection._handle_dbapi_exception(error, self.sql, arguments, cursor, None)
            raise  # not reached: the handling above raises
        finally:
            if cursor is not None:
                cursor.close()

    def _made(self, cursor: Any, row: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if row is None:
            return None
        if self._results is None:
            dialect = self.dialect
            self._results = [
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(self.columns, cursor.description, strict=True)
            ]
        if not any(self._results):
            return tuple(row)
        return tuple(
            value if made is None else made(value)
            for made, value in zip(self._results, row, strict=True)
        )
