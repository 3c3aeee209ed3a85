"""dispatch's migrations give existing teams no lead and a folded name, and go back down
keeping the teams."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from services.dispatch.config import runtime
from shared.database import create_database_engine
from shared.migrations import downgrade, upgrade
from tests.support import scratch_database


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of this test's own, empty, beside the test run's dispatch database."""
    with scratch_database(runtime().settings.database_url) as url:
        yield url


@contextmanager
def migrated_to(url: str, revision: str) -> Iterator[Engine]:
    """An engine on ``url`` once it is migrated up to ``revision``."""
    upgrade(runtime().migrations, url, revision)
    engine = create_database_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def teams_after_going_down(engine: Engine, url: str, revision: str) -> tuple[list, list[str]]:
    """Migrate ``url`` down to ``revision``: the teams (id, name) and the columns left."""
    downgrade(runtime().migrations, url, revision)
    with engine.connect() as connection:
        teams = [tuple(row) for row in connection.execute(text("SELECT id, name FROM teams"))]
        columns = list(connection.execute(text("SELECT * FROM teams")).keys())
    return teams, columns


def test_teams_get_a_lead_column_empty_at_first_and_lose_it_going_back_down(
    scratch_url: str,
) -> None:
    with migrated_to(scratch_url, "0004") as engine:
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
        upgrade(runtime().migrations, scratch_url, "head")
        with engine.begin() as connection:
            before = connection.execute(
                text("SELECT lead_volunteer_id FROM teams WHERE id = 't-1'")
            ).scalar_one()
            connection.execute(text("UPDATE teams SET lead_volunteer_id = 'v-1' WHERE id = 't-1'"))

        teams, columns = teams_after_going_down(engine, scratch_url, "0004")

    assert before is None
    assert teams == [("t-1", "Repairs")]
    assert "lead_volunteer_id" not in columns


def test_teams_get_their_name_folded_and_names_differing_in_case_stay_one(
    scratch_url: str,
) -> None:
    with migrated_to(scratch_url, "0006") as engine:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO teams (id, name, description) VALUES ('t-1', 'Straße', '')")
            )
        upgrade(runtime().migrations, scratch_url, "head")
        with engine.connect() as connection:
            key = connection.execute(text("SELECT name_key FROM teams")).scalar_one()
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO teams (id, name, name_key, description) "
                    "VALUES ('t-2', 'STRASSE', 'strasse', '')"
                )
            )

        teams, columns = teams_after_going_down(engine, scratch_url, "0006")

    assert key == "strasse"
    assert teams == [("t-1", "Straße")]
    assert "name_key" not in columns


def test_teams_whose_names_differ_only_in_case_stop_the_upgrade_naming_them(
    scratch_url: str,
) -> None:
    with migrated_to(scratch_url, "0006") as engine:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO teams (id, name, description) "
                    "VALUES ('t-1', 'Straße', ''), ('t-2', 'STRASSE', '')"
                )
            )
        with pytest.raises(RuntimeError, match="'Straße' / 'STRASSE'"):
            upgrade(runtime().migrations, scratch_url, "head")
