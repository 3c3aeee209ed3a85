"""Migrate every service's database, seed the demo community, write its credentials and wait
for its backlog to drain."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis as redis_client
import requests

from devtools.processes import run_command
from devtools.redis_server import EmbeddedRedis, free_port
from shared.auth import issue_token
from shared.settings import Settings
from shared.topology import SERVICES, queue_of


def migrate_all(env: Mapping[str, str]) -> None:
    for service in SERVICES:
        run_command([sys.executable, "-m", f"services.{service}", "migrate"], env)


def seed_demo(env: Mapping[str, str], urls: Mapping[str, str]) -> dict[str, Any]:
    """Seed each service through its own command and mint the demo people's tokens."""
    seeded = {
        service: json.loads(
            run_command([sys.executable, "-m", f"services.{service}", "seed-demo"], env)
            .strip()
            .splitlines()[-1]
        )
        for service in SERVICES
    }
    secret = Settings.from_env("intake", env).auth_secret
    ttl = timedelta(days=30)
    volunteer = seeded["dispatch"]["volunteers"]["knife_sharpener"]
    resident_id = seeded["intake"]["residents"]["3-2-501"]
    return {
        "urls": dict(urls),
        "intake_api_key": seeded["intake"]["api_key"],
        "staff_token": issue_token(secret, subject="duty-officer", role="staff", ttl=ttl),
        "volunteer": {
            "id": volunteer["id"],
            "name": volunteer["name"],
            "token": issue_token(secret, subject=volunteer["id"], role="volunteer", ttl=ttl),
        },
        "resident": {
            "id": resident_id,
            "location": {
                "community": seeded["intake"]["community"],
                "building": "3",
                "unit": "2",
                "household": "501",
            },
            "token": issue_token(secret, subject=resident_id, role="resident", ttl=ttl),
        },
        "seeded": seeded,
    }


def write_credentials(path: Path, credentials: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(credentials, indent=2) + "\n")
    path.chmod(0o600)


def prepare_community(env: Mapping[str, str], databases: Databases | None) -> dict[str, Any]:
    """Create the run's databases (on PostgreSQL), migrate every service's and seed the demo
    community; its credentials (``seed_demo``), the services' URLs among them."""
    if databases:
        databases.create()
    migrate_all(env)
    urls = {s: f"http://127.0.0.1:{env[f'{s.upper()}_PORT']}" for s in SERVICES}
    return seed_demo(env, urls)


def place_services(
    env: dict[str, str], work: Path, databases: Databases | None
) -> EmbeddedRedis | None:
    """Give each service in ``env`` its database (a SQLite file in ``work``, or its database
    of ``databases``) and a free port, and the run a broker: the one ``env`` names, else an
    embedded Redis started here in ``work`` (returned: the caller stops it)."""
    for service in SERVICES:
        url = databases.url(service) if databases else f"sqlite:///{work / service}.db"
        env[f"{service.upper()}_DATABASE_URL"] = url
        env[f"{service.upper()}_PORT"] = str(free_port(0))
    if env.get("BROKER_URL") or env.get("REDIS_URL"):
        return None
    redis = EmbeddedRedis(work / "redis").start()
    env["BROKER_URL"] = redis.url
    return redis


class Databases:
    """PostgreSQL databases of a run's own, one per service, named ``<prefix>_<service>``."""

    def __init__(self, server_url: str, prefix: str) -> None:
        self.server_url = server_url
        self.names = {service: f"{prefix}_{service}" for service in SERVICES}

    def url(self, service: str) -> str:
        return f"{self.server_url.rsplit('/', 1)[0]}/{self.names[service]}"

    def _execute(self, statement: str) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(statement.encode())

    def create(self) -> None:
        for name in self.names.values():
            self._execute(f"CREATE DATABASE {name}")

    def drop(self) -> None:
        for name in self.names.values():
            self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def forget_namespace(url: str, namespace: str) -> None:
    """Remove the keys this run created on a Redis it shares with others."""
    if not url.startswith("redis"):
        return
    client = redis_client.Redis.from_url(url)
    for key in client.scan_iter(match=f"{namespace}*", count=500):
        client.delete(key)
    client.close()


def wait_until_drained(env: dict[str, str], urls: dict[str, str], timeout: float = 600) -> float:
    """Wait until every outbox is published and every queue is empty; returns the seconds."""
    client = redis_client.Redis.from_url(env["BROKER_URL"])
    namespace = env["BROKER_NAMESPACE"]
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            queued = sum(client.llen(f"{namespace}:{queue_of(s)}") for s in SERVICES)
            held = sum(client.scard(k) for k in client.scan_iter(f"{namespace}:__acks__.*"))
            pending = 0.0
            for service, url in urls.items():
                metrics = requests.get(f"{url}/metrics", timeout=10).text
                found = re.search(
                    rf'redvest_outbox_pending{{service="{service}"}} ([0-9.]+)', metrics
                )
                pending += float(found.group(1)) if found else 0.0
            if queued == 0 and held == 0 and pending == 0:
                return time.perf_counter() - started
            time.sleep(0.5)
    finally:
        client.close()
    raise RuntimeError("the system did not drain its backlog in time")
