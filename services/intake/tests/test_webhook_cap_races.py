"""The cap on a system's webhook subscriptions holds when its creations arrive all at once.

Only PostgreSQL (READ COMMITTED) lets two transactions count the same subscriptions: SQLite has
one writer at a time, so the race is collected there only (see the root conftest).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from services.intake import directory, webhooks
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.models import WebhookSubscription

pytestmark = pytest.mark.postgres
OWNER = "client:city-hotline"
AT_ONCE = 16


def at_once(count: int, call: Any) -> list[Any]:
    """``call(index)`` in ``count`` threads released together; what each returned or raised."""
    start = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(index: int) -> None:
        start.wait(timeout=10)
        try:
            outcomes[index] = call(index)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def held() -> int:
    with runtime().db.read() as session:
        query = select(func.count()).select_from(WebhookSubscription).filter_by(owner=OWNER)
        return session.scalar(query) or 0


def test_creations_at_once_past_the_cap_add_one_and_the_rest_are_refused(monkeypatch):
    with runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="city-hotline")
    app = create_app()

    def create(path: str) -> Any:
        return app.test_client().post(
            "/v1/webhooks",
            json={"url": f"http://127.0.0.1:9/{path}"},
            headers={"X-API-Key": key},
        )

    for number in range(webhooks.MAX_SUBSCRIPTIONS - 1):
        assert create(f"hook{number}").status_code == 201
    check = webhooks.check_receiver

    def slow_check(url: str, destinations: Any) -> str:
        # Each creation that counted room for one more lingers before it adds it: without a
        # turn per owner, the others would count the same room meanwhile.
        time.sleep(0.3)
        return check(url, destinations)

    monkeypatch.setattr(webhooks, "check_receiver", slow_check)

    responses = at_once(AT_ONCE, lambda index: create(f"racer{index}"))

    codes = sorted(getattr(response, "status_code", repr(response)) for response in responses)
    assert codes == [201] + [409] * (AT_ONCE - 1)
    refused = [response.json for response in responses if response.status_code == 409]
    assert {answer["detail"] for answer in refused} == {
        f"{OWNER} has {webhooks.MAX_SUBSCRIPTIONS} webhook subscriptions: remove one first"
    }
    assert held() == webhooks.MAX_SUBSCRIPTIONS
