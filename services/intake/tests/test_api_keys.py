"""API keys: scoped, rate limited, revocable, their last use written down; issued and revoked by
admins through /v1/api-keys and by intake's commands."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, text

from services.intake import clients
from services.intake.app import create_app
from services.intake.commands import EXTRA_COMMANDS
from services.intake.config import runtime
from services.intake.models import ApiClient
from services.intake.tests.builders import request_body
from shared.auth import KeyHolder, Principal, issue_token, parse_rate_limit
from shared.authentication import (
    _LEASE_SCRIPT,
    KeyRates,
    RateLimited,
    lease_size,
)
from shared.cli import run_cli
from shared.clock import utcnow
from shared.database import create_database_engine
from shared.errors import Conflict, Invalid
from shared.migrations import downgrade, upgrade
from shared.settings import Settings, SettingsError
from tests.support import scratch_database

PROBLEM = "application/problem+json"
# Only a Redis broker gives a count that every process of the service shares.
needs_redis = pytest.mark.skipif(
    not runtime().settings.broker_url.startswith("redis"),
    reason="the test run's broker is not Redis",
)


def a_key(name: str = "city-hotline", **given: Any) -> str:
    with runtime().db.transaction() as session:
        _, key = clients.create_api_client(session, name=name, **given)
    return key


def token(role: str, subject: str = "someone") -> dict[str, str]:
    secret = runtime().settings.auth_secret
    made = issue_token(secret, subject=subject, role=role, audience=("intake",))
    return {"Authorization": f"Bearer {made}"}


def stored(name: str) -> ApiClient:
    with runtime().db.read() as session:
        found = session.scalars(select(ApiClient).filter_by(name=name)).one()
        session.expunge(found)
        return found


ADMIN = token("admin", "key-keeper")


# Issuing keys: what each may hold


def test_a_key_issued_without_scopes_holds_every_scope_its_role_allows():
    a_key("hotline")
    a_key("console", role="staff")

    assert stored("hotline").scopes == list(clients.ROLE_SCOPES["system"])
    assert stored("console").scopes == list(clients.ROLE_SCOPES["staff"])
    assert "health:write" in stored("console").scopes
    assert "admin" not in stored("console").scopes


def test_a_key_of_the_admin_scope_is_an_admin_key_and_holds_that_scope_alone():
    a_key("key-tool", scopes=["admin"])

    assert (stored("key-tool").role, stored("key-tool").scopes) == ("admin", ["admin"])
    with pytest.raises(Invalid, match="held alone"):
        a_key("greedy", scopes=["admin", "requests:read"])
    with pytest.raises(Invalid, match="held alone"):
        a_key("sneaky", role="system", scopes=["admin"])


def test_a_system_key_may_not_hold_what_only_staff_consoles_may_do():
    with pytest.raises(Invalid, match="health:write"):
        a_key("hotline", scopes=["health:write"])


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"scopes": ["requests:delete"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"rate_limit": "lots"}, "rate_limit"),
        ({"rate_limit": "0/minute"}, "rate_limit"),
        ({"role": "root"}, "role"),
        ({"name": "two words"}, "name"),
    ],
)
def test_a_key_asked_for_with_bad_values_is_refused_and_nothing_is_stored(given, field):
    with pytest.raises(Invalid) as refused:
        a_key(**{"name": "hotline", **given})

    assert refused.value.extra["field"] == field
    with runtime().db.read() as session:
        assert session.scalars(select(ApiClient)).all() == []


def test_a_name_is_issued_once_even_after_its_key_was_revoked():
    a_key("hotline")
    with runtime().db.transaction() as session:
        clients.revoke_api_client(session, name="hotline")

    with pytest.raises(Conflict):
        a_key("hotline")


def test_a_revoked_key_names_nobody():
    key = a_key("hotline")
    with runtime().db.transaction() as session:
        assert clients.key_holder(session, key) is not None
        clients.revoke_api_client(session, name="hotline")
        assert clients.key_holder(session, key) is None


def test_a_keys_last_use_is_written_at_most_once_a_minute():
    a_key("hotline")
    key_hash = stored("hotline").key_hash
    first = utcnow()
    with runtime().db.transaction() as session:
        clients.note_key_used(session, key_hash=key_hash, at=first)
        clients.note_key_used(session, key_hash=key_hash, at=first + timedelta(seconds=50))
    assert stored("hotline").last_used_at == first

    later = first + timedelta(seconds=61)
    with runtime().db.transaction() as session:
        clients.note_key_used(session, key_hash=key_hash, at=later)
    assert stored("hotline").last_used_at == later


# Scopes at the door


def test_a_key_used_outside_its_scopes_gets_403_naming_the_missing_scope(resident_id):
    client = create_app().test_client()
    headers = {"X-API-Key": a_key("reader", scopes=["requests:read"])}

    posted = client.post("/v1/requests", json=request_body(resident_id), headers=headers)
    listed = client.get("/v1/requests", headers=headers)

    assert posted.status_code == 403
    assert posted.mimetype == PROBLEM
    assert "'requests:write'" in posted.json["detail"]
    assert posted.json["type"].endswith("/forbidden")
    assert listed.status_code == 200
    assert client.get("/v1/requests", headers=token("staff")).json == []


def test_any_key_reads_the_catalogue_whatever_its_scopes():
    client = create_app().test_client()
    headers = {"X-API-Key": a_key("webhooks-only", scopes=["webhooks"])}

    assert client.get("/v1/categories", headers=headers).status_code == 200


def test_the_open311_facade_needs_the_open311_scope_from_a_key(resident_id):
    client = create_app().test_client()
    without = a_key("no-facade", scopes=["requests:write"])

    response = client.post(
        "/open311/v2/requests.json",
        data={"api_key": without, "service_code": "knife_sharpening", "description": "Knives"},
    )

    assert response.status_code == 403
    assert "'open311'" in response.json[0]["description"]


# Admins issue, list, show and revoke keys


def test_an_admin_issues_a_key_that_is_shown_once_and_works_at_once(resident_id):
    client = create_app().test_client()

    issued = client.post(
        "/v1/api-keys",
        json={"name": "city-hotline", "scopes": ["requests:write"], "rate_limit": "120/minute"},
        headers=ADMIN,
    )

    assert issued.status_code == 201
    assert issued.json["role"] == "system"
    assert issued.json["scopes"] == ["requests:write"]
    assert issued.json["rate_limit"] == "120/minute"
    key = issued.json["api_key"]
    shown = client.get("/v1/api-keys/city-hotline", headers=ADMIN).json
    assert "api_key" not in shown
    assert shown["last_used_at"] is None
    posted = client.post("/v1/requests", json=request_body(resident_id), headers={"X-API-Key": key})
    assert posted.status_code == 201
    assert posted.headers["RateLimit-Limit"] == "120"
    assert client.get("/v1/api-keys/city-hotline", headers=ADMIN).json["last_used_at"]


def test_a_key_revoked_by_an_admin_stops_working_at_once_in_the_same_process():
    client = create_app().test_client()
    headers = {"X-API-Key": a_key("city-hotline")}
    assert client.get("/v1/requests", headers=headers).status_code == 200

    revoked = client.delete("/v1/api-keys/city-hotline", headers=ADMIN)

    assert revoked.status_code == 200
    assert revoked.json["revoked_at"] is not None
    refused = client.get("/v1/requests", headers=headers)
    assert refused.status_code == 401
    assert refused.json["detail"] == "Unknown or revoked API key."
    again = client.delete("/v1/api-keys/city-hotline", headers=ADMIN)
    assert again.json["revoked_at"] == revoked.json["revoked_at"]


def test_a_key_of_the_admin_scope_manages_keys_and_does_nothing_else(resident_id):
    client = create_app().test_client()
    headers = {"X-API-Key": a_key("key-tool", scopes=["admin"])}

    issued = client.post("/v1/api-keys", json={"name": "hotline"}, headers=headers)
    posted = client.post("/v1/requests", json=request_body(resident_id), headers=headers)

    assert issued.status_code == 201
    assert issued.json["scopes"] == list(clients.ROLE_SCOPES["system"])
    assert posted.status_code == 403


@pytest.mark.parametrize("caller", ["staff token", "system key", "staff key"])
def test_nobody_but_an_admin_may_issue_or_read_keys(caller):
    client = create_app().test_client()
    headers = {
        "staff token": lambda: token("staff"),
        "system key": lambda: {"X-API-Key": a_key("hotline")},
        "staff key": lambda: {"X-API-Key": a_key("console", role="staff")},
    }[caller]()

    issued = client.post(
        "/v1/api-keys", json={"name": "mine", "scopes": ["admin"]}, headers=headers
    )
    listed = client.get("/v1/api-keys", headers=headers)

    assert (issued.status_code, listed.status_code) == (403, 403)
    with runtime().db.read() as session:
        assert session.scalars(select(ApiClient).filter_by(name="mine")).first() is None


def test_a_key_asked_for_badly_is_a_422_problem_and_a_name_taken_a_409():
    client = create_app().test_client()
    a_key("hotline")

    bad = client.post(
        "/v1/api-keys", json={"name": "x", "role": "system", "scopes": ["admin"]}, headers=ADMIN
    )
    taken = client.post("/v1/api-keys", json={"name": "hotline"}, headers=ADMIN)
    unknown = client.get("/v1/api-keys/nobody", headers=ADMIN)

    assert (bad.status_code, bad.json["field"]) == (422, "scopes")
    assert taken.status_code == 409
    assert unknown.status_code == 404


def test_the_list_is_paged_by_name_and_tells_who_is_revoked():
    client = create_app().test_client()
    for name in ("c-hotline", "a-console", "b-partner"):
        a_key(name)
    client.delete("/v1/api-keys/b-partner", headers=ADMIN)

    first = client.get("/v1/api-keys?page_size=2", headers=ADMIN)
    cursor = json.loads(first.headers["X-Pagination"])["next_cursor"]
    second = client.get(f"/v1/api-keys?page_size=2&after={cursor}", headers=ADMIN)
    revoked = client.get("/v1/api-keys?revoked=true", headers=ADMIN)

    assert [key["name"] for key in first.json] == ["a-console", "b-partner"]
    assert json.loads(first.headers["X-Pagination"])["total"] == 3
    assert [key["name"] for key in second.json] == ["c-hotline"]
    assert json.loads(second.headers["X-Pagination"])["next_cursor"] is None
    assert [key["name"] for key in revoked.json] == ["b-partner"]


# Rate limits


@needs_redis
def test_a_key_over_its_limit_gets_429_with_retry_after_whichever_process_it_calls():
    # Two apps stand for two web processes: the count is in the broker's Redis, shared.
    one, other = create_app().test_client(), create_app().test_client()
    headers = {"X-API-Key": a_key("hotline", rate_limit="3/minute")}

    answers = [
        one.get("/v1/requests", headers=headers),
        other.get("/v1/requests", headers=headers),
        one.get("/v1/requests", headers=headers),
        other.get("/v1/requests", headers=headers),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["RateLimit-Remaining"] for answer in answers] == ["2", "1", "0", "0"]
    limited = answers[-1]
    assert limited.mimetype == PROBLEM
    assert limited.json["type"].endswith("/rate-limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Reset"] == limited.headers["Retry-After"]


def test_each_key_has_a_count_of_its_own():
    client = create_app().test_client()
    busy = {"X-API-Key": a_key("busy", rate_limit="1/minute")}
    quiet = {"X-API-Key": a_key("quiet", rate_limit="1/minute")}

    client.get("/v1/requests", headers=busy)

    assert client.get("/v1/requests", headers=busy).status_code == 429
    assert client.get("/v1/requests", headers=quiet).status_code == 200


def test_open311_calls_with_an_api_key_count_against_it_too():
    client = create_app().test_client()
    key = a_key("georeport", rate_limit="1/minute")

    first = client.get(f"/open311/v2/requests.json?api_key={key}")
    second = client.get(f"/open311/v2/requests.json?api_key={key}")

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["Retry-After"]


def test_people_with_tokens_are_not_limited_by_key_limits():
    client = create_app().test_client()

    answer = client.get("/v1/requests", headers=token("staff"))

    assert answer.status_code == 200
    assert "RateLimit-Limit" not in answer.headers


# Counting calls: in Redis when the broker is Redis, else in the process


def holder(rate_limit: str | None = None) -> KeyHolder:
    return KeyHolder(
        principal=Principal("client:hotline", "system", is_system=True),
        key_hash=uuid.uuid4().hex,
        scopes=frozenset({"requests:read"}),
        rate_limit=rate_limit,
    )


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, in the test run's namespace; emptied after."""
    prefix = f"{runtime().settings.broker_namespace}:rate-limits:{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(runtime().settings.broker_url)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


@needs_redis
def test_a_key_within_its_limit_is_told_what_is_left(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="2/minute", prefix=prefix)
    key = holder()

    assert rates.hit(key) == {"RateLimit-Limit": "2", "RateLimit-Remaining": "1"}
    assert rates.hit(key)["RateLimit-Remaining"] == "0"


@needs_redis
def test_a_key_over_its_limit_is_refused_with_the_seconds_to_wait(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="1/hour", prefix=prefix)
    key = holder()
    rates.hit(key)

    with pytest.raises(RateLimited) as refused:
        rates.hit(key)

    assert refused.value.code == 429
    assert 3500 < refused.value.retry_after_s <= 3600
    assert refused.value.limit_headers["Retry-After"] == str(refused.value.retry_after_s)


@needs_redis
def test_a_key_with_a_limit_of_its_own_is_held_to_it_not_to_the_default(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="1/minute", prefix=prefix)
    key = holder(rate_limit="3/minute")

    answers = [rates.hit(key)["RateLimit-Remaining"] for _ in range(3)]

    assert answers == ["2", "1", "0"]


@needs_redis
def test_processes_sharing_the_redis_broker_share_one_count(prefix):
    key = holder()
    one = KeyRates(runtime().settings.broker_url, default="2/minute", prefix=prefix)
    other = KeyRates(runtime().settings.broker_url, default="2/minute", prefix=prefix)

    one.hit(key)
    other.hit(key)

    assert one.is_shared
    with pytest.raises(RateLimited):
        one.hit(key)


def test_small_limits_are_counted_call_by_call_large_ones_a_lease_at_a_time():
    assert [lease_size(amount) for amount in (1, 60, 399)] == [1, 1, 1]
    assert [lease_size(amount) for amount in (400, 600, 1000, 100_000)] == [4, 6, 10, 20]


@needs_redis
def test_leased_counts_let_exactly_the_limit_through_across_processes(prefix):
    key = holder(rate_limit="1000/minute")
    processes = [
        KeyRates(runtime().settings.broker_url, default="1/minute", prefix=prefix) for _ in range(3)
    ]
    passed = 0

    for call in range(1_200):
        try:
            processes[call % 3].hit(key)
            passed += 1
        except RateLimited:
            pass

    assert passed == 1000


@needs_redis
def test_a_lease_takes_many_numbers_of_the_count_in_one_call(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="1000/minute", prefix=prefix)
    key = holder()
    client = redis.Redis.from_url(runtime().settings.broker_url)

    remaining = [int(rates.hit(key)["RateLimit-Remaining"]) for _ in range(25)]

    # Three leases of ten: the shared count moved three times, not 25.
    counted = [int(client.get(name)) for name in client.scan_iter(match=f"{prefix}:*")]
    client.close()
    assert counted == [30]
    assert remaining == list(range(999, 974, -1))


@needs_redis
def test_another_process_s_lease_counts_as_used_in_what_is_left(prefix):
    key = holder(rate_limit="1000/minute")
    one = KeyRates(runtime().settings.broker_url, default="1/minute", prefix=prefix)
    other = KeyRates(runtime().settings.broker_url, default="1/minute", prefix=prefix)

    one.hit(key)

    assert other.hit(key)["RateLimit-Remaining"] == "989"
    assert one.hit(key)["RateLimit-Remaining"] == "998"


@needs_redis
def test_a_lease_ends_with_its_window(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="400/second", prefix=prefix)
    key = holder()
    assert rates.hit(key)["RateLimit-Remaining"] == "399"

    # The one-second window passes with three numbers of the lease unused: they are not
    # carried into the next window, whose count starts again.
    time.sleep(1.05)

    assert rates.hit(key)["RateLimit-Remaining"] == "399"


@needs_redis
def test_a_lease_taken_in_a_window_opened_elsewhere_ends_with_that_window(prefix):
    key = holder(rate_limit="400/second")
    opener = KeyRates(runtime().settings.broker_url, default="1/minute", prefix=prefix)
    later = KeyRates(runtime().settings.broker_url, default="1/minute", prefix=prefix)
    opener.hit(key)  # opens the one-second window with numbers 1 to 4
    time.sleep(0.5)
    assert later.hit(key)["RateLimit-Remaining"] == "395"  # numbers 5 to 8, half a second left

    time.sleep(0.6)

    # The window it leased from has ended: its three numbers left go with it.
    assert later.hit(key)["RateLimit-Remaining"] == "399"


@needs_redis
def test_threads_of_a_process_lose_no_numbers_when_they_lease_at_once(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="1000/minute", prefix=prefix)
    key = holder()
    client = redis.Redis.from_url(runtime().settings.broker_url)
    lease = client.register_script(_LEASE_SCRIPT)
    leased_together = threading.Barrier(8, timeout=10)
    leases_taken = itertools.count()

    def lease_at_once(**arguments: Any) -> Any:
        taken = lease(**arguments)
        if next(leases_taken) < 8:
            # The first leases of all eight threads are taken before any of them is kept.
            leased_together.wait()
        return taken

    rates._lease_script = lease_at_once
    start = threading.Barrier(8)
    refused: list[RateLimited] = []
    remaining: list[str] = []

    def calls() -> None:
        start.wait()
        for _ in range(50):
            try:
                remaining.append(rates.hit(key)["RateLimit-Remaining"])
            except RateLimited as error:
                refused.append(error)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    counted = [int(client.get(name)) for name in client.scan_iter(match=f"{prefix}:*")]
    client.close()
    unused = sum(
        lease.last - lease.next + 1 for leases in rates._leases.values() for lease in leases
    )
    assert refused == []
    # Every call had a number of its own, and every number leased is either handed out or
    # still held for the next calls: none was lost.
    assert len(set(remaining)) == 400
    assert counted == [400 + unused]


@needs_redis
def test_every_lease_a_process_takes_is_kept_until_its_numbers_are_handed_out(prefix):
    """Three threads that found no number left each lease ten at once: all thirty numbers are
    handed out, none twice, before the process asks Redis again."""
    rates = KeyRates(runtime().settings.broker_url, default="1000/minute", prefix=prefix)
    limit = parse_rate_limit("1000/minute")
    name = limit.key_for(holder().key_hash)
    firsts = [rates._lease(name, limit.get_expiry(), 10) for _ in range(3)]
    handed_out = [rates._leased(name) for _ in range(27)]
    assert sorted([*firsts, *handed_out]) == list(range(1, 31))
    assert rates._leased(name) is None


@needs_redis
def test_a_leased_number_past_the_limit_is_refused_with_the_seconds_to_wait(prefix):
    rates = KeyRates(runtime().settings.broker_url, default="400/minute", prefix=prefix)
    key = holder()
    for _ in range(400):
        rates.hit(key)

    with pytest.raises(RateLimited) as refused:
        rates.hit(key)  # number 401, of the lease 401 to 404

    assert 1 <= refused.value.retry_after_s <= 60
    assert refused.value.limit_headers["RateLimit-Remaining"] == "0"


def test_when_redis_does_not_answer_a_leased_limit_is_counted_in_the_process():
    rates = KeyRates("redis://127.0.0.1:1/0", default="1000/minute", prefix="unreachable")
    key = holder()

    answers = [rates.hit(key)["RateLimit-Remaining"] for _ in range(3)]

    assert answers == ["999", "998", "997"]


def test_with_rabbitmq_each_process_counts_on_its_own():
    key = holder()
    one = KeyRates("amqp://guest:guest@127.0.0.1:5672/", default="1/minute", prefix="unused")
    other = KeyRates("amqp://guest:guest@127.0.0.1:5672/", default="1/minute", prefix="unused")

    one.hit(key)
    other.hit(key)

    assert not one.is_shared
    with pytest.raises(RateLimited):
        one.hit(key)


def test_when_redis_does_not_answer_the_process_counts_and_the_door_stays_open():
    # Port 1 on this machine: nothing listens, the connection is refused at once.
    rates = KeyRates("redis://127.0.0.1:1/0", default="1/minute", prefix="unreachable")
    key = holder()

    assert rates.hit(key)["RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimited):
        rates.hit(key)


def test_a_malformed_default_limit_stops_the_service_from_starting():
    with pytest.raises(SettingsError, match="API_KEY_RATE_LIMIT"):
        Settings.from_env("intake", {"API_KEY_RATE_LIMIT": "plenty"})
    assert Settings.from_env("intake", {}).api_key_rate_limit == "600/minute"


# Commands


def test_the_commands_issue_list_and_revoke_keys(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = run_cli(runtime, list(argv), extra=EXTRA_COMMANDS)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run(
        "create-api-key", "--name", "city-hotline", "--scope", "requests:write", "--scope",
        "open311", "--rate-limit", "60/minute",
    )  # fmt: skip
    issued = json.loads(out)
    assert code == 0
    assert (issued["client"], issued["scopes"]) == ("city-hotline", ["requests:write", "open311"])
    assert issued["api_key"].startswith("rv_")
    assert run("create-api-key", "legacy-console", "--role", "staff")[0] == 0

    code, out, _ = run("list-api-keys")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [entry["name"] for entry in listed] == ["city-hotline", "legacy-console"]
    assert all("api_key" not in entry for entry in listed)

    code, out, _ = run("revoke-api-key", "city-hotline")
    assert code == 0 and json.loads(out)["revoked_at"]
    with runtime().db.read() as session:
        assert clients.key_holder(session, issued["api_key"]) is None

    assert run("revoke-api-key", "nobody")[0:3:2] == (2, "No API client 'nobody'\n")
    code, _, err = run("create-api-key", "--name", "x", "--scope", "admin", "--role", "staff")
    assert code == 2 and "held alone" in err


# The migration


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of this test's own, beside the test run's intake database."""
    with scratch_database(runtime().settings.database_url) as url:
        yield url
        # The helper leaves a SQLite file behind: the next migration test wants it empty.
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)


def test_keys_from_before_scopes_keep_all_their_role_allowed_and_a_downgrade_revokes_narrower_ones(
    scratch_url,
):
    migrations = runtime().migrations
    upgrade(migrations, scratch_url, "0008")
    engine = create_database_engine(scratch_url)
    at = utcnow()
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO api_clients (id, name, role, key_hash, created_at) VALUES "
                    "(1, 'hotline', 'system', 'h1', :at), (2, 'console', 'staff', 'h2', :at)"
                ),
                {"at": at},
            )
        upgrade(migrations, scratch_url, "0009")
        with engine.begin() as connection:
            scopes = dict(connection.execute(text("SELECT name, scopes FROM api_clients")).all())
            connection.execute(
                text(
                    "INSERT INTO api_clients (id, name, role, key_hash, scopes, created_at) "
                    "VALUES (3, 'key-tool', 'admin', 'h3', '[\"admin\"]', :at), "
                    "(4, 'reader', 'system', 'h4', '[\"requests:read\"]', :at)"
                ),
                {"at": at},
            )
        assert set(_as_list(scopes["hotline"])) == set(clients.ROLE_SCOPES["system"])
        assert set(_as_list(scopes["console"])) == set(clients.ROLE_SCOPES["staff"])

        downgrade(migrations, scratch_url, "0008")
        with engine.connect() as connection:
            live = connection.execute(
                text("SELECT name FROM api_clients WHERE revoked_at IS NULL ORDER BY id")
            ).scalars()
            assert list(live) == ["hotline", "console"]
        upgrade(migrations, scratch_url, "head")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM api_clients")).scalar_one() == 4
    finally:
        engine.dispose()


def _as_list(value: Any) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value)
