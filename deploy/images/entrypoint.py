"""The command of every service's image: which of the service's processes runs, and its health.

    web | worker | relay | scheduler | migrate   run that process; it replaces this one (PID 1)
    health [PROCESS]                             check the process the container runs
    anything else                                run as given (python -m services.intake ...)

The image names its service in ``REDVEST_SERVICE``; the processes are those of
``deploy/Procfile``, bound to every interface. Before a process starts, the service's settings
are read as the process will read them: one that cannot start says why in one line and exits 2,
rather than leaving a traceback per restart. ``migrate`` first waits for its database to take
connections (``DATABASE_WAIT_S``, 60 by default): on a fresh host it is the first to need it,
and not every engine holds it back until the database is healthy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from shared.settings import Settings, SettingsError
from shared.topology import DEFAULT_PORTS, queue_of

PROCESSES = ("web", "worker", "relay", "scheduler", "migrate")
MIGRATE_ATTEMPTS = 3
GUNICORN_CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
# A check that takes longer than this fails; the engine's own timeout is the longer backstop.
CHECK_TIMEOUT_S = 5


def command(process: str, service: str, env: Mapping[str, str]) -> list[str]:
    """The command line of one of the service's processes (as in deploy/Procfile)."""
    python, module = sys.executable, f"services.{service}"
    if process == "web":
        port = env.get(f"{service.upper()}_PORT") or DEFAULT_PORTS[service]
        return [
            *(python, "-m", "shared.web_server", "--config", str(GUNICORN_CONF)),
            *("--bind", f"0.0.0.0:{port}", f"{module}.app:create_app()"),
        ]
    if process == "worker":
        # Within the engine's grace period (30 s in compose) a worker finishes what it holds;
        # what it still holds at the end goes back to the queue (see tests/test_deploy_processes).
        return [
            *(python, "-m", "dramatiq", f"{module}.actors:start", "--queues", queue_of(service)),
            *("--processes", env.get("WORKER_PROCESSES", "1")),
            *("--threads", env.get("WORKER_THREADS", "4")),
            *("--worker-shutdown-timeout", env.get("WORKER_SHUTDOWN_TIMEOUT_MS", "20000")),
        ]
    if process == "scheduler" and (port := env.get("SCHEDULER_METRICS_PORT")):
        # Its timer lateness histogram, for Prometheus to scrape from outside the container.
        return [python, "-m", module, process, "--metrics-port", port, "--metrics-host", "0.0.0.0"]
    return [python, "-m", module, process]


def metrics_env(process: str, env: Mapping[str, str]) -> dict[str, str]:
    """Where a worker's processes share their metrics and the port one of them serves them on,
    in the variables dramatiq's Prometheus middleware reads; nothing unless
    PROMETHEUS_MULTIPROC_DIR is set."""
    directory = env.get("PROMETHEUS_MULTIPROC_DIR")
    if process != "worker" or not directory:
        return {}
    os.makedirs(directory, exist_ok=True)
    return {
        "dramatiq_prom_db": directory,
        "dramatiq_prom_host": "0.0.0.0",
        "dramatiq_prom_port": env.get("WORKER_METRICS_PORT", "9191"),
    }


def _postgresql_conninfo(url: str) -> str | None:
    """The libpq form of a PostgreSQL URL (SQLAlchemy's may name a driver), else None."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        return None
    return f"postgresql://{rest}"


def _where(url: str) -> str:
    """A URL's host and port only: the rest may hold a password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def ping_database(settings: Settings) -> None:
    """Open a connection to the service's PostgreSQL database (SQLite has nothing to reach)."""
    conninfo = _postgresql_conninfo(settings.database_url)
    if conninfo is None:
        return
    import psycopg

    with psycopg.connect(conninfo, connect_timeout=CHECK_TIMEOUT_S) as connection:
        connection.execute("SELECT 1")


def ping_broker(settings: Settings) -> None:
    """A Redis PING, or a TCP connection to RabbitMQ, with the service's broker URL."""
    url = settings.broker_url
    if url.startswith(("amqp://", "amqps://")):
        parts = urlsplit(url)
        default_port = 5671 if parts.scheme == "amqps" else 5672
        socket.create_connection(
            (parts.hostname or "localhost", parts.port or default_port), CHECK_TIMEOUT_S
        ).close()
        return
    import redis

    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


def wait_for_database(settings: Settings, timeout_s: float) -> str | None:
    """None once the database takes connections; the reason it did not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ping_database(settings)
            return None
        except Exception as error:
            if time.monotonic() >= deadline:
                return (
                    f"the database at {_where(settings.database_url)} did not take connections "
                    f"within {timeout_s:g} s: {_first_line(error)}"
                )
        time.sleep(1)


# What each long-running process cannot work without. None of them exits when it loses one (they
# back off and retry, so an outage does not crash-loop the host), so this is how a process that
# runs but cannot work shows: with its own settings, it cannot reach what it needs.
NEEDS: dict[str, tuple[Callable[[Settings], None], ...]] = {
    "worker": (ping_broker, ping_database),
    "relay": (ping_database, ping_broker),
    "scheduler": (ping_database,),
}


def _process_of_pid_1() -> str | None:
    """The process this container was started for, as the entrypoint recorded it."""
    try:
        environ = Path("/proc/1/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"REDVEST_PROCESS="):
            return entry.partition(b"=")[2].decode()
    return None


def health(service: str, process: str | None, env: Mapping[str, str]) -> int:
    """0 when the process is fine, else 1 with the reason on one line."""
    process = process or _process_of_pid_1()
    if process is None:
        print("unhealthy: no Redvest process runs in this container", file=sys.stderr)
        return 1
    if process == "web":
        port = env.get(f"{service.upper()}_PORT") or DEFAULT_PORTS[service]
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/healthz", timeout=CHECK_TIMEOUT_S
            ) as response:
                return 0 if response.status == 200 else 1
        except OSError as error:
            print(f"unhealthy: /healthz: {_first_line(error)}", file=sys.stderr)
            return 1
    try:
        settings = Settings.from_env(service, env)
    except SettingsError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    for check in NEEDS.get(process, ()):
        try:
            check(settings)
        except Exception as error:
            print(f"unhealthy: {check.__name__}: {_first_line(error)}", file=sys.stderr)
            return 1
    return 0


def migrate(args: list[str], env: Mapping[str, str]) -> int:
    """Run the migration, again if it fails: a one-shot job has no orchestrator to retry it on
    one host, and a container network's names can fail to resolve for a moment even after the
    database answered. Each migration is its own transaction, so a retry redoes only what did
    not commit; one that fails every time fails the job with its last exit code."""
    code = 1
    for attempt in range(1, MIGRATE_ATTEMPTS + 1):
        code = subprocess.call(args, env=dict(env))
        if code == 0:
            return 0
        if attempt < MIGRATE_ATTEMPTS:
            print(
                f"migrate: attempt {attempt} of {MIGRATE_ATTEMPTS} exited {code}; again in 2 s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(2)
    return code


def main(argv: list[str]) -> int:
    env = os.environ
    service = env.get("REDVEST_SERVICE", "")
    if not argv:
        print(f"usage: {' | '.join(PROCESSES)} | health | a command", file=sys.stderr)
        return 2
    if argv[0] not in (*PROCESSES, "health"):
        os.execvp(argv[0], argv)
    if not service:
        print("cannot start: REDVEST_SERVICE must name the image's service", file=sys.stderr)
        return 2
    if argv[0] == "health":
        return health(service, argv[1] if len(argv) > 1 else None, env)
    try:
        settings = Settings.from_env(service, env)
    except SettingsError as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    process = argv[0]
    if process == "migrate":
        try:
            wait_s = float(env.get("DATABASE_WAIT_S", "60"))
        except ValueError:
            print("cannot start: DATABASE_WAIT_S must be a number of seconds", file=sys.stderr)
            return 2
        reason = wait_for_database(settings, wait_s)
        if reason is not None:
            print(f"cannot start: {reason}", file=sys.stderr)
            return 1
    args = command(process, service, env)
    process_env = {**env, **metrics_env(process, env), "REDVEST_PROCESS": process}
    if process == "migrate":
        return migrate(args, process_env)
    os.execve(args[0], args, process_env)
    return 0  # not reached: execve replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
