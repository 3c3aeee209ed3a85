"""Fixtures of intake's HTTP tests: the app's client, an API key and a resident to post for."""

from __future__ import annotations

import pytest

from services.intake import directory
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.tests.builders import a_category, a_resident


@pytest.fixture
def session():
    """A transaction on intake's database, committed when the test ends."""
    with runtime().db.transaction() as session:
        yield session


@pytest.fixture
def client():
    return create_app().test_client()


@pytest.fixture
def api_key():
    with runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="city-hotline")
    return key


@pytest.fixture
def resident_id():
    with runtime().db.transaction() as session:
        a_category(session)
        return a_resident(session).id
