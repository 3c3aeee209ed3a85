"""SQLite's write-ahead log copied back into the database file by the relay's process, not by a
commit holding the write lock."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from shared import database
from shared.database import Database
from shared.messaging import Messaging
from shared.relay import Relay
from tests.support import eventually

# SQLite's own behaviour: once, on the SQLite leg of the suite.
pytestmark = pytest.mark.sqlite

METADATA = MetaData()
NOTES = Table(
    "notes",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("text", String(4000), nullable=False),
)
# Each note fills most of a page of its own: a commit adds a few pages to the log.
PAGE_SIZED = "x" * 3000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "notes.db"
    # Made before the log is: the file alone holds the empty table.
    made = sqlite3.connect(path)
    made.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text VARCHAR(4000) NOT NULL)")
    made.commit()
    made.close()
    db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()


def write_notes(db: Database, count: int) -> None:
    for _ in range(count):
        with db.transaction() as session:
            session.execute(insert(NOTES).values(text=PAGE_SIZED))


def notes_in_the_file_alone(db: Database, tmp_path: Path) -> int:
    """The notes a copy of the database file holds without its log."""
    copy = tmp_path / "copy.db"
    path = db.engine.url.database
    assert path is not None
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        count: int = connection.execute("SELECT count(*) FROM notes").fetchone()[0]
    finally:
        connection.close()
    return count


def test_commits_do_not_checkpoint_where_sqlite_would_by_default(db):
    # SQLite's default is a checkpoint in the commit that fills the log to 1,000 pages, after
    # which the log starts again from its beginning.
    write_notes(db, 600)
    logged = db.checkpoint()
    assert logged is not None
    assert logged[0] > 1000


def test_a_checkpoint_copies_the_log_into_the_file(db, tmp_path):
    write_notes(db, 20)
    assert notes_in_the_file_alone(db, tmp_path) == 0
    logged, copied = db.checkpoint()  # type: ignore[misc]
    assert copied == logged > 0
    assert notes_in_the_file_alone(db, tmp_path) == 20


def test_a_checkpoint_waits_for_no_open_transaction(db, tmp_path):
    write_notes(db, 5)
    with db.read() as reading, db.transaction() as writing:
        reading.execute(NOTES.select()).all()
        writing.execute(insert(NOTES).values(text="not committed yet"))
        # Neither the reader's snapshot nor the writer's lock holds it up.
        logged, copied = db.checkpoint()  # type: ignore[misc]
    assert 0 < copied <= logged
    assert notes_in_the_file_alone(db, tmp_path) == 5


def test_writers_keep_a_checkpoint_of_their_own_as_a_backstop(db):
    with db.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    assert pages == database.SQLITE_AUTOCHECKPOINT_PAGES


def relay_on(db: Database) -> Relay:
    return Relay(
        service="notes",
        db=db,
        outbox=Messaging(MetaData()).outbox,
        broker=StubBroker(),
        interval_s=0.01,
    )


def test_the_relay_checkpoints_once_an_interval(db, monkeypatch):
    relay = relay_on(db)
    checkpoints = []
    checkpoint = db.checkpoint
    monkeypatch.setattr(db, "checkpoint", lambda: checkpoints.append(1) or checkpoint())
    relay.checkpoint_interval_s = 0.2
    relay.checkpoint_when_due()
    relay.checkpoint_when_due()
    assert len(checkpoints) == 1
    time.sleep(0.3)
    relay.checkpoint_when_due()
    assert len(checkpoints) == 2


def test_a_running_relay_keeps_the_file_up_to_date_between_its_sweeps(db, tmp_path):
    relay = relay_on(db)
    relay.interval_s = 3600.0
    relay.checkpoint_interval_s = 0.05
    Messaging(MetaData()).outbox.metadata.create_all(db.engine)
    running = threading.Thread(target=relay.run)
    running.start()
    try:
        write_notes(db, 30)
        eventually(lambda: notes_in_the_file_alone(db, tmp_path) == 30)
    finally:
        relay.stop()
        running.join(10)
    assert notes_in_the_file_alone(db, tmp_path) == 30


def test_there_is_no_checkpoint_to_make_on_postgresql():
    # (Database.checkpoint on a server database, checked without one: the dialect decides.)
    db = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        assert db.checkpoint() is None
    finally:
        db.dispose()
