"""``make bench``: figures, not assertions.

1. intake's ``POST /v1/requests`` throughput and latency, against a bare Flask JSON echo run
   under the same gunicorn settings in the same run, and the ratio of the two.
2. The thread's end-to-end time (post → points credited), p50 and p95 over many requests.

Everything runs on this machine against its own Redis namespace and its own SQLite files (or the
databases named by ``*_DATABASE_URL``); the load generator is bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import redis as redis_client
import requests

from devtools.community import migrate_all, seed_demo
from devtools.processes import ROOT, ProcessGroup, venv_env, wait_until_ready
from devtools.redis_server import EmbeddedRedis, free_port, is_reachable
from devtools.thread import KnifeSharpeningThread
from shared.topology import SERVICES, queue_of


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(
    port: int,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    requests_total: int,
    concurrency: int,
    expect: int,
) -> dict[str, float]:
    """POST ``body`` ``requests_total`` times over ``concurrency`` keep-alive connections."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_worker = requests_total // concurrency

    def worker() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        failed = 0
        for _ in range(per_worker):
            started = time.perf_counter()
            connection.request(
                "POST",
                path,
                body=json.dumps(body),
                headers={
                    **headers,
                    "Content-Type": "application/json",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            failed += response.status != expect
        connection.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def gunicorn(app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            ["gunicorn", "--config", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app],
            cwd=ROOT,
            env=venv_env(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def report(name: str, figures: dict[str, float]) -> None:
    print(
        f"  {name:<40} {figures['rps']:8.1f} req/s   p50 {figures['p50_ms']:6.1f} ms   "
        f"p95 {figures['p95_ms']:6.1f} ms   p99 {figures['p99_ms']:6.1f} ms   "
        f"errors {figures['errors']:.0f}"
    )


def throughput(
    env: dict[str, str],
    credentials: dict[str, Any],
    group: ProcessGroup,
    *,
    requests_total: int,
    concurrency: int,
    log_dir: Path,
) -> None:
    """The echo, then intake alone (web and relay), then intake with every other process up."""
    resident = credentials["resident"]
    body = {
        "category": "knife_sharpening",
        "summary": "Two kitchen knives",
        "resident_id": resident["id"],
        "location": resident["location"],
    }
    intake_port = int(credentials["urls"]["intake"].rsplit(":", 1)[1])
    headers = {"X-API-Key": credentials["intake_api_key"]}
    figures: dict[str, dict[str, float]] = {}

    def measure(name: str, port: int, path: str, request_headers: dict[str, str]) -> None:
        # Warm up so no figure pays for imports and first connections.
        load(port, path, body, request_headers, requests_total=50, concurrency=5, expect=201)
        figures[name] = load(
            port,
            path,
            body,
            request_headers,
            requests_total=requests_total,
            concurrency=concurrency,
            expect=201,
        )

    echo_port = free_port(0)
    echo = gunicorn("devtools.echo:create_app()", echo_port, env, log_dir / "echo.log")
    try:
        wait_for_port(echo_port)
        measure("bare Flask JSON echo", echo_port, "/echo", {})
    finally:
        echo.terminate()
        echo.wait()
    group.start(["intake-web", "intake-relay"])
    wait_until_ready([credentials["urls"]["intake"]], group=group)
    measure("intake POST /v1/requests (intake alone)", intake_port, "/v1/requests", headers)
    group.start([name for name in group.commands if name not in group.running])
    wait_until_ready(credentials["urls"].values(), group=group)
    # The first measurement's requests must not weigh on the second.
    wait_until_drained(env, credentials["urls"])
    measure("intake POST /v1/requests (all services)", intake_port, "/v1/requests", headers)

    database = "SQLite" if env["INTAKE_DATABASE_URL"].startswith("sqlite") else "PostgreSQL"
    print(
        f"\nPOST throughput: {requests_total} requests over {concurrency} keep-alive connections "
        f"from this machine; gunicorn WEB_CONCURRENCY={env['WEB_CONCURRENCY']} "
        f"WEB_THREADS={env['WEB_THREADS']} (deploy/gunicorn.conf.py) for all; {database}. "
        "'intake alone' runs only intake's web and relay; 'all services' also runs every "
        "worker and relay, which consume the requests as they arrive."
    )
    for name, result in figures.items():
        report(name, result)
    echo_rps = figures["bare Flask JSON echo"]["rps"]
    for name in list(figures)[1:]:
        print(
            f"  ratio {name[len('intake POST /v1/requests ') :]:<34} "
            f"{figures[name]['rps'] / echo_rps:.3f} of the echo's throughput"
        )


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not is_reachable("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listening on {port}")
        time.sleep(0.1)


def wait_until_drained(env: dict[str, str], urls: dict[str, str], timeout: float = 900) -> float:
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


def end_to_end(credentials: dict[str, Any], *, count: int, concurrency: int) -> None:
    def one(_: int) -> float:
        thread = KnifeSharpeningThread(credentials, say=lambda _: None, timeout=120)
        started = time.perf_counter()
        thread.submit()
        thread.assigned()
        thread.accept()
        thread.complete()
        thread.confirm()
        thread.transfer_credited()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    print(
        f"\nThe thread end to end (post → assigned → accepted → completed → confirmed → points "
        f"credited), {count} requests, {concurrency} at a time, every API call made as soon "
        "as the previous step showed:"
    )
    print(
        f"  p50 {statistics.median(times) * 1000:7.0f} ms   "
        f"p95 {percentile(times, 0.95) * 1000:7.0f} ms"
        f"   max {max(times) * 1000:7.0f} ms   ({count / elapsed:.1f} threads/s overall)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=300, help="end-to-end threads to time")
    parser.add_argument("--thread-concurrency", type=int, default=8)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on PostgreSQL: databases of the run's own are created on this server "
        "(e.g. postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards",
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="redvest-bench-"))
    run_id = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "REDVEST_VAR_DIR": str(work),
        "LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
        "WEB_THREADS": os.environ.get("WEB_THREADS", "4"),
        "BROKER_NAMESPACE": f"redvest-bench-{run_id}",
    }
    env.setdefault("REDVEST_AUTH_SECRET", secrets.token_urlsafe(48))
    databases = Databases(args.postgres, run_id) if args.postgres else None
    for service in SERVICES:
        url = databases.url(service) if databases else f"sqlite:///{work / service}.db"
        env[f"{service.upper()}_DATABASE_URL"] = url
        env[f"{service.upper()}_PORT"] = str(free_port(0))
    redis = None
    if not (env.get("BROKER_URL") or env.get("REDIS_URL")):
        redis = EmbeddedRedis(work / "redis").start()
        env["BROKER_URL"] = redis.url
    group = ProcessGroup(env, work / "logs")
    try:
        if databases:
            databases.create()
        migrate_all(env)
        urls = {s: f"http://127.0.0.1:{env[f'{s.upper()}_PORT']}" for s in SERVICES}
        credentials = seed_demo(env, urls)
        print(f"bench: {os.cpu_count()} CPUs; logs in {work / 'logs'}")
        throughput(
            env,
            credentials,
            group,
            requests_total=args.requests,
            concurrency=args.concurrency,
            log_dir=work / "logs",
        )
        drained = wait_until_drained(env, urls)
        print(
            f"\nBacklog left by the POSTs (assignments, status updates, notifications) "
            f"absorbed {drained:.0f} s after the last POST."
        )
        end_to_end(credentials, count=args.threads, concurrency=args.thread_concurrency)
    finally:
        group.stop()
        if redis is not None:
            redis.stop()
        else:
            forget_namespace(env.get("BROKER_URL") or env["REDIS_URL"], env["BROKER_NAMESPACE"])
        if databases:
            databases.drop()
    return 0


class Databases:
    """PostgreSQL databases of the bench's own, one per service."""

    def __init__(self, server_url: str, run_id: str) -> None:
        self.server_url = server_url
        self.names = {service: f"redvest_bench_{run_id}_{service}" for service in SERVICES}

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


if __name__ == "__main__":
    sys.exit(main())
