"""Fixtures for notify's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from services.notify import delivery
from services.notify.config import runtime


@pytest.fixture(autouse=True)
def default_templates() -> Iterator[None]:
    """The templates the migration inserts: the root conftest empties every table after a test."""
    with runtime().db.transaction() as session:
        delivery.ensure_default_templates(session)
    yield


@pytest.fixture
def client() -> FlaskClient:
    from services.notify.app import create_app

    return create_app().test_client()
