"""Typed settings, read from the environment once per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEVELOPMENT_AUTH_SECRET = "redvest-development-secret-do-not-use-in-production"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the process must not start."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


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
    max_retries: int
    prometheus_multiproc_dir: str | None

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        prefix = service.upper()
        environment = env.get("REDVEST_ENV", "development")
        var_dir = Path(env.get("REDVEST_VAR_DIR", "var"))
        database_url = env.get(f"{prefix}_DATABASE_URL") or f"sqlite:///{var_dir / service}.db"
        broker_url = env.get("BROKER_URL") or env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        auth_secret = env.get("REDVEST_AUTH_SECRET", "")
        if not auth_secret:
            if environment == "production":
                raise SettingsError("REDVEST_AUTH_SECRET must be set when REDVEST_ENV=production")
            auth_secret = DEVELOPMENT_AUTH_SECRET
        if auth_secret == DEVELOPMENT_AUTH_SECRET and not database_url.startswith("sqlite"):
            raise SettingsError(
                "REDVEST_AUTH_SECRET must be set for a server database; the development "
                "secret is public and only serves the embedded SQLite set-up"
            )
        if len(auth_secret) < 32:
            raise SettingsError("REDVEST_AUTH_SECRET must be at least 32 characters")
        log_format = env.get("LOG_FORMAT", "json")
        if log_format not in {"json", "console"}:
            raise SettingsError(f"LOG_FORMAT must be 'json' or 'console', got {log_format!r}")
        relay_interval_s = _float(env, "RELAY_INTERVAL_S", 0.1)
        relay_batch_size = _int(env, "RELAY_BATCH_SIZE", 100)
        if relay_interval_s <= 0 or relay_batch_size < 1:
            raise SettingsError("RELAY_INTERVAL_S must be above 0 and RELAY_BATCH_SIZE at least 1")
        return cls(
            service=service,
            environment=environment,
            database_url=database_url,
            broker_url=broker_url,
            broker_namespace=env.get("BROKER_NAMESPACE", "dramatiq"),
            # A killed worker's messages come back once its heartbeat is this old and a
            # maintenance pass runs; dramatiq's defaults make that take many minutes.
            broker_heartbeat_timeout_ms=_int(env, "BROKER_HEARTBEAT_TIMEOUT_MS", 30_000),
            broker_maintenance_chance=_int(env, "BROKER_MAINTENANCE_CHANCE", 100_000),
            broker_idle_poll_ms=_int(env, "BROKER_IDLE_POLL_MS", 100),
            auth_secret=auth_secret,
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            log_format=log_format,
            relay_interval_s=relay_interval_s,
            relay_batch_size=relay_batch_size,
            max_retries=_int(env, "MAX_RETRIES", 20),
            # Set by deploy/gunicorn.conf.py when REDVEST_METRICS_DIR is; see prometheus_client.
            prometheus_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        )
