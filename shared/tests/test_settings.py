"""What the settings refuse before a process starts, in production and elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import DEVELOPMENT_AUTH_SECRET, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "fc6ox1tR6VI-xg1xWKtp9tq3o9lpzSfhAHdO_TU5kdcHtOwMY6AtuFLpqEb6o9Wr"
PRODUCTION = {
    "REDVEST_ENV": "production",
    "REDVEST_AUTH_SECRET": STRONG_SECRET,
    "INTAKE_DATABASE_URL": "postgresql://redvest:db-password@postgres/redvest_intake",
    "BROKER_URL": "redis://redis:6379/0",
}
MISSPELT_PRODUCTION = ["Production", "PRODUCTION", "prod", " production", "production ", ""]
OTHER_UNKNOWN_NAMES = ["dev", "Development", "staging", "testing"]
WEAK_SECRETS = {
    "one repeated character": "a" * 32,
    "two alternating characters": "ab" * 16,
    "a word repeated": "password" * 4,
    "counting digits": "0123456789" * 4,
    "the alphabet in order": "abcdefghijklmnopqrstuvwxyz012345",
    "the alphabet backwards": "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvu",
    "interleaved runs": "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6",
    "a varied fragment repeated": "Xk9#mQ2$vL7!" * 3,
    "a keyboard walk repeated": "1q2w3e4r5t6y7u8i9o0p1q2w3e4r5t6y",
    "one character dominating": "a" * 24 + "bcdefgh1",
}
GENERATED_SECRETS = {
    "openssl rand -hex 16": "211868450593ec1a2eabe610fe97a2bc",
    "openssl rand -hex 32": "add9879e9476a772a5cd16012782d318a419bf118b9ca4eb428775f4da53110a",
    "secrets.token_urlsafe(24)": "tSoIyVoKUIzmV4f4_HxBiJuhqOIwpaAh",
    "secrets.token_urlsafe(48)": STRONG_SECRET,
    "a uuid4": "942b82c2-5ce9-4db9-aa73-ab3f11cb6809",
}


def production(**changes: str | None) -> dict[str, str]:
    """The strong production environment, with settings changed (None removes one)."""
    env = {**PRODUCTION, **changes}
    return {name: value for name, value in env.items() if value is not None}


def refusal(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env("intake", env)
    return refused.value


# Starting


def test_a_strong_production_configuration_loads() -> None:
    settings = Settings.from_env("intake", PRODUCTION)

    assert settings.environment == "production"
    assert settings.auth_secret == STRONG_SECRET
    assert settings.database_url == PRODUCTION["INTAKE_DATABASE_URL"]
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.log_format == "json"


def test_production_takes_the_broker_from_redis_url_too() -> None:
    env = production(BROKER_URL=None, REDIS_URL="redis://redis:6379/1")

    assert Settings.from_env("intake", env).broker_url == "redis://redis:6379/1"


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg", "postgres"])
def test_production_accepts_every_spelling_of_a_postgresql_url(scheme: str) -> None:
    url = f"{scheme}://redvest:db-password@postgres/redvest_intake"

    assert Settings.from_env("intake", production(INTAKE_DATABASE_URL=url)).database_url == url


@pytest.mark.parametrize("secret", GENERATED_SECRETS.values(), ids=GENERATED_SECRETS.keys())
def test_production_accepts_secrets_made_by_the_usual_generators(secret: str) -> None:
    assert Settings.from_env("intake", production(REDVEST_AUTH_SECRET=secret)).auth_secret == secret


@pytest.mark.parametrize("environment", ["development", "test"])
def test_development_and_test_run_on_sqlite_with_the_development_secret(environment: str) -> None:
    settings = Settings.from_env("intake", {"REDVEST_ENV": environment, "LOG_FORMAT": "console"})

    assert settings.environment == environment
    assert settings.auth_secret == DEVELOPMENT_AUTH_SECRET
    assert settings.database_url == "sqlite:///var/intake.db"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"


def test_development_is_the_default_environment() -> None:
    assert Settings.from_env("intake", {}).environment == "development"


def test_outside_production_a_weak_secret_of_32_characters_is_still_taken() -> None:
    assert Settings.from_env("intake", {"REDVEST_AUTH_SECRET": "a" * 32}).auth_secret == "a" * 32


# The environment's name


@pytest.mark.parametrize("environment", MISSPELT_PRODUCTION + OTHER_UNKNOWN_NAMES)
def test_an_unknown_environment_name_is_refused_naming_the_accepted_ones(
    environment: str,
) -> None:
    error = refusal(production(REDVEST_ENV=environment))

    assert error.problems == (
        "REDVEST_ENV must be exactly one of 'development', 'test', 'production' "
        f"(lower case, no spaces), got {environment!r}",
    )


@pytest.mark.parametrize("environment", MISSPELT_PRODUCTION)
def test_a_misspelt_production_never_falls_back_to_the_development_secret(
    environment: str,
) -> None:
    error = refusal({"REDVEST_ENV": environment})

    assert any(problem.startswith("REDVEST_ENV ") for problem in error.problems)
    assert any(problem.startswith("REDVEST_AUTH_SECRET must be set") for problem in error.problems)


@pytest.mark.parametrize("environment", MISSPELT_PRODUCTION)
def test_a_misspelt_production_with_the_development_secret_on_sqlite_is_refused(
    environment: str,
) -> None:
    env = {"REDVEST_ENV": environment, "REDVEST_AUTH_SECRET": DEVELOPMENT_AUTH_SECRET}

    problems = refusal(env).problems

    assert any("public development secret" in problem for problem in problems)


# The secret


def test_production_refuses_a_missing_secret() -> None:
    (problem,) = refusal(production(REDVEST_AUTH_SECRET=None)).problems

    assert problem.startswith("REDVEST_AUTH_SECRET must be set in production to a random secret")


def test_production_refuses_an_empty_secret() -> None:
    (problem,) = refusal(production(REDVEST_AUTH_SECRET="")).problems

    assert problem.startswith("REDVEST_AUTH_SECRET must be set in production")


@pytest.mark.parametrize(
    "database_url",
    ["postgresql://redvest:db-password@postgres/redvest_intake", "sqlite:///var/intake.db"],
    ids=["on postgresql", "on sqlite"],
)
def test_production_refuses_the_public_development_secret_whatever_the_database(
    database_url: str,
) -> None:
    env = production(REDVEST_AUTH_SECRET=DEVELOPMENT_AUTH_SECRET, INTAKE_DATABASE_URL=database_url)

    problems = refusal(env).problems

    assert any(
        problem.startswith("REDVEST_AUTH_SECRET must not be the public development secret")
        for problem in problems
    )


def test_production_refuses_a_secret_shorter_than_32_characters() -> None:
    (problem,) = refusal(production(REDVEST_AUTH_SECRET=STRONG_SECRET[:31])).problems

    assert problem.startswith("REDVEST_AUTH_SECRET must be at least 32 characters, got 31")


@pytest.mark.parametrize("secret", WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_production_refuses_a_weak_secret(secret: str) -> None:
    (problem,) = refusal(production(REDVEST_AUTH_SECRET=secret)).problems

    assert problem.startswith("REDVEST_AUTH_SECRET is too weak for production (")


def test_a_weak_secret_is_told_what_gives_it_away() -> None:
    (problem,) = refusal(production(REDVEST_AUTH_SECRET="a" * 32)).problems

    assert "only 1 distinct characters" in problem
    assert "0.0 bits of entropy per character" in problem


def test_the_refusal_of_a_secret_never_repeats_the_secret() -> None:
    weak = "Xk9#mQ2$vL7!" * 3

    assert "Xk9#" not in str(refusal(production(REDVEST_AUTH_SECRET=weak)))


def test_outside_production_the_development_secret_never_guards_a_server_database() -> None:
    env = {"REDVEST_ENV": "test", "INTAKE_DATABASE_URL": "postgresql://postgres/intake"}

    (problem,) = refusal(env).problems

    assert problem.startswith("REDVEST_AUTH_SECRET must be set for a server database")


def test_outside_production_a_short_secret_is_refused() -> None:
    (problem,) = refusal({"REDVEST_AUTH_SECRET": "short"}).problems

    assert problem == "REDVEST_AUTH_SECRET must be at least 32 characters"


# The other development defaults


@pytest.mark.parametrize(
    ("database_url", "found"),
    [(None, "unset"), ("sqlite:////srv/redvest/intake.db", "a sqlite URL")],
    ids=["the default sqlite file", "an explicit sqlite file"],
)
def test_production_refuses_sqlite(database_url: str | None, found: str) -> None:
    (problem,) = refusal(production(INTAKE_DATABASE_URL=database_url)).problems

    assert problem.startswith("INTAKE_DATABASE_URL must be a PostgreSQL URL")
    assert f"got {found}:" in problem


def test_the_refusal_of_a_database_url_never_repeats_its_password() -> None:
    env = production(INTAKE_DATABASE_URL="mysql://redvest:hunter2@db/intake")

    (problem,) = refusal(env).problems

    assert "got a mysql URL" in problem
    assert "hunter2" not in problem


def test_production_refuses_to_leave_the_broker_to_its_development_default() -> None:
    (problem,) = refusal(production(BROKER_URL=None)).problems

    assert problem.startswith("BROKER_URL (or REDIS_URL) must be set in production")


def test_production_refuses_console_logs() -> None:
    (problem,) = refusal(production(LOG_FORMAT="console")).problems

    assert problem.startswith("LOG_FORMAT must be 'json' in production, got 'console'")


# How refusals read


@pytest.mark.parametrize(
    ("changes", "setting", "accepted"),
    [
        pytest.param(
            {"REDVEST_ENV": "Production"},
            "REDVEST_ENV",
            "'development', 'test', 'production'",
            id="an unknown environment",
        ),
        pytest.param(
            {"REDVEST_AUTH_SECRET": None},
            "REDVEST_AUTH_SECRET",
            "at least 32 characters",
            id="no secret",
        ),
        pytest.param(
            {"REDVEST_AUTH_SECRET": "b" * 40},
            "REDVEST_AUTH_SECRET",
            "openssl rand -hex 32",
            id="a weak secret",
        ),
        pytest.param(
            {"INTAKE_DATABASE_URL": None}, "INTAKE_DATABASE_URL", "postgresql://", id="sqlite"
        ),
        pytest.param({"BROKER_URL": None}, "BROKER_URL", "redis:// or amqp://", id="no broker"),
        pytest.param({"LOG_FORMAT": "console"}, "LOG_FORMAT", "'json'", id="console logs"),
        pytest.param(
            {"LOG_FORMAT": "xml"}, "LOG_FORMAT", "'json' or 'console'", id="an unknown log format"
        ),
        pytest.param(
            {"RELAY_BATCH_SIZE": "lots"}, "RELAY_BATCH_SIZE", "an integer", id="a malformed number"
        ),
    ],
)
def test_a_refusal_names_the_setting_and_what_would_be_accepted(
    changes: dict[str, str | None], setting: str, accepted: str
) -> None:
    message = str(refusal(production(**changes)))

    assert message.startswith(setting)
    assert accepted in message


def test_every_problem_is_listed_in_one_refusal() -> None:
    env = {
        "REDVEST_ENV": "production",
        "REDVEST_AUTH_SECRET": "short",
        "LOG_FORMAT": "console",
        "MAX_RETRIES": "many",
    }

    error = refusal(env)

    assert [problem.split(" ", 1)[0] for problem in error.problems] == [
        "INTAKE_DATABASE_URL",
        "BROKER_URL",
        "REDVEST_AUTH_SECRET",
        "LOG_FORMAT",
        "MAX_RETRIES",
    ]
    assert str(error).startswith("5 problems with the settings: INTAKE_DATABASE_URL ")
    assert "\n" not in str(error)


def test_a_command_that_cannot_start_says_why_in_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {"REDVEST_ENV": "Production", "REDVEST_VAR_DIR": str(tmp_path)}

    finished = subprocess.run(
        [sys.executable, "-m", "services.intake", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert finished.stderr.startswith("cannot start: ")
    assert finished.stderr.count("\n") == 1
    assert "REDVEST_ENV must be exactly one of" in finished.stderr
    assert not list(tmp_path.iterdir())


def test_webhook_trusted_hosts_are_a_clean_list_of_lower_case_names() -> None:
    settings = Settings.from_env("intake", {"WEBHOOK_TRUSTED_HOSTS": " Hooks.Example.org , ,b.lan"})

    assert settings.webhook_trusted_hosts == ("hooks.example.org", "b.lan")
    assert Settings.from_env("intake", {}).webhook_trusted_hosts == ()


def test_the_days_to_confirm_and_to_reopen_and_the_fate_of_unconfirmed_hours_are_checked() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(
            "points",
            {"CONFIRM_WITHIN_DAYS": "0", "REOPEN_WITHIN_DAYS": "400", "UNCONFIRMED_EARNINGS": "x"},
        )

    assert len(refused.value.problems) == 2
    assert Settings.from_env("points", {"CONFIRM_WITHIN_DAYS": "3"}).confirm_within_days == 3


@pytest.mark.parametrize(
    ("limit", "why"),
    [
        ("plenty", "not one limit"),
        ("10/second;100/minute", "not one limit"),
        ("0/second", "count must be from 1"),
        ("10 per 9999 days", "window must be from 1 second to 30 days"),
        ("1/0 second", "window must be from 1 second"),
    ],
)
def test_the_default_key_rate_limit_is_one_limit_within_bounds(limit: str, why: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env("intake", {"API_KEY_RATE_LIMIT": limit})

    assert "API_KEY_RATE_LIMIT must be a count of calls per window" in str(refused.value)
    assert why in str(refused.value)


@pytest.mark.parametrize("limit", ["600/minute", "20 per second", "1000/5 minutes", "1/day"])
def test_a_key_rate_limit_written_as_the_examples_is_taken(limit: str) -> None:
    assert Settings.from_env("intake", {"API_KEY_RATE_LIMIT": limit}).api_key_rate_limit == limit
