"""``make bench``: figures, not assertions. Each figure comes from one run, printed at the end:

1. intake's ``POST /v1/requests`` throughput against a bare Flask JSON echo under the same
   gunicorn settings, as a ratio: intake alone (its web and relay), then with every service up.
   On SQLite also the floor's ratio (``devtools/floor.py``: the same reads and writes in plain
   sqlite3 and redis-py, without the layers around them), the most a POST could keep here.
2. The fabric hop (commit an outbox row, publish it at commit, an actor takes it and records it
   in its inbox) against raw Dramatiq no-op actors on the same broker, in messages per second.
3. Post to volunteer notified: POSTs sent at a fixed arrival rate (open loop: each at its
   planned time, whatever the answers), each timed from its planned time to the ``created_at``
   of the volunteer's inbox message about it, with every service running.
4. A killed worker's message: how long after the kill another worker gets it.
5. points' ledger: transfers written a second, one a transaction and in batches, with every
   check a transfer meets in service.
6. intake's staff lists: ``GET /v1/requests`` p50 and p95 for a building's open requests, its
   overdue ones and a page 50 pages deep, with 10 thousand requests stored and with a million
   (``services/intake/benchmark.py``), on a database of their own.

A Markdown report with plots goes to ``var/bench/``. Everything runs on this machine against
its own Redis namespace and its own SQLite files (or PostgreSQL databases with ``--postgres``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import psutil
import redis as redis_client
import requests
from marshmallow import Schema, fields
from sqlalchemy import func, select

from devtools.community import (
    Databases,
    forget_namespace,
    place_services,
    prepare_community,
    wait_until_drained,
)
from devtools.floor import DATABASE as FLOOR_DATABASE
from devtools.floor import NAMESPACE as FLOOR_NAMESPACE
from devtools.floor import REDIS_URL as FLOOR_REDIS_URL
from devtools.floor import copy_database
from devtools.processes import ROOT, ProcessGroup, venv_env, wait_until_ready
from devtools.redis_server import free_port, is_reachable
from services.intake.benchmark import LISTS, ListsTimed, bench_lists
from services.intake.config import MIGRATIONS as INTAKE_MIGRATIONS
from services.points.benchmark import bench_transfers
from shared.broker import create_broker
from shared.commit_publisher import CommitPublisher
from shared.consumers import declare
from shared.database import Database
from shared.events import Event
from shared.logs import configure_logging
from shared.migrations import upgrade
from shared.settings import Settings

REPORT_DIR = ROOT / "var" / "bench"
# Messages of the fabric hop timed one by one, sent at 100 a second.
LATENCY_MESSAGES = 300
# Ledger transfers written to one transaction in the batched figure.
LEDGER_BATCH = 100


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
            [
                *(sys.executable, "-m", "shared.web_server", "--config", "deploy/gunicorn.conf.py"),
                *("--bind", f"127.0.0.1:{port}", app),
            ],
            cwd=ROOT,
            env=venv_env(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def request_body(credentials: dict[str, Any]) -> dict[str, Any]:
    resident = credentials["resident"]
    return {
        "category": "knife_sharpening",
        "summary": "Two kitchen knives",
        "resident_id": resident["id"],
        "location": resident["location"],
    }


def throughput(
    env: dict[str, str],
    credentials: dict[str, Any],
    group: ProcessGroup,
    *,
    requests_total: int,
    concurrency: int,
    log_dir: Path,
    floor_of: Path | None = None,
    broker_pid: int | None = None,
) -> dict[str, dict[str, float]]:
    """The echo, then intake alone (web and relay), then intake with every other process up;
    with ``floor_of`` (intake's SQLite file) the floor as well, on a copy of it. Each figure
    has the CPU its server's processes spent a POST (with every service up: all of theirs, and
    the broker's when ``broker_pid`` names it; a database server's is not counted)."""
    body = request_body(credentials)
    intake_port = int(credentials["urls"]["intake"].rsplit(":", 1)[1])
    headers = {"X-API-Key": credentials["intake_api_key"]}
    figures: dict[str, dict[str, float]] = {}

    def measure(
        name: str, port: int, path: str, request_headers: dict[str, str], pids: list[int]
    ) -> None:
        # Warm up so no figure pays for imports and first connections.
        load(port, path, body, request_headers, requests_total=50, concurrency=5, expect=201)
        spent = cpu_seconds(pids)
        figures[name] = load(
            port,
            path,
            body,
            request_headers,
            requests_total=requests_total,
            concurrency=concurrency,
            expect=201,
        )
        spent = cpu_seconds(pids) - spent
        figures[name]["cpu_ms"] = spent * 1000 / max(1, figures[name]["requests"])
        say(f"  {name}: {describe(figures[name])}")

    def running(*names: str) -> list[int]:
        return [group.running[name].pid for name in names or list(group.running)]

    def measure_alone(
        name: str, app: str, app_env: dict[str, str], path: str, request_headers: dict[str, str]
    ) -> None:
        """One figure from a gunicorn of its own, stopped after it."""
        port = free_port(0)
        server = gunicorn(app, port, app_env, log_dir / f"{name}.log")
        try:
            wait_for_port(port)
            measure(name, port, path, request_headers, [server.pid])
        finally:
            server.terminate()
            server.wait()

    measure_alone("echo", "devtools.echo:create_app()", env, "/echo", {})
    if floor_of is not None:
        # The same reads and writes without the layers around them, on a copy of intake's
        # database: how much of the echo a POST keeps at best here (devtools/floor.py).
        floor_database = floor_of.with_name("floor.db")
        copy_database(floor_of, floor_database)
        floor_env = {
            **env,
            FLOOR_DATABASE: str(floor_database),
            FLOOR_REDIS_URL: env["BROKER_URL"],
            FLOOR_NAMESPACE: env["BROKER_NAMESPACE"],
        }
        measure_alone("floor", "devtools.floor:create_app()", floor_env, "/v1/requests", headers)
    group.start(["intake-web", "intake-relay"])
    wait_until_ready([credentials["urls"]["intake"]], group=group)
    measure(
        "intake alone", intake_port, "/v1/requests", headers, running("intake-web", "intake-relay")
    )
    group.start([name for name in group.commands if name not in group.running])
    wait_until_ready(credentials["urls"].values(), group=group)
    # The first measurement's requests must not weigh on the second.
    wait_until_drained(env, credentials["urls"])
    everything = running() + ([broker_pid] if broker_pid else [])
    measure("all services", intake_port, "/v1/requests", headers, everything)
    return figures


def describe(figures: dict[str, float]) -> str:
    return (
        f"{figures['rps']:.1f} req/s, p50 {figures['p50_ms']:.1f} ms, "
        f"p95 {figures['p95_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"errors {figures['errors']:.0f}, server CPU {figures['cpu_ms']:.2f} ms a POST"
    )


def cpu_seconds(pids: list[int]) -> float:
    """The user and system CPU these processes and their children spent so far."""
    spent = 0.0
    for pid in pids:
        try:
            leader = psutil.Process(pid)
            for process in (leader, *leader.children(recursive=True)):
                times = process.cpu_times()
                spent += times.user + times.system
        except psutil.Error:
            continue  # gone meanwhile: what it spent cannot be read any more
    return spent


def server_pids(name: str) -> list[int]:
    """The leaders of the processes of this machine named ``name`` (a server's main process,
    whose children ``cpu_seconds`` counts with it)."""
    leaders = []
    for process in psutil.process_iter(["name", "ppid"]):
        try:
            if process.info["name"] != name:
                continue
            parent = psutil.Process(process.info["ppid"]) if process.info["ppid"] else None
            if parent is None or parent.name() != name:
                leaders.append(process.pid)
        except psutil.Error:
            continue  # gone meanwhile
    return leaders


class CpuMeter:
    """What each part of a running system spent of the machine's CPU over a stretch of time, a
    request: the processes each part names (their children with them) and this process, where
    the load is made. Whether the machine can carry a rate at all follows: the milliseconds a
    request times the rate, against its cores. A process that ended meanwhile is not counted."""

    SENDER = "load sender (this process)"

    def __init__(self, parts: dict[str, Callable[[], list[int]]]) -> None:
        self.parts = parts
        self._started: dict[str, float] = {}
        self._pids: dict[str, list[int]] = {}

    def start(self) -> None:
        self._pids = {name: pids() for name, pids in self.parts.items()}
        self._started = {name: cpu_seconds(pids) for name, pids in self._pids.items()}
        self._started[self.SENDER] = time.process_time()

    def stop(self, requests: int) -> dict[str, Any]:
        """Milliseconds of CPU a request by part, and in all."""
        spent = {name: cpu_seconds(pids) for name, pids in self._pids.items()}
        spent[self.SENDER] = time.process_time()
        per_request = {
            name: (spent[name] - self._started[name]) * 1000 / max(1, requests) for name in spent
        }
        return {"parts_ms": per_request, "total_ms": sum(per_request.values())}


def describe_cpu(cpu: dict[str, Any], rate: float) -> str:
    parts = ", ".join(f"{name} {ms:.1f} ms" for name, ms in cpu["parts_ms"].items())
    needed = cpu["total_ms"] * rate / 1000
    return (
        f"CPU a request at {rate:.0f} req/s: {parts}; {cpu['total_ms']:.1f} ms in all, "
        f"{needed:.1f} of {os.cpu_count()} cores"
    )


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not is_reachable("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listening on {port}")
        time.sleep(0.1)


class _PingSchema(Schema):
    ping_id = fields.Str(required=True)


def fabric_hop(env: dict[str, str], *, messages: int) -> dict[str, float]:
    """Messages per second through the fabric and through raw Dramatiq, same broker, same run.

    Both run in this process: a producer as fast as it goes, and a worker of 4 threads (the
    Procfile's) on its own queue. The fabric's producer commits one outbox row a transaction to
    intake's database and the commit-time publisher sends it; its actor claims the message in
    the inbox in a transaction of its own. The raw producer enqueues; its actor does nothing.
    """
    from services.intake.config import build_runtime

    runtime = build_runtime(Settings.from_env("intake", env))
    configure_logging(runtime.settings)
    broker = runtime.broker
    suffix = uuid.uuid4().hex[:8]
    fabric_queue, raw_queue = f"bench-hop-{suffix}", f"bench-raw-{suffix}"
    ping = Event(f"bench.ping.{suffix}", 1, _PingSchema)
    # Each message carries when it was sent: its handler notes how long the hop took.
    hops: list[float] = []

    def took(sent_at: str) -> None:
        hops.append(time.time() - float(sent_at))

    declare(
        broker,
        db=runtime.db,
        messaging=runtime.messaging,
        event=ping,
        handler=lambda session, received, *, ping_id: took(ping_id),
        queue=fabric_queue,
    )
    raw_done = threading.Semaphore(0)

    @dramatiq.actor(broker=broker, queue_name=raw_queue, actor_name=f"bench.raw.{suffix}")
    def raw(ping_id: str) -> None:
        took(ping_id)
        raw_done.release()

    def run(
        produce: Callable[[str], None], finished: Callable[[], bool]
    ) -> tuple[float, list[float]]:
        """Messages a second as fast as they go, then the hop's milliseconds at 100 a second."""
        started = time.perf_counter()
        for _ in range(messages):
            produce(f"{time.time():.6f}")
        while not finished():
            time.sleep(0.01)
        rate = messages / (time.perf_counter() - started)
        hops.clear()
        paced = time.perf_counter()
        for number in range(LATENCY_MESSAGES):
            pause = paced + number / 100 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            produce(f"{time.time():.6f}")
        deadline = time.monotonic() + 30
        while len(hops) < LATENCY_MESSAGES and time.monotonic() < deadline:
            time.sleep(0.01)
        return rate, sorted(hop * 1000 for hop in hops)

    handled = 0

    def raw_finished() -> bool:
        nonlocal handled
        while raw_done.acquire(blocking=False):
            handled += 1
        return handled >= messages

    def send(sent_at: str) -> None:
        raw.send(sent_at)

    def stage(sent_at: str) -> None:
        with runtime.db.transaction() as session:
            runtime.messaging.stage(session, ping, {"ping_id": sent_at})

    inbox = runtime.messaging.inbox

    def fabric_finished() -> bool:
        with runtime.db.read() as session:
            count = session.scalar(
                select(func.count()).select_from(inbox).where(inbox.c.consumer == ping.actor_name)
            )
        return (count or 0) >= messages

    publisher = CommitPublisher(
        db=runtime.db,
        outbox=runtime.messaging.outbox,
        broker=broker,
        routes=lambda name, version: [fabric_queue],
    )
    # One worker for both queues: dramatiq installs a worker's middleware on the broker for good.
    worker = dramatiq.Worker(broker, queues={raw_queue, fabric_queue}, worker_threads=4)
    worker.start()
    try:
        time.sleep(0.5)
        raw_rate, raw_hops = run(send, raw_finished)
        publisher.attach()
        fabric_rate, fabric_hops = run(stage, fabric_finished)
        publisher.detach()
    finally:
        worker.stop()
        publisher.close()
        runtime.db.dispose()
    figures = {
        "fabric_rps": fabric_rate,
        "raw_rps": raw_rate,
        "ratio": fabric_rate / raw_rate,
        **{
            f"{name}_p{int(q * 100)}_ms": percentile(hops, q)
            for name, hops in (("fabric", fabric_hops), ("raw", raw_hops))
            for q in (0.5, 0.95, 0.99)
        },
    }
    say(
        f"  fabric hop {fabric_rate:.0f} msg/s, raw dramatiq {raw_rate:.0f} msg/s "
        f"({messages} messages each, as fast as they go)"
    )
    for name in ("fabric", "raw"):
        say(
            f"  {name} hop at 100 msg/s, send → handler: p50 {figures[f'{name}_p50_ms']:.1f} ms, "
            f"p95 {figures[f'{name}_p95_ms']:.1f} ms, p99 {figures[f'{name}_p99_ms']:.1f} ms"
        )
    return figures


def post_to_notified(
    credentials: dict[str, Any],
    *,
    rate: float,
    duration_s: float,
    timeout_s: float = 240,
    settle: Callable[[], Any] | None = None,
    meter: CpuMeter | None = None,
) -> dict[str, Any]:
    """Open loop: POST at ``rate`` a second for ``duration_s``, each at its planned time; then
    each request's time from its planned send to the volunteer's inbox message about it.

    With ``settle`` (waits until the system has done all the POSTs caused) and ``meter``, also
    the CPU each part spent a request, from the first send until settled."""
    body = request_body(credentials)
    intake = credentials["urls"]["intake"].split("://", 1)[1]
    host, port = intake.rsplit(":", 1)
    total = int(rate * duration_s)
    planned: dict[str, float] = {}
    answered: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    connections = threading.local()

    def post(send_at: float) -> None:
        key = uuid.uuid4().hex
        # A sender's kept-alive connection may have sat idle past the server's keep-alive and
        # been closed: sent again once on a new one, as an HTTP client does, under the same
        # Idempotency-Key.
        for reused in (hasattr(connections, "http"), False):
            connection = getattr(connections, "http", None)
            if connection is None:
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
                connections.http = connection
            try:
                connection.request(
                    "POST",
                    "/v1/requests",
                    body=json.dumps(body),
                    headers={
                        "X-API-Key": credentials["intake_api_key"],
                        "Content-Type": "application/json",
                        "Idempotency-Key": key,
                    },
                )
                response = connection.getresponse()
                payload = response.read()
                status = response.status
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                del connections.http
                status = 0
                payload = b"{}"
                if not reused:
                    break
        done = time.time()
        with lock:
            answered.append((send_at, done, status))
            if status == 201:
                planned[json.loads(payload)["id"]] = send_at

    if meter is not None:
        meter.start()
    # Enough senders that a slow answer never delays the next planned send.
    with ThreadPoolExecutor(max_workers=128) as senders:
        start = time.time() + 0.5
        for number in range(total):
            send_at = start + number / rate
            pause = send_at - time.time()
            if pause > 0:
                time.sleep(pause)
            senders.submit(post, send_at)
    say(f"  {total} POSTs sent in {time.time() - start:.1f} s; waiting for the notifications")
    if settle is not None:
        settle()
    cpu = meter.stop(len(planned)) if meter is not None else None
    if cpu is not None:
        say(f"  {describe_cpu(cpu, rate)}")

    volunteer = credentials["volunteer"]
    recipient = f"volunteer:{volunteer['id']}"
    notify = credentials["urls"]["notify"]
    auth = {"Authorization": f"Bearer {volunteer['token']}"}
    notified: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        notified = {}
        page = 1
        while True:
            response = requests.get(
                f"{notify}/v1/inbox/{recipient}",
                params={"page": page, "page_size": 100},
                headers=auth,
                timeout=30,
            )
            response.raise_for_status()
            messages = response.json()
            for message in messages:
                request_id = message.get("data", {}).get("request_id")
                if message["template"] == "assignment.created" and request_id in planned:
                    created = datetime.fromisoformat(message["created_at"]).timestamp()
                    notified[request_id] = created
            if len(messages) < 100:
                break
            page += 1
        if len(notified) >= len(planned):
            break
        time.sleep(2)
    latencies = sorted((notified[r] - planned[r]) * 1000 for r in notified)
    errors = sum(1 for _, _, status in answered if status != 201)
    return {
        "rate": rate,
        "duration_s": duration_s,
        "sent": total,
        "accepted": len(planned),
        "errors": errors,
        "notified": len(notified),
        "latencies_ms": latencies,
        "answered": answered,
        "notified_at": sorted(notified.values()),
        "p50_ms": percentile(latencies, 0.50) if latencies else float("nan"),
        "p95_ms": percentile(latencies, 0.95) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "cpu": cpu,
    }


# The worker killed mid-message: its actor records each start in a Redis list, and holds the
# first one for minutes, so only a redelivery can start it a second time.
_SLOW_WORKER = """
import os, sys, time, dramatiq, redis
from shared.broker import create_broker
from shared.settings import Settings

queue, starts = sys.argv[1], sys.argv[2]
broker = create_broker(Settings.from_env("intake"))
client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

@dramatiq.actor(broker=broker, queue_name=queue, actor_name=queue + ".slow", max_retries=0)
def slow() -> None:
    if client.rpush(starts, str(os.getpid())) == 1:
        time.sleep(600)

worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1)
worker.start()
client.rpush(starts + ".ready", str(os.getpid()))
while True:
    time.sleep(1)
"""


def killed_worker(env: dict[str, str], *, broker_url: str, redis_url: str) -> float:
    """Seconds from SIGKILL of a worker holding a message to another worker starting it."""
    queue = f"bench-kill-{uuid.uuid4().hex[:8]}"
    starts = f"{env['BROKER_NAMESPACE']}:{queue}.starts"
    client = redis_client.Redis.from_url(redis_url)
    worker_env = venv_env({**env, "BROKER_URL": broker_url, "BENCH_REDIS_URL": redis_url})

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", _SLOW_WORKER, queue, starts],
            cwd=ROOT,
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_for(key: str, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while client.llen(key) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{key} never reached {count}")
            time.sleep(0.01)

    first = start_worker()
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(f"{starts}.ready", 1)
        sender = create_broker(Settings.from_env("intake", {**env, "BROKER_URL": broker_url}))
        sender.enqueue(
            dramatiq.Message(
                queue_name=queue, actor_name=f"{queue}.slow", args=(), kwargs={}, options={}
            )
        )
        wait_for(starts, 1)
        # Another worker is up and idle before the kill: the figure is the broker's alone.
        second = start_worker()
        wait_for(f"{starts}.ready", 2)
        killed_at = time.monotonic()
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        wait_for(starts, 2)
        back_after = time.monotonic() - killed_at
        sender.close()
        return back_after
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        client.delete(starts, f"{starts}.ready")
        client.close()
        if broker_url.startswith("amqp"):
            _delete_rabbitmq_queues(broker_url, queue)


def _delete_rabbitmq_queues(url: str, queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for name in (queue, dramatiq.common.dq_name(queue), dramatiq.common.xq_name(queue)):
        channel.queue_delete(name)
    connection.close()


def ledger_transfers(database_url: str, *, transfers: int) -> dict[str, float]:
    """points' ledger writing gifts between members: one transfer a transaction, then batches
    of 100 and of 1000, on the bench's own (migrated) points database, with every check of the
    service."""
    db = Database(database_url)
    try:
        return {
            "one": bench_transfers(db, transfers, 1).per_second,
            "batched": bench_transfers(db, transfers, LEDGER_BATCH).per_second,
            "batched_1000": bench_transfers(db, transfers, 10 * LEDGER_BATCH).per_second,
        }
    finally:
        db.dispose()


def list_latency(
    env: dict[str, str],
    *,
    sizes: list[int],
    repeats: int,
    postgres: str | None,
    prefix: str,
    work: Path,
) -> list[ListsTimed]:
    """intake's staff lists timed at each of ``sizes`` requests stored, on an intake database
    of their own (on PostgreSQL, made on that server and dropped afterwards)."""
    scratch = Databases(postgres, prefix) if postgres else None
    url = scratch.url("intake") if scratch else f"sqlite:///{work / 'intake-lists.db'}"
    database = "PostgreSQL" if scratch else "SQLite"
    timed: list[ListsTimed] = []
    if scratch:
        scratch.create()
    try:
        upgrade(INTAKE_MIGRATIONS, url)
        settings = Settings.from_env("intake", {**env, "INTAKE_DATABASE_URL": url})
        for figures in bench_lists(settings, sizes, repeats=repeats):
            timed.append(figures)
            say(f"  {describe_lists(timed, database)} (filled in {figures.fill_seconds:.0f} s)")
    finally:
        if scratch:
            scratch.drop()
        # A million requests take over a gigabyte: the logs are kept, not they.
        for path in work.glob("intake-lists.db*"):
            path.unlink()
    return timed


def describe_lists(timed: list[ListsTimed], database: str) -> str:
    """The last of ``timed`` as a line, with its p95s as ratios to the first's."""
    figures, smallest = timed[-1], timed[0]
    names = {
        "first": "first page",
        "overdue": "overdue page",
        "deep": f"deep page ({figures.depth} in)",
    }
    p50 = {name: percentile(figures.seconds[name], 0.50) * 1000 for name in LISTS}
    p95 = {name: percentile(figures.seconds[name], 0.95) * 1000 for name in LISTS}
    line = f"intake list at {_count(figures.stored)} ({database}): " + "; ".join(
        f"{names[name]} p50 {p50[name]:.1f} ms, p95 {p95[name]:.1f} ms" for name in LISTS
    )
    if figures is not smallest:
        line += f"; p95 ratio {_count(figures.stored)}/{_count(smallest.stored)}: " + ", ".join(
            f"{name} {p95[name] / (percentile(smallest.seconds[name], 0.95) * 1000):.1f}"
            for name in LISTS
        )
    return line


def _count(number: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if number >= size and number % size == 0:
            return f"{number // size}{unit}"
    return str(number)


def _on_this_machine(url: str) -> bool:
    """Whether a server's URL names this machine (its processes can be measured)."""
    host = urlsplit(url).hostname
    return host in (None, "", "localhost", "127.0.0.1", "::1")


def say(line: str) -> None:
    print(line, flush=True)


def write_report(
    *,
    database: str,
    load_average: str,
    figures: dict[str, Any],
    lines: list[str],
    env: dict[str, str],
) -> Path:
    """The Markdown report and its plots under var/bench/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    tag = database.lower()
    notified = figures["notified"]
    latencies = notified["latencies_ms"]

    figure, axes = plt.subplots(figsize=(8, 4.5))
    if latencies:
        axes.hist(latencies, bins=60, color="#b03a2e")
        for q, style in ((0.50, "-"), (0.95, "--"), (0.99, ":")):
            value = percentile(latencies, q)
            axes.axvline(
                value, color="black", linestyle=style, label=f"p{int(q * 100)} {value:.0f} ms"
            )
        axes.legend()
    axes.set_xlabel("post → volunteer notified (ms)")
    axes.set_ylabel("requests")
    axes.set_title(f"Latency at {notified['rate']:.0f} req/s open loop, {database}")
    figure.tight_layout()
    latency_png = REPORT_DIR / f"latency-{tag}.png"
    figure.savefig(latency_png, dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(8, 4.5))
    start = min((sent for sent, _, _ in notified["answered"]), default=0.0)

    def per_second(moments: list[float]) -> tuple[list[int], list[int]]:
        counts: dict[int, int] = {}
        for moment in moments:
            second = int(moment - start)
            counts[second] = counts.get(second, 0) + 1
        seconds = list(range(max(counts, default=0) + 1))
        return seconds, [counts.get(second, 0) for second in seconds]

    for label, moments in (
        ("POSTs planned", [sent for sent, _, _ in notified["answered"]]),
        ("POSTs answered 201", [done for _, done, s in notified["answered"] if s == 201]),
        ("volunteer notified", notified["notified_at"]),
    ):
        seconds, counts = per_second(moments)
        axes.plot(seconds, counts, label=label)
    axes.set_xlabel("seconds since the first POST")
    axes.set_ylabel("per second")
    axes.set_title(f"Throughput at {notified['rate']:.0f} req/s open loop, {database}")
    axes.legend()
    figure.tight_layout()
    throughput_png = REPORT_DIR / f"throughput-{tag}.png"
    figure.savefig(throughput_png, dpi=110)
    plt.close(figure)

    posts = figures["posts"]
    hop = figures["hop"]
    report = REPORT_DIR / f"report-{tag}.md"
    rows = "\n".join(
        f"| {name} | {f['rps']:.1f} | {f['p50_ms']:.1f} | {f['p95_ms']:.1f} | {f['p99_ms']:.1f} "
        f"| {f['errors']:.0f} | {f['cpu_ms']:.2f} |"
        for name, f in posts.items()
    )
    kill_rows = "\n".join(
        f"| {broker} | {seconds:.1f} s |" for broker, seconds in figures["killed"].items()
    )
    report.write_text(
        f"""# Redvest bench, {database}

{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {os.cpu_count()} CPUs; load average before the
run {load_average}; gunicorn WEB_CONCURRENCY={env["WEB_CONCURRENCY"]}
WEB_THREADS={env["WEB_THREADS"]}; PUBLISH_AT_COMMIT={env.get("PUBLISH_AT_COMMIT", "sync")}.

```
{chr(10).join(lines)}
```

## intake POST /v1/requests against a bare Flask JSON echo

Closed loop, keep-alive connections from this machine. Server CPU: what the server's processes
spent (user and system) over the run, a POST: the echo's or the floor's gunicorn; intake's web
and relay; with every service up, every service's processes and the embedded Redis (a database
server's own is not counted).

| what | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms a POST |
|------|------:|-------:|-------:|-------:|-------:|--------------------:|
{rows}

## The fabric hop

Outbox row committed → published at commit → actor → inbox claim: {hop["fabric_rps"]:.0f} msg/s;
raw Dramatiq no-op actors on the same broker: {hop["raw_rps"]:.0f} msg/s; ratio
{hop["ratio"]:.2f}. One producer as fast as it goes, one worker of 4 threads, in one process.

Each hop timed at 100 messages a second, from just before the commit (raw: the enqueue) to the
handler: fabric p50 {hop["fabric_p50_ms"]:.1f} ms, p95 {hop["fabric_p95_ms"]:.1f} ms, p99
{hop["fabric_p99_ms"]:.1f} ms; raw p50 {hop["raw_p50_ms"]:.1f} ms, p95 {hop["raw_p95_ms"]:.1f} ms,
p99 {hop["raw_p99_ms"]:.1f} ms.

## Post to volunteer notified

{notified["sent"]} POSTs at {notified["rate"]:.0f} req/s for {notified["duration_s"]:.0f} s,
each sent at its planned time; {notified["accepted"]} answered 201, {notified["errors"]} not;
{notified["notified"]} notifications found. Latency from the planned send to the inbox
message's `created_at`: p50 {notified["p50_ms"]:.0f} ms, p95 {notified["p95_ms"]:.0f} ms, p99
{notified["p99_ms"]:.0f} ms, max {max(latencies, default=float("nan")):.0f} ms.

{describe_cpu(notified["cpu"], notified["rate"])}: the CPU (user and system) each part spent
from the first POST until every queue and outbox was empty, a request, and the cores that makes
at this rate. Parts: every service's processes; the broker's and the database server's when
they run on this machine (a server's processes whoever they served); this process, which sends
the POSTs. Near or above the machine's cores, requests queue and the latency grows with the run.

![latency]({latency_png.name})

![throughput]({throughput_png.name})

## A killed worker's message

SIGKILL of a worker holding a message, another worker idle on the queue:

| broker | back after |
|--------|-----------:|
{kill_rows}
"""
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench")
    parser.add_argument("--requests", type=int, default=3000, help="POSTs per throughput figure")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop POSTs a second")
    parser.add_argument("--duration", type=float, default=30.0, help="open-loop seconds")
    parser.add_argument("--hop-messages", type=int, default=2000)
    parser.add_argument("--transfers", type=int, default=2000, help="ledger transfers timed")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on PostgreSQL: databases of the run's own are created on this server "
        "(e.g. postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards",
    )
    parser.add_argument(
        "--rabbitmq",
        metavar="URL",
        help="also time a killed worker's message on this RabbitMQ (amqp://...)",
    )
    parser.add_argument(
        "--list-sizes",
        type=lambda given: sorted(int(size) for size in given.split(",")),
        default=[10_000, 1_000_000],
        metavar="N,N",
        help="requests stored when intake's lists are timed (default 10000,1000000)",
    )
    parser.add_argument("--list-repeats", type=int, default=100, help="answers timed a list")
    lists = parser.add_mutually_exclusive_group()
    lists.add_argument("--skip-lists", action="store_true", help="do not time intake's lists")
    lists.add_argument("--lists-only", action="store_true", help="time intake's lists alone")
    args = parser.parse_args(argv)

    load_average = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="redvest-bench-"))
    run_id = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "REDVEST_VAR_DIR": str(work),
        "LOG_LEVEL": "WARNING",
        # What suits each database (see deploy/gunicorn.conf.py), named so the report says it.
        "WEB_CONCURRENCY": os.environ.get(
            "WEB_CONCURRENCY", "2" if args.postgres else str(2 * (os.cpu_count() or 1))
        ),
        "WEB_THREADS": os.environ.get("WEB_THREADS", "4" if args.postgres else "1"),
        "BROKER_NAMESPACE": f"redvest-bench-{run_id}",
    }
    env.setdefault("REDVEST_AUTH_SECRET", secrets.token_urlsafe(48))
    database = "PostgreSQL" if args.postgres else "SQLite"
    time_lists = partial(
        list_latency,
        env,
        sizes=args.list_sizes,
        repeats=args.list_repeats,
        postgres=args.postgres,
        prefix=f"redvest_bench_{run_id}_lists",
        work=work,
    )
    if args.lists_only:
        say(f"bench: intake's lists alone, {database}, load average {load_average}")
        timed = time_lists()
        say("")
        for number in range(1, len(timed) + 1):
            say(describe_lists(timed[:number], database))
        return 0
    databases = Databases(args.postgres, f"redvest_bench_{run_id}") if args.postgres else None
    redis = place_services(env, work, databases)
    broker_url = env.get("BROKER_URL") or env["REDIS_URL"]
    group = ProcessGroup(env, work / "logs")
    figures: dict[str, Any] = {}
    started = time.monotonic()
    try:
        credentials = prepare_community(env, databases)
        urls = credentials["urls"]
        say(
            f"bench: {os.cpu_count()} CPUs, load average {load_average}, {database}; logs in "
            f"{work / 'logs'}"
        )
        say("POST throughput, closed loop:")
        figures["posts"] = throughput(
            env,
            credentials,
            group,
            requests_total=args.requests,
            concurrency=args.concurrency,
            log_dir=work / "logs",
            floor_of=None
            if databases or not broker_url.startswith("redis")
            else work / "intake.db",
            broker_pid=redis.process.pid if redis is not None and redis.process else None,
        )
        drained = wait_until_drained(env, urls)
        say(f"  backlog of the POSTs absorbed {drained:.0f} s after the last one")
        say(f"Post to volunteer notified, {args.rate:.0f} req/s open loop, {args.duration:.0f} s:")
        parts: dict[str, Callable[[], list[int]]] = {
            "services": lambda: [process.pid for process in group.running.values()]
        }
        if redis is not None and redis.process:
            embedded = redis.process.pid
            parts["broker"] = lambda: [embedded]
        elif broker_url.startswith("redis") and _on_this_machine(broker_url):
            parts["broker"] = lambda: server_pids("redis-server")
        if databases and _on_this_machine(args.postgres):
            parts["database server"] = lambda: server_pids("postgres")
        figures["notified"] = post_to_notified(
            credentials,
            rate=args.rate,
            duration_s=args.duration,
            settle=lambda: wait_until_drained(env, urls),
            meter=CpuMeter(parts),
        )
        group.stop()
        say("Fabric hop against raw dramatiq:")
        figures["hop"] = fabric_hop(env, messages=args.hop_messages)
        say("Killed worker:")
        redis_url = broker_url if broker_url.startswith("redis") else ""
        figures["killed"] = {}
        if redis_url:
            figures["killed"]["Redis"] = killed_worker(
                env, broker_url=broker_url, redis_url=redis_url
            )
        if args.rabbitmq and redis_url:
            figures["killed"]["RabbitMQ"] = killed_worker(
                env, broker_url=args.rabbitmq, redis_url=redis_url
            )
        say(f"  {figures['killed']}")
        say(f"Ledger transfers, {args.transfers} each way:")
        figures["ledger"] = ledger_transfers(env["POINTS_DATABASE_URL"], transfers=args.transfers)
        say(f"  {figures['ledger']}")
        figures["lists"] = []
        if not args.skip_lists:
            say(f"intake's lists at {', '.join(map(_count, args.list_sizes))} requests:")
            figures["lists"] = time_lists()
    finally:
        group.stop()
        if redis is not None:
            redis.stop()
        else:
            forget_namespace(broker_url, env["BROKER_NAMESPACE"])
        if databases:
            databases.drop()

    posts, notified = figures["posts"], figures["notified"]
    echo_rps = posts["echo"]["rps"]
    lines = [
        f"intake POST ratio to echo (intake alone): {posts['intake alone']['rps'] / echo_rps:.2f}",
        f"intake POST ratio to echo (all services): {posts['all services']['rps'] / echo_rps:.2f}",
        "server CPU a POST: "
        + ", ".join(f"{name} {figures['cpu_ms']:.2f} ms" for name, figures in posts.items()),
        *(
            [f"floor POST ratio to echo (same reads and writes, no layers): {floor:.2f}"]
            if (floor := posts.get("floor", {}).get("rps", 0) / echo_rps)
            else []
        ),
        f"fabric hop ratio to raw dramatiq: {figures['hop']['ratio']:.2f}",
        f"post to volunteer notified at {notified['rate']:.0f} req/s for "
        f"{notified['duration_s']:.0f} s: p50 {notified['p50_ms']:.0f} ms, "
        f"p95 {notified['p95_ms']:.0f} ms, p99 {notified['p99_ms']:.0f} ms",
        describe_cpu(notified["cpu"], notified["rate"]),
    ]
    lines.append(
        f"ledger transfers per second: one at a time {figures['ledger']['one']:.0f}, "
        f"in batches of {LEDGER_BATCH} {figures['ledger']['batched']:.0f}, "
        f"of {10 * LEDGER_BATCH} {figures['ledger']['batched_1000']:.0f}"
    )
    for broker, seconds in figures["killed"].items():
        suffix = "" if broker == "Redis" else f" ({broker})"
        lines.append(f"killed worker's message back after{suffix}: {seconds:.1f} s")
    for number in range(1, len(figures["lists"]) + 1):
        lines.append(describe_lists(figures["lists"][:number], database))
    report = write_report(
        database=database, load_average=load_average, figures=figures, lines=lines, env=env
    )
    say(f"\n{database}, {time.monotonic() - started:.0f} s in all; report {report}\n")
    for line in lines:
        say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
