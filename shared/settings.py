"""Typed settings, read from the environment once per process.

``REDVEST_ENV`` is exactly ``development`` (the default), ``test`` or ``production``. Any other
value is refused, and the other settings are then judged as for production: a misspelt
production set-up must never fall back to development defaults.

Production refuses to start when:

- ``REDVEST_AUTH_SECRET`` is unset, is the public development secret, is shorter than 32
  characters, or is weak: fewer than 8 distinct characters, less than 2.5 bits of Shannon
  entropy per character, characters that step evenly (``abcd...``, ``a1b2...``: less than 2.5
  bits of entropy in the steps between neighbours) or a repeated fragment (fewer than three
  quarters of its three-character fragments differ);
- ``<SERVICE>_DATABASE_URL`` is unset (the SQLite file under ``REDVEST_VAR_DIR``) or is not a
  PostgreSQL URL;
- ``BROKER_URL`` and ``REDIS_URL`` are both unset, leaving the development broker
  ``redis://127.0.0.1:6379/0``;
- ``LOG_FORMAT`` is ``console``: production logs are JSON lines that carry correlation ids;
- ``CORS_ORIGINS`` holds ``*`` (any web page could then call the API with a user's token).

In every environment an origin of ``CORS_ORIGINS`` that is not ``http(s)://host[:port]`` is
refused: browsers send exactly that, so anything else would never match.

Elsewhere an unset ``REDVEST_AUTH_SECRET`` means the development secret, which only serves SQLite,
and a secret shorter than 32 characters is refused. Every problem found is listed in one
``SettingsError``, so an operator fixes them all in one go.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

from limits import parse

ENVIRONMENTS = ("development", "test", "production")
DEVELOPMENT_AUTH_SECRET = "redvest-development-secret-do-not-use-in-production"
DEVELOPMENT_BROKER_URL = "redis://127.0.0.1:6379/0"
POSTGRESQL_SCHEMES = ("postgresql", "postgres")
PUBLISH_MODES = ("sync", "background", "off")
# An origin as browsers send it: scheme, host and port only (no path, no trailing slash).
ORIGIN = re.compile(r"https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?", re.IGNORECASE)
MIN_SECRET_LENGTH = 32
# Set below what random secrets score: of 200 000 made by `openssl rand -hex 16` (the weakest
# usual kind) none scored under 8 distinct characters, 2.7 bits per character or per step, or
# 85 % distinct fragments.
MIN_SECRET_DISTINCT_CHARACTERS = 8
MIN_SECRET_BITS_PER_CHARACTER = 2.5
MIN_SECRET_DISTINCT_FRAGMENT_SHARE = 0.75
STRONG_SECRET = (
    f"a random secret of at least {MIN_SECRET_LENGTH} characters with at least "
    f"{MIN_SECRET_DISTINCT_CHARACTERS} distinct characters, at least "
    f"{MIN_SECRET_BITS_PER_CHARACTER} bits of Shannon entropy per character and no evenly "
    "stepping run or repeated fragment, such as the output of `openssl rand -hex 32`"
)


@dataclass(frozen=True)
class Variable:
    """An environment variable the settings are read from, as the configuration reference
    (``python -m devtools.config_reference``) shows it."""

    name: str
    # The value an unset variable stands for, as it would be written; None: nothing.
    default: str | None
    meaning: str
    # The services whose rules read it; empty: every service's processes.
    services: tuple[str, ...] = ()

    @property
    def is_per_service(self) -> bool:
        return "{SERVICE}" in self.name

    def of(self, service: str) -> str:
        """The variable's name for ``service`` (``{SERVICE}_DATABASE_URL``: INTAKE_...)."""
        return self.name.replace("{SERVICE}", service.upper())


# Every variable Settings.from_env reads, and only those: reading one not declared here fails.
VARIABLES = (
    Variable(
        "REDVEST_ENV",
        "development",
        "exactly `development`, `test` or `production` (lower case); anything else is refused "
        "and the other settings are judged as for production",
    ),
    Variable(
        "{SERVICE}_DATABASE_URL",
        "sqlite:///{REDVEST_VAR_DIR}/{service}.db",
        "the service's own database; production needs `postgresql://user:password@host/db`",
    ),
    Variable("REDVEST_VAR_DIR", "var", "where the default SQLite files live"),
    Variable(
        "BROKER_URL",
        None,
        "the broker, `redis://` or `amqp://` (RabbitMQ); unset means "
        f"`{DEVELOPMENT_BROKER_URL}`, which production refuses",
    ),
    Variable("REDIS_URL", None, "read in place of `BROKER_URL` when that is unset"),
    Variable(
        "BROKER_NAMESPACE",
        "dramatiq",
        "the Redis key prefix, to share one Redis between deployments",
    ),
    Variable(
        "BROKER_HEARTBEAT_TIMEOUT_MS",
        "5000",
        "a worker silent this long counts as dead and its unacknowledged messages are handed "
        "out again (Redis); at least three times `BROKER_IDLE_POLL_MS`",
    ),
    Variable(
        "BROKER_MAINTENANCE_CHANCE",
        "500000",
        "chance per million Redis commands of a pass that hands back dead workers' messages",
    ),
    Variable(
        "BROKER_IDLE_POLL_MS",
        "1000",
        "the longest an idle worker waits on Redis before fetching again (a message wakes it "
        "at once)",
    ),
    Variable(
        "REDVEST_AUTH_SECRET",
        None,
        f"signs bearer tokens; {STRONG_SECRET}. Unset means the public development secret, "
        "which serves SQLite only and which production refuses",
    ),
    Variable("LOG_LEVEL", "INFO", "the lowest level logged"),
    Variable(
        "LOG_FORMAT",
        "json",
        "`json` (one object a line with correlation ids; production) or `console` for humans",
    ),
    Variable(
        "PUBLISH_AT_COMMIT",
        "sync",
        "who publishes a committed event: the committing thread (`sync`), a thread of the "
        "process (`background`) or only the relay (`off`); `off` is the default under "
        "`REDVEST_ENV=test`",
    ),
    Variable(
        "RELAY_INTERVAL_S",
        "1",
        "seconds between the relay's sweeps of the outbox (default `0.1` with "
        "`PUBLISH_AT_COMMIT=off`)",
    ),
    Variable("RELAY_BATCH_SIZE", "100", "outbox rows the relay publishes at a time"),
    Variable(
        "RELAY_GRACE_S",
        "5",
        "how old a row must be before the relay publishes it, leaving younger ones to the "
        "process that committed them (default `0` with `PUBLISH_AT_COMMIT=off`)",
    ),
    Variable(
        "SCHEDULER_INTERVAL_S",
        "1",
        "the longest the scheduler sleeps; it wakes sooner when a timer or job is due",
    ),
    Variable(
        "MAX_RETRIES",
        "20",
        "retries of a transient failure (about an hour) before a message is dead-lettered, and "
        "attempts of a failing timer",
    ),
    Variable(
        "CONFIRM_WITHIN_DAYS",
        "7",
        "days (1 to 366) a completed request waits for the resident's confirmation: then intake "
        "closes it unconfirmed and points settles the hours held for it by "
        "`UNCONFIRMED_EARNINGS`",
        services=("intake", "points"),
    ),
    Variable(
        "UNCONFIRMED_EARNINGS",
        "void",
        "what becomes of hours still unconfirmed after `CONFIRM_WITHIN_DAYS`: `void` (no points "
        "are minted on the volunteer's word alone) or `post` (credited all the same)",
        services=("points",),
    ),
    Variable(
        "POINTS_EXPIRE_AFTER_DAYS",
        None,
        "days (1 to 3660) after which points credited to a member and not used since expire to "
        "the bank, oldest first (spending, gifts and donations use the oldest points first); "
        "unset: points never expire",
        services=("points",),
    ),
    Variable(
        "POINTS_EXPIRY_NOTICE_DAYS",
        "30",
        "days (1 to 366) ahead that a member is told of points about to expire; none expire untold",
        services=("points",),
    ),
    Variable(
        "REOPEN_WITHIN_DAYS",
        "14",
        "days after completion during which a request may be reopened; it goes back to the "
        "same volunteer",
        services=("intake",),
    ),
    Variable(
        "WEBHOOK_TRUSTED_HOSTS",
        None,
        "comma-separated host names whose webhook receivers may be reached over plain http or "
        "at private addresses (production otherwise allows https to public addresses only)",
        services=("intake",),
    ),
    Variable(
        "CORS_ORIGINS",
        None,
        "comma-separated origins (`https://console.example.org`, `http://localhost:5173`) whose "
        "web pages may call the HTTP APIs from a browser; unset: no CORS headers at all. `*` "
        "(any origin) serves development only",
    ),
    Variable(
        "API_KEY_RATE_LIMIT",
        "600/minute",
        "calls an API key may make in a window (`600/minute`, `20/second`) unless the key has "
        "a limit of its own; counted per key in the broker's Redis and shared by every web "
        "process (with RabbitMQ each process counts alone), limits of 400 or more a lease of "
        "1 % (4 to 20 calls) at a time; beyond it 429 with `Retry-After`",
        services=("intake",),
    ),
    Variable(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "prometheus_client's shared directory for a process's metrics; deploy/gunicorn.conf.py "
        "sets it for the web workers when `REDVEST_METRICS_DIR` is set",
    ),
)
_DECLARED = {variable.name: variable for variable in VARIABLES}


# A rate limit: a count of calls, at most RATE_LIMIT_MOST, per a window of a number of seconds,
# minutes, hours or days, at most RATE_WINDOW_LONGEST.
RATE_LIMIT_MOST = 1_000_000
RATE_WINDOW_LONGEST = timedelta(days=30)
RATE_LIMIT_FORM = (
    "a count of calls per window, like '600/minute', '20 per second' or '1000/5 minutes' "
    f"(second, minute, hour or day; a count from 1 to {RATE_LIMIT_MOST:,}, a window of at most "
    f"{RATE_WINDOW_LONGEST.days} days)"
)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE_LIMIT = re.compile(
    r"(?P<count>[0-9]{1,7}) ?(?:/|per) ?(?:(?P<multiple>[0-9]{1,4}) ?)?"
    r"(?P<unit>second|minute|hour|day)s?"
)


def rate_limit_refusal(rate_limit: str) -> str | None:
    """Why ``rate_limit`` is not one a key may be given; None when it is. The whole text must
    be one limit (the limiter would apply only the first of several), its count and window
    within RATE_LIMIT_MOST and RATE_WINDOW_LONGEST, and read by the limiter as written."""
    written = _RATE_LIMIT.fullmatch(rate_limit)
    if written is None:
        return "it is not one limit written as the examples are"
    count, multiple, unit = int(written["count"]), int(written["multiple"] or 1), written["unit"]
    if not 1 <= count <= RATE_LIMIT_MOST:
        return f"its count must be from 1 to {RATE_LIMIT_MOST:,}"
    window = multiple * _UNIT_SECONDS[unit]
    if not multiple >= 1 or window > RATE_WINDOW_LONGEST.total_seconds():
        return f"its window must be from 1 second to {RATE_WINDOW_LONGEST.days} days"
    try:
        limit = parse(rate_limit)
    except ValueError:
        return "the limiter cannot read it"
    if (limit.amount, limit.get_expiry()) != (count, window):
        return "the limiter reads it otherwise"
    return None


def _declared(name: str) -> Variable:
    declared = _DECLARED.get(name)
    if declared is None:
        raise KeyError(f"{name} is not declared in shared.settings.VARIABLES")
    return declared


def _get(env: Mapping[str, str], name: str) -> str:
    """The variable as set, else its declared default (a set but empty one stays empty)."""
    value = env.get(name)
    return (_declared(name).default or "") if value is None else value


def _set(env: Mapping[str, str], name: str) -> str | None:
    """The variable as set, or None; for settings whose absence means something of its own."""
    _declared(name)
    return env.get(name) or None


class SettingsError(RuntimeError):
    """Settings are missing, malformed or unsafe; the process must not start."""

    def __init__(self, *problems: str) -> None:
        self.problems = problems
        # One line, so a process that cannot start says why in one line of its stderr.
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            super().__init__(f"{len(problems)} problems with the settings: " + "; ".join(problems))


def _int(env: Mapping[str, str], name: str, problems: list[str]) -> int:
    default = int(_declared(name).default or 0)
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        problems.append(f"{name} must be an integer, got {raw!r}")
        return default


def _float(
    env: Mapping[str, str], name: str, problems: list[str], *, default: float | None = None
) -> float:
    """The variable as a number; ``default`` replaces the declared one where it depends on
    another setting."""
    if default is None:
        default = float(_declared(name).default or 0)
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        problems.append(f"{name} must be a number, got {raw!r}")
        return default


def _bits_per_symbol(symbols: Sequence[Hashable]) -> float:
    """Shannon entropy of the symbols' frequencies in the sequence, in bits per symbol."""
    total = len(symbols)
    return -sum(n / total * math.log2(n / total) for n in Counter(symbols).values())


def _secret_weaknesses(secret: str) -> list[str]:
    """What makes a secret of sufficient length guessable; empty when nothing does."""
    weaknesses = []
    distinct = len(set(secret))
    if distinct < MIN_SECRET_DISTINCT_CHARACTERS:
        weaknesses.append(f"only {distinct} distinct characters")
    bits = _bits_per_symbol(secret)
    if bits < MIN_SECRET_BITS_PER_CHARACTER:
        weaknesses.append(f"{bits:.1f} bits of entropy per character")
    # Character frequencies alone rate "abcdef..." as well as a random string; the steps
    # between neighbours and the recurring fragments give such patterns away.
    steps = [ord(right) - ord(left) for left, right in pairwise(secret)]
    if _bits_per_symbol(steps) < MIN_SECRET_BITS_PER_CHARACTER:
        weaknesses.append("characters that step evenly")
    fragments = [secret[i : i + 3] for i in range(len(secret) - 2)]
    if len(set(fragments)) < MIN_SECRET_DISTINCT_FRAGMENT_SHARE * len(fragments):
        weaknesses.append("a repeated fragment")
    return weaknesses


def _auth_secret(raw: str, *, is_production: bool, database_url: str, problems: list[str]) -> str:
    """The secret that signs tokens, or the development one where that is allowed."""
    if is_production:
        if not raw:
            problems.append(f"REDVEST_AUTH_SECRET must be set in production to {STRONG_SECRET}")
        elif raw == DEVELOPMENT_AUTH_SECRET:
            problems.append(
                "REDVEST_AUTH_SECRET must not be the public development secret in production: "
                f"use {STRONG_SECRET}"
            )
        elif len(raw) < MIN_SECRET_LENGTH:
            problems.append(
                f"REDVEST_AUTH_SECRET must be at least {MIN_SECRET_LENGTH} characters, got "
                f"{len(raw)}: use {STRONG_SECRET}"
            )
        elif weaknesses := _secret_weaknesses(raw):
            problems.append(
                f"REDVEST_AUTH_SECRET is too weak for production ({', '.join(weaknesses)}): "
                f"use {STRONG_SECRET}"
            )
        return raw
    secret = raw or DEVELOPMENT_AUTH_SECRET
    if secret == DEVELOPMENT_AUTH_SECRET and not database_url.startswith("sqlite"):
        problems.append(
            "REDVEST_AUTH_SECRET must be set for a server database: the development "
            "secret is public and only serves the embedded SQLite set-up"
        )
    elif len(secret) < MIN_SECRET_LENGTH:
        problems.append(f"REDVEST_AUTH_SECRET must be at least {MIN_SECRET_LENGTH} characters")
    return secret


def _cors_origins(raw: str, *, is_production: bool, problems: list[str]) -> tuple[str, ...]:
    """The origins allowed to call from a browser, in lower case; ``*`` for any."""
    origins = tuple(origin.strip().lower() for origin in raw.split(",") if origin.strip())
    if "*" in origins:
        if is_production:
            problems.append(
                "CORS_ORIGINS must name each console's origin in production, not '*': any web "
                "page could otherwise call the API with the credentials of whoever visits it"
            )
        return ("*",)
    malformed = [origin for origin in origins if not ORIGIN.fullmatch(origin)]
    if malformed:
        problems.append(
            "CORS_ORIGINS must be comma-separated origins of the form http(s)://host[:port], "
            "as a browser sends them (no path, no trailing slash), got "
            + ", ".join(repr(origin) for origin in malformed)
        )
    return origins


@dataclass(frozen=True)
class Settings:
    """What every service needs to run; each service names its own prefix."""

    service: str
    environment: str
    database_url: str
    broker_url: str
    broker_namespace: str
    broker_heartbeat_timeout_ms: int
    broker_maintenance_chance: int
    broker_idle_poll_ms: int
    auth_secret: str
    log_level: str
    log_format: str
    relay_interval_s: float
    relay_batch_size: int
    relay_grace_s: float
    publish_at_commit: str
    scheduler_interval_s: float
    max_retries: int
    prometheus_multiproc_dir: str | None
    confirm_within_days: int = 7
    reopen_within_days: int = 14
    unconfirmed_earnings: str = "void"
    webhook_trusted_hosts: tuple[str, ...] = ()
    points_expire_after_days: int | None = None
    points_expiry_notice_days: int = 30
    api_key_rate_limit: str = "600/minute"
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        problems: list[str] = []
        environment = _get(env, "REDVEST_ENV")
        if environment not in ENVIRONMENTS:
            problems.append(
                "REDVEST_ENV must be exactly one of "
                + ", ".join(repr(name) for name in ENVIRONMENTS)
                + f" (lower case, no spaces), got {environment!r}"
            )
        # An unknown name may be a misspelt "production": judge it as strictly.
        is_production = environment not in ("development", "test")

        database_setting = _declared("{SERVICE}_DATABASE_URL").of(service)
        var_dir = Path(_get(env, "REDVEST_VAR_DIR"))
        database_url = env.get(database_setting) or f"sqlite:///{var_dir / service}.db"
        scheme = database_url.split("://", 1)[0] if "://" in database_url else ""
        if is_production and scheme.split("+", 1)[0].lower() not in POSTGRESQL_SCHEMES:
            # Only the scheme: the rest of the URL may hold a password.
            found = f"a {scheme or 'malformed'} URL" if env.get(database_setting) else "unset"
            problems.append(
                f"{database_setting} must be a PostgreSQL URL (postgresql://user:password@host/"
                f"database) in production, got {found}: SQLite serves development and tests"
            )

        configured_broker_url = _set(env, "BROKER_URL") or _set(env, "REDIS_URL")
        if is_production and not configured_broker_url:
            problems.append(
                "BROKER_URL (or REDIS_URL) must be set in production to the broker's redis:// "
                f"or amqp:// URL, not left to the development default {DEVELOPMENT_BROKER_URL}"
            )

        auth_secret = _auth_secret(
            _set(env, "REDVEST_AUTH_SECRET") or "",
            is_production=is_production,
            database_url=database_url,
            problems=problems,
        )

        log_format = _get(env, "LOG_FORMAT")
        if log_format not in {"json", "console"}:
            problems.append(f"LOG_FORMAT must be 'json' or 'console', got {log_format!r}")
        elif is_production and log_format == "console":
            problems.append(
                "LOG_FORMAT must be 'json' in production, got 'console': log collectors need "
                "one JSON object a line with its correlation id"
            )

        # Tests drive the relay themselves and read what was staged; every other process
        # publishes its events the moment they commit, and the relay only sweeps up behind.
        publish_at_commit = _get(env, "PUBLISH_AT_COMMIT")
        if "PUBLISH_AT_COMMIT" not in env and environment == "test":
            publish_at_commit = "off"
        if publish_at_commit not in PUBLISH_MODES:
            problems.append(
                "PUBLISH_AT_COMMIT must be one of "
                + ", ".join(repr(mode) for mode in PUBLISH_MODES)
                + f", got {publish_at_commit!r}"
            )
        at_commit = publish_at_commit != "off"
        relay_interval_s = _float(
            env, "RELAY_INTERVAL_S", problems, default=None if at_commit else 0.1
        )
        relay_batch_size = _int(env, "RELAY_BATCH_SIZE", problems)
        relay_grace_s = _float(env, "RELAY_GRACE_S", problems, default=None if at_commit else 0.0)
        if relay_interval_s <= 0 or relay_batch_size < 1 or relay_grace_s < 0:
            problems.append(
                "RELAY_INTERVAL_S must be above 0, RELAY_BATCH_SIZE at least 1 and "
                "RELAY_GRACE_S not below 0"
            )
        # A killed worker's messages come back once its heartbeat is this old and a
        # maintenance pass runs on its queue; dramatiq's defaults make that take minutes. A
        # live worker refreshes its heartbeat at least every BROKER_IDLE_POLL_MS.
        broker_heartbeat_timeout_ms = _int(env, "BROKER_HEARTBEAT_TIMEOUT_MS", problems)
        broker_maintenance_chance = _int(env, "BROKER_MAINTENANCE_CHANCE", problems)
        broker_idle_poll_ms = _int(env, "BROKER_IDLE_POLL_MS", problems)
        if broker_heartbeat_timeout_ms < 3 * broker_idle_poll_ms:
            problems.append(
                "BROKER_HEARTBEAT_TIMEOUT_MS must be at least three times BROKER_IDLE_POLL_MS: "
                "an idle worker would otherwise pass for dead and have its messages handed out"
            )
        max_retries = _int(env, "MAX_RETRIES", problems)
        confirm_within_days = _int(env, "CONFIRM_WITHIN_DAYS", problems)
        reopen_within_days = _int(env, "REOPEN_WITHIN_DAYS", problems)
        if not 1 <= confirm_within_days <= 366 or not 1 <= reopen_within_days <= 366:
            problems.append("CONFIRM_WITHIN_DAYS and REOPEN_WITHIN_DAYS must be 1 to 366")
        unconfirmed_earnings = _get(env, "UNCONFIRMED_EARNINGS")
        if unconfirmed_earnings not in ("void", "post"):
            problems.append(
                f"UNCONFIRMED_EARNINGS must be 'void' or 'post', got {unconfirmed_earnings!r}"
            )
        points_expire_after_days = (
            _int(env, "POINTS_EXPIRE_AFTER_DAYS", problems)
            if _set(env, "POINTS_EXPIRE_AFTER_DAYS")
            else None
        )
        points_expiry_notice_days = _int(env, "POINTS_EXPIRY_NOTICE_DAYS", problems)
        if points_expire_after_days is not None and not 1 <= points_expire_after_days <= 3660:
            problems.append("POINTS_EXPIRE_AFTER_DAYS must be 1 to 3660, or unset for never")
        if not 1 <= points_expiry_notice_days <= 366:
            problems.append("POINTS_EXPIRY_NOTICE_DAYS must be 1 to 366")
        webhook_trusted_hosts = tuple(
            host.strip().lower()
            for host in (_set(env, "WEBHOOK_TRUSTED_HOSTS") or "").split(",")
            if host.strip()
        )
        cors_origins = _cors_origins(
            _set(env, "CORS_ORIGINS") or "", is_production=is_production, problems=problems
        )
        api_key_rate_limit = _get(env, "API_KEY_RATE_LIMIT")
        why = rate_limit_refusal(api_key_rate_limit)
        if why is not None:
            problems.append(
                f"API_KEY_RATE_LIMIT must be {RATE_LIMIT_FORM}; {api_key_rate_limit[:40]!r} is "
                f"not one, as {why}"
            )
        scheduler_interval_s = _float(env, "SCHEDULER_INTERVAL_S", problems)
        if scheduler_interval_s <= 0:
            problems.append("SCHEDULER_INTERVAL_S must be above 0")
        if problems:
            raise SettingsError(*problems)
        return cls(
            service=service,
            environment=environment,
            database_url=database_url,
            broker_url=configured_broker_url or DEVELOPMENT_BROKER_URL,
            broker_namespace=_get(env, "BROKER_NAMESPACE"),
            broker_heartbeat_timeout_ms=broker_heartbeat_timeout_ms,
            broker_maintenance_chance=broker_maintenance_chance,
            broker_idle_poll_ms=broker_idle_poll_ms,
            auth_secret=auth_secret,
            log_level=_get(env, "LOG_LEVEL").upper(),
            log_format=log_format,
            relay_interval_s=relay_interval_s,
            relay_batch_size=relay_batch_size,
            relay_grace_s=relay_grace_s,
            publish_at_commit=publish_at_commit,
            max_retries=max_retries,
            scheduler_interval_s=scheduler_interval_s,
            # Set by deploy/gunicorn.conf.py when REDVEST_METRICS_DIR is; see prometheus_client.
            prometheus_multiproc_dir=_set(env, "PROMETHEUS_MULTIPROC_DIR"),
            confirm_within_days=confirm_within_days,
            reopen_within_days=reopen_within_days,
            unconfirmed_earnings=unconfirmed_earnings,
            points_expire_after_days=points_expire_after_days,
            points_expiry_notice_days=points_expiry_notice_days,
            webhook_trusted_hosts=webhook_trusted_hosts,
            api_key_rate_limit=api_key_rate_limit,
            cors_origins=cors_origins,
        )
