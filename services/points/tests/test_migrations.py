"""points' migrations carry an older ledger over: each entry gets the time its points moved and
each posting of an earning the hours it stands for; and they go back down without loss of what
the older ledger can hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.points.config import runtime
from shared.database import create_database_engine
from shared.migrations import downgrade, upgrade
from tests.support import scratch_database

WRITTEN = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POSTED = datetime(2026, 11, 22, 18, 30, tzinfo=UTC)


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of this test's own, beside the test run's points database."""
    with scratch_database(runtime().settings.database_url) as url:
        yield url


def _older_ledger(connection: object) -> None:
    """Two earnings as revision 0005 kept them: one credited at once, one pending posted in
    part (two of its three hours confirmed)."""
    statements = (
        "INSERT INTO accounts (id, holder, kind, balance, debits_pending, credits_pending, "
        "created_at) VALUES (1, 'bank:issuance', 'issuance', -35, 0, 0, :written), "
        "(2, 'volunteer:v-7', 'holder', 35, 0, 0, :written)",
        "INSERT INTO transfers (id, kind, amount, debit_account_id, credit_account_id, memo, "
        "request_id, created_at, is_pending, category, hours, rate) VALUES "
        "('earn:r-1', 'earn', 15, 1, 2, '', 'r-1', :written, false, 'knife_sharpening', 1.5, 10),"
        "('earn:r-2', 'earn', 30, 1, 2, '', 'r-2', :written, true, 'knife_sharpening', 3, 10)",
        "INSERT INTO transfer_resolutions (transfer_id, outcome, amount, resolved_at) VALUES "
        "('earn:r-2', 'posted', 20, :posted)",
        "INSERT INTO entries (transfer_id, account_id, amount) VALUES "
        "('earn:r-1', 1, -15), ('earn:r-1', 2, 15), ('earn:r-2', 1, -20), ('earn:r-2', 2, 20)",
    )
    for statement in statements:
        connection.execute(text(statement), {"written": WRITTEN, "posted": POSTED})  # type: ignore[attr-defined]


def test_entries_and_postings_of_an_older_ledger_get_their_times_and_hours(
    scratch_url: str,
) -> None:
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0005")
    engine = create_database_engine(scratch_url)
    try:
        with engine.begin() as connection:
            _older_ledger(connection)
        upgrade(migrations, scratch_url, "head")
        with engine.connect() as connection:
            entries = connection.execute(
                text("SELECT transfer_id, posted_at FROM entries ORDER BY id")
            ).all()
            hours = connection.execute(
                text("SELECT hours FROM transfer_resolutions WHERE transfer_id = 'earn:r-2'")
            ).scalar_one()
        assert [(transfer_id, _utc(posted_at)) for transfer_id, posted_at in entries] == [
            ("earn:r-1", WRITTEN),
            ("earn:r-1", WRITTEN),
            ("earn:r-2", POSTED),
            ("earn:r-2", POSTED),
        ]
        assert Decimal(str(hours)) == Decimal("2.00")
        downgrade(migrations, scratch_url, "0005")
        with engine.connect() as connection:
            left = connection.execute(text("SELECT count(*) FROM entries")).scalar_one()
        assert left == 4
    finally:
        engine.dispose()


def _utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
