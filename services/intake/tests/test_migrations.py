"""intake's migrations make the tables its models declare, and carry the data of a database
from before the grid and the catalogue grew."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from services.intake.config import runtime
from shared.database import create_database_engine
from shared.migrations import downgrade, upgrade
from tests.support import scratch_database

OURS = {
    "api_clients",
    "grid_nodes",
    "residents",
    "health_notes",
    "categories",
    "requests",
    "request_timeline",
    "webhook_subscriptions",
    "webhook_changes",
    "webhook_deliveries",
    "webhook_attempts",
    "webhook_feed",
}


def test_the_migrated_database_has_exactly_the_tables_the_models_declare():
    with runtime().db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, parent: kind != "table" or name in OURS,
                "include_object": lambda item, name, kind, reflected, other: (
                    (name if kind == "table" else item.table.name) in OURS
                ),
            },
        )
        assert compare_metadata(context, runtime().metadata) == []


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of this test's own, beside the test run's intake database."""
    with scratch_database(runtime().settings.database_url) as url:
        yield url


def test_households_residents_and_requests_of_an_older_database_are_carried_over(scratch_url):
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0003")
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    engine = create_database_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO households (id, community, building, unit, number) VALUES "
                    "(1, 'changshan-garden', '3', '2', '501'), "
                    "(2, 'changshan-garden', '3', '2', '502')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO residents (id, name, household_id, is_elderly, lives_alone) "
                    "VALUES ('r1', 'Li Shufen', 1, true, true)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO categories (code, name, description, default_priority, "
                    "is_active) VALUES ('knife_sharpening', 'Knives', '', 'normal', true)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO requests (id, category, priority, status, summary, details, "
                    "channel, submitted_by, resident_id, community, building, unit, household, "
                    "created_at, updated_at) VALUES ('q1', 'knife_sharpening', 'urgent', "
                    "'completed', 'Knives', '', 'api', 'client:x', 'r1', 'changshan-garden', "
                    "'3', '2', '501', :at, :at)"
                ),
                {"at": at},
            )
        upgrade(migrations, scratch_url, "head")
        with engine.connect() as connection:
            nodes = connection.execute(
                text(
                    "SELECT n.kind, n.building, n.unit, n.household, p.kind FROM grid_nodes n "
                    "LEFT JOIN grid_nodes p ON p.id = n.parent_id ORDER BY n.kind, n.household"
                )
            ).all()
            assert [tuple(row) for row in nodes] == [
                ("building", "3", "", "", "community"),
                ("community", "", "", "", None),
                ("household", "3", "2", "501", "unit"),
                ("household", "3", "2", "502", "unit"),
                ("unit", "3", "2", "", "building"),
            ]
            resident = connection.execute(
                text(
                    "SELECT n.household, r.language FROM residents r "
                    "JOIN grid_nodes n ON n.id = r.household_id"
                )
            ).one()
            assert tuple(resident) == ("501", "zh-CN")
            request = connection.execute(
                text("SELECT urgency, completed_at IS NOT NULL FROM requests WHERE id = 'q1'")
            ).one()
            assert tuple(request) == (3, True)
            deadlines = connection.execute(text("SELECT deadlines FROM categories")).scalar_one()
            assert "acknowledge_minutes" in str(deadlines)
        downgrade(migrations, scratch_url, "0003")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM households")).scalar_one() == 2
    finally:
        engine.dispose()


def _requests_schema(url: str) -> list[tuple[str, str]]:
    """How the database defines the requests table and its indexes, as it states them."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                query = "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'requests'"
            else:
                query = (
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'requests' "
                    "UNION ALL SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'requests'"
                )
            return sorted(
                (name, " ".join((sql or "").split()))
                for name, sql in connection.execute(text(query))
            )
    finally:
        engine.dispose()


def test_undoing_the_participants_leaves_the_requests_table_as_it_was(scratch_url):
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0013")
    before = _requests_schema(scratch_url)

    upgrade(migrations, scratch_url, "0014")
    assert "participants" in str(_requests_schema(scratch_url))
    downgrade(migrations, scratch_url, "0013")

    assert _requests_schema(scratch_url) == before
