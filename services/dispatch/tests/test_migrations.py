"""dispatch's migrations give existing teams no lead, and go back down keeping the teams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError

from services.dispatch.config import runtime
from shared.database import create_database_engine
from shared.migrations import downgrade, upgrade
from tests.support import scratch_database


def _remove_if_a_file(url: str) -> None:
    # A scratch SQLite database is a file that outlives the test: each test starts afresh.
    if url.startswith("sqlite"):
        Path(make_url(url).database or "").unlink(missing_ok=True)


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of this test's own, empty, beside the test run's dispatch database."""
    with scratch_database(runtime().settings.database_url) as url:
        _remove_if_a_file(url)
        yield url
        _remove_if_a_file(url)


def test_teams_get_a_lead_column_empty_at_first_and_lose_it_going_back_down(
    scratch_url: str,
) -> None:
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0004")
    engine = create_database_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO teams (id, name, description) VALUES ('t-1', 'Repairs', '')")
            )
            connection.execute(
                text(
                    "INSERT INTO volunteers (id, name, team_id, is_active) "
                    "VALUES ('v-1', 'Wang Jun', 't-1', true)"
                )
            )
        upgrade(migrations, scratch_url, "head")
        with engine.begin() as connection:
            before = connection.execute(
                text("SELECT lead_volunteer_id FROM teams WHERE id = 't-1'")
            ).scalar_one()
            connection.execute(text("UPDATE teams SET lead_volunteer_id = 'v-1' WHERE id = 't-1'"))
        assert before is None

        downgrade(migrations, scratch_url, "0004")
        with engine.connect() as connection:
            teams = connection.execute(text("SELECT id, name FROM teams")).all()
            columns = connection.execute(text("SELECT * FROM teams")).keys()
        assert [tuple(row) for row in teams] == [("t-1", "Repairs")]
        assert "lead_volunteer_id" not in columns
    finally:
        engine.dispose()


def test_teams_get_their_name_folded_and_names_differing_in_case_stay_one(
    scratch_url: str,
) -> None:
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0006")
    engine = create_database_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO teams (id, name, description) VALUES ('t-1', 'Straße', '')")
            )
        upgrade(migrations, scratch_url, "head")
        with engine.connect() as connection:
            key = connection.execute(text("SELECT name_key FROM teams")).scalar_one()
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO teams (id, name, name_key, description) "
                    "VALUES ('t-2', 'STRASSE', 'strasse', '')"
                )
            )
        assert key == "strasse"

        downgrade(migrations, scratch_url, "0006")
        with engine.connect() as connection:
            teams = connection.execute(text("SELECT id, name FROM teams")).all()
            columns = connection.execute(text("SELECT * FROM teams")).keys()
        assert [tuple(row) for row in teams] == [("t-1", "Straße")]
        assert "name_key" not in columns
    finally:
        engine.dispose()


def test_teams_whose_names_differ_only_in_case_stop_the_upgrade_naming_them(
    scratch_url: str,
) -> None:
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0006")
    engine = create_database_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO teams (id, name, description) "
                    "VALUES ('t-1', 'Straße', ''), ('t-2', 'STRASSE', '')"
                )
            )
        with pytest.raises(RuntimeError, match="'Straße' / 'STRASSE'"):
            upgrade(migrations, scratch_url, "head")
    finally:
        engine.dispose()
