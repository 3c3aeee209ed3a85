"""The bench's floor (devtools/floor.py): the same reads and writes as intake's POST, in plain
sqlite3, on a copy of intake's database; its figure means something only if it does them."""

from __future__ import annotations

import argparse
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from devtools import floor
from services.intake.commands import _seed_demo
from services.intake.config import MIGRATIONS, build_runtime, load_settings, runtime
from shared.migrations import upgrade


@pytest.fixture
def seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """intake's demo community in a SQLite file of this test's own, and the floor's copy."""
    original = tmp_path / "intake.db"
    url = f"sqlite:///{original}"
    upgrade(MIGRATIONS, url)
    seeding = build_runtime(load_settings({"INTAKE_DATABASE_URL": url}))
    assert _seed_demo(seeding, argparse.Namespace()) == 0
    seeding.db.dispose()
    demo = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    floor.copy_database(original, tmp_path / "floor.db")
    return {"database": tmp_path / "floor.db", **demo}


@pytest.fixture
def client(seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FlaskClient]:
    settings = runtime().settings
    namespace = f"{settings.broker_namespace}:floor-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(floor.DATABASE, str(seeded["database"]))
    monkeypatch.setenv(floor.REDIS_URL, settings.broker_url)
    monkeypatch.setenv(floor.NAMESPACE, namespace)
    yield floor.create_app().test_client()
    broker = redis.Redis.from_url(settings.broker_url)
    for key in broker.scan_iter(match=f"{namespace}:*"):
        broker.delete(key)
    broker.close()


def body(seeded: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "category": "knife_sharpening",
        "summary": "Two kitchen knives",
        "resident_id": seeded["residents"]["3-2-501"],
    } | changes


def test_the_floor_writes_what_intake_s_post_writes(client, seeded):
    answer = client.post(
        "/v1/requests",
        json=body(seeded),
        headers={"X-API-Key": seeded["api_key"], "Idempotency-Key": "first"},
    )

    assert answer.status_code == 201
    request_id = answer.json["id"]
    assert answer.headers["Location"] == f"/v1/requests/{request_id}"
    assert answer.json["location"] == {
        "community": seeded["community"], "building": "3", "unit": "2", "household": "501"
    }  # fmt: skip
    with sqlite3.connect(seeded["database"]) as database:
        request = database.execute(
            "SELECT status, priority, household, due_at FROM requests WHERE id = ?", (request_id,)
        ).fetchone()
        timeline = database.execute(
            "SELECT id, action FROM request_timeline WHERE request_id = ?", (request_id,)
        ).fetchall()
        events = database.execute("SELECT event, payload FROM outbox").fetchall()
        keys = database.execute("SELECT key, status_code, body FROM idempotency_keys").fetchall()
    database.close()
    assert request[:3] == ("submitted", "normal", "501") and request[3] is not None
    assert [action for _, action in timeline] == ["submitted"]
    assert answer.json["timeline"][0]["id"] == timeline[0][0]
    assert [(event, json.loads(payload)["request_id"]) for event, payload in events] == [
        ("request.submitted", request_id)
    ]
    assert [(key, status, json.loads(stored)) for key, status, stored in keys] == [
        ("first", 201, answer.json)
    ]


def test_a_second_post_of_the_same_resident_is_marked_a_possible_duplicate(client, seeded):
    headers = {"X-API-Key": seeded["api_key"]}
    first = client.post("/v1/requests", json=body(seeded), headers=headers).json["id"]

    second = client.post("/v1/requests", json=body(seeded), headers=headers).json["id"]

    with sqlite3.connect(seeded["database"]) as database:
        (duplicate_of,) = database.execute(
            "SELECT possible_duplicate_of FROM requests WHERE id = ?", (second,)
        ).fetchone()
    database.close()
    assert duplicate_of == first


@pytest.mark.parametrize(
    ("headers", "changes", "status"),
    [
        ({"X-API-Key": "rv_unknown"}, {}, 401),
        ({}, {}, 401),
        (None, {"summary": 7}, 422),
        (None, {"resident_id": "nobody"}, 404),
        (None, {"category": "no_such_service"}, 404),
    ],
)
def test_what_the_floor_cannot_take_writes_nothing(client, seeded, headers, changes, status):
    headers = {"X-API-Key": seeded["api_key"]} if headers is None else headers

    answer = client.post("/v1/requests", json=body(seeded, **changes), headers=headers)

    assert answer.status_code == status
    assert client.post("/v1/requests", data=b"[1, 2", headers=headers).status_code in (401, 422)
    with sqlite3.connect(seeded["database"]) as database:
        assert database.execute("SELECT count(*) FROM requests").fetchone() == (0,)
    database.close()
