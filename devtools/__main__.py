"""``python -m devtools run|demo|stories|migrate``: the whole system on one machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devtools.community import migrate_all, seed_demo, write_credentials
from devtools.demo import walk_the_thread
from devtools.processes import ROOT, procfile_commands, venv_env
from devtools.redis_server import EmbeddedRedis
from devtools.stories import run_stories
from devtools.supervisor import Supervisor
from shared.topology import DEFAULT_PORTS, SERVICES


def var_dir(env: Mapping[str, str]) -> Path:
    """Where the databases, Redis, credentials and pid files go: ``REDVEST_VAR_DIR`` or var/."""
    return ROOT / (env.get("REDVEST_VAR_DIR") or "var")


def service_urls(env: Mapping[str, str]) -> dict[str, str]:
    return {
        service: f"http://127.0.0.1:{env.get(f'{service.upper()}_PORT', DEFAULT_PORTS[service])}"
        for service in SERVICES
    }


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run(*, grace: float) -> int:
    """Migrate, seed, keep every process running under a supervisor; Ctrl-C stops them all."""
    env = dict(os.environ)
    var = var_dir(env)
    # The children run in ROOT too, but an absolute path means the same to every reader.
    env["REDVEST_VAR_DIR"] = str(var)
    env.setdefault("REDVEST_METRICS_DIR", str(var / "metrics"))
    # Four services on one machine: two web processes each is plenty for a community, and on
    # SQLite (the default here) single-threaded ones serve it best (deploy/gunicorn.conf.py).
    env.setdefault("WEB_CONCURRENCY", "2")
    if not any(env.get(f"{service.upper()}_DATABASE_URL") for service in SERVICES):
        env.setdefault("WEB_THREADS", "1")
    credentials_file = var / "demo-credentials.json"
    redis = None
    if not (env.get("BROKER_URL") or env.get("REDIS_URL")):
        redis = EmbeddedRedis(var / "redis").start()
        env["BROKER_URL"] = redis.url
        print(f"redis: started its own server at {redis.url} (AOF in {shown(var / 'redis')})")
    try:
        migrate_all(env)
        urls = service_urls(env)
        write_credentials(credentials_file, seed_demo(env, urls))
        print("\nRedvest is starting:")
        for service, url in urls.items():
            print(f"  {service:<9} {url}   docs {url}/docs   metrics {url}/metrics")
        print(f"  demo credentials: {shown(credentials_file)}   walk the thread: make demo")
        print("  a process that exits is restarted; Ctrl-C stops them all\n", flush=True)
        supervisor = Supervisor(
            procfile_commands(), env=venv_env(env), grace=grace, pid_dir=var / "run"
        )
        return supervisor.run()
    finally:
        if redis is not None:
            redis.stop()


def running_credentials() -> dict[str, Any] | None:
    """The URLs and credentials ``make run`` wrote, or None (said on stderr) when it has not."""
    credentials_file = var_dir(os.environ) / "demo-credentials.json"
    if not credentials_file.exists():
        print(
            f"no {shown(credentials_file)}: start the system with `make run` first",
            file=sys.stderr,
        )
        return None
    credentials: dict[str, Any] = json.loads(credentials_file.read_text())
    return credentials


def demo() -> int:
    credentials = running_credentials()
    return 2 if credentials is None else walk_the_thread(credentials)


def stories() -> int:
    """Walk every built story of the domain through the running system's public APIs."""
    credentials = running_credentials()
    return 2 if credentials is None else run_stories(credentials)


def migrate() -> int:
    """Apply every service's migrations to its database (under var/ unless configured)."""
    env = dict(os.environ)
    env["REDVEST_VAR_DIR"] = str(var_dir(env))
    migrate_all(env)
    print(f"migrated: {', '.join(SERVICES)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools")
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="migrate, seed and keep every process running")
    runner.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds each process has to stop after SIGTERM before it is killed (default 30)",
    )
    commands.add_parser("demo", help="walk a knife-sharpening request through the running system")
    commands.add_parser("stories", help="walk every built story of the domain, one line each")
    commands.add_parser("migrate", help="apply every service's migrations")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(grace=args.grace)
    if args.command == "demo":
        return demo()
    if args.command == "stories":
        return stories()
    return migrate()


if __name__ == "__main__":
    sys.exit(main())
