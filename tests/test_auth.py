"""Tokens for people and API keys for systems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared.auth import (
    TOKEN_ISSUER,
    AuthenticationError,
    CachedKeyLookup,
    Principal,
    issue_token,
    verify_token,
)
from shared.settings import Settings, SettingsError

SECRET = "a-test-secret-that-is-long-enough-to-sign-with"


def test_a_token_names_its_person_and_role():
    token = issue_token(SECRET, subject="v1", role="volunteer")
    assert verify_token(SECRET, token, service="points") == Principal("v1", "volunteer")


def test_a_token_is_good_only_at_the_services_it_names():
    token = issue_token(SECRET, subject="v1", role="volunteer", audience=("notify",))
    assert verify_token(SECRET, token, service="notify") == Principal("v1", "volunteer")
    with pytest.raises(AuthenticationError, match=r"(?i)audience"):
        verify_token(SECRET, token, service="points")


def test_an_expired_token_is_refused():
    claims = {
        "sub": "v1",
        "role": "volunteer",
        "iss": TOKEN_ISSUER,
        "aud": ["points"],
        "exp": datetime.now(UTC) - timedelta(seconds=5),
    }
    with pytest.raises(AuthenticationError, match="expired"):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"), service="points")


def test_a_token_without_an_expiry_is_refused():
    claims = {"sub": "v1", "role": "staff", "iss": TOKEN_ISSUER, "aud": ["points"]}
    with pytest.raises(AuthenticationError, match="exp"):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"), service="points")


def test_a_token_cannot_claim_the_system_role_of_api_clients():
    claims = {
        "sub": "x",
        "role": "system",
        "iss": TOKEN_ISSUER,
        "aud": ["points"],
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    with pytest.raises(AuthenticationError, match="role is not for tokens"):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"), service="points")
    with pytest.raises(ValueError):
        issue_token(SECRET, subject="x", role="system")


def test_a_token_signed_with_another_key_or_algorithm_is_refused():
    forged = issue_token(
        "another-secret-that-is-also-long-enough-to-sign", subject="v1", role="staff"
    )
    with pytest.raises(AuthenticationError):
        verify_token(SECRET, forged, service="points")
    unsigned = jwt.encode(
        {
            "sub": "v1",
            "role": "staff",
            "iss": TOKEN_ISSUER,
            "aud": ["points"],
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        None,
        algorithm="none",
    )
    with pytest.raises(AuthenticationError):
        verify_token(SECRET, unsigned, service="points")


def claims(**changes):
    return {
        "sub": "v1",
        "role": "staff",
        "iss": TOKEN_ISSUER,
        "aud": ["points"],
        "exp": datetime.now(UTC) + timedelta(hours=1),
        **changes,
    }


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "The bearer credentials are not a token this service can read"),
        ("a.b.c", "The bearer credentials are not a token this service can read"),
        (jwt.encode(claims(iss="elsewhere"), SECRET, algorithm="HS256"), "not issued by"),
        (jwt.encode(claims(role=["staff"]), SECRET, algorithm="HS256"), "role is not for"),
        (jwt.encode(claims(role={"a": 1}), SECRET, algorithm="HS256"), "role is not for"),
        (jwt.encode(claims(sub=""), SECRET, algorithm="HS256"), "subject"),
        (jwt.encode(claims(sub={"id": 1}), SECRET, algorithm="HS256"), "subject"),
        (jwt.encode(claims(), SECRET * 2, algorithm="HS512"), "only algorithm"),
        (jwt.encode(claims(), SECRET + "x", algorithm="HS256"), "signature does not match"),
    ],
    ids=[
        "garbage",
        "three parts",
        "issuer",
        "role list",
        "role object",
        "blank subject",
        "subject object",
        "algorithm",
        "signature",
    ],
)
def test_a_refused_token_is_told_why_in_a_plain_sentence(token, reason):
    with pytest.raises(AuthenticationError) as refused:
        verify_token(SECRET, token, service="points")

    message = str(refused.value)
    assert reason in message
    assert message[0].isupper() and message.endswith(".")
    assert "Invalid" not in message and "decode" not in message.lower()


def test_a_known_api_key_is_remembered_until_its_time_is_up(monkeypatch):
    calls: list[str] = []
    known = {"rv_key": Principal("client:hotline", "system")}

    def lookup(key: str) -> Principal | None:
        calls.append(key)
        return known.get(key)

    clock = [1000.0]
    monkeypatch.setattr("shared.auth.time.monotonic", lambda: clock[0])
    cached = CachedKeyLookup(lookup, ttl_s=30)
    assert cached("rv_key") == Principal("client:hotline", "system")
    assert cached("rv_key") is not None
    assert len(calls) == 1
    del known["rv_key"]  # revoked
    clock[0] += 31
    assert cached("rv_key") is None
    assert cached("rv_unknown") is None
    assert cached("rv_unknown") is None
    assert calls == ["rv_key", "rv_key", "rv_unknown", "rv_unknown"]


def test_production_refuses_to_start_without_a_secret():
    with pytest.raises(SettingsError, match="REDVEST_AUTH_SECRET"):
        Settings.from_env("intake", {"REDVEST_ENV": "production"})


def test_the_public_development_secret_never_guards_a_server_database():
    with pytest.raises(SettingsError, match="development"):
        Settings.from_env("intake", {"INTAKE_DATABASE_URL": "postgresql://db/intake"})


def test_a_short_secret_is_refused():
    with pytest.raises(SettingsError, match="32"):
        Settings.from_env("intake", {"REDVEST_AUTH_SECRET": "short"})


def test_malformed_numbers_in_settings_name_the_variable():
    with pytest.raises(SettingsError, match="RELAY_BATCH_SIZE"):
        Settings.from_env("intake", {"RELAY_BATCH_SIZE": "lots"})
