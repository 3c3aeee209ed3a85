"""The images' processes, started as their entrypoint starts them (deploy/images/entrypoint.py):
one that cannot start says why in one line and exits non-zero; a worker told to stop finishes
the message it holds, or leaves it to be handed out again, within its grace period."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
import requests
from sqlalchemy import func, select

from devtools.processes import ROOT, venv_env
from devtools.redis_server import free_port, is_reachable
from services.dispatch.models import messaging
from services.dispatch.tests.builders import submitted
from shared import events
from shared.broker import create_broker
from shared.database import Database, SQLiteWriterLock
from shared.settings import Settings
from tests.environment import TEST_ENV
from tests.support import eventually, message_for

pytestmark = pytest.mark.e2e

ENTRYPOINT = ROOT / "deploy" / "images" / "entrypoint.py"
PROCESSES = ("web", "worker", "relay", "scheduler", "migrate")


def entrypoint_env(**settings: str) -> dict[str, str]:
    """The environment an image gives its entrypoint, on this checkout's code."""
    return venv_env(
        {
            **os.environ,
            **TEST_ENV,
            "PYTHONPATH": str(ROOT),
            "REDVEST_SERVICE": "dispatch",
            "LOG_FORMAT": "json",
        }
        | settings
    )


def entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def gunicorn_command(app: str, port: int) -> list[str]:
    """gunicorn with the web servers' settings, serving ``app`` on ``port``."""
    return [
        *(sys.executable, "-m", "shared.web_server", "--config", "deploy/gunicorn.conf.py"),
        *("--bind", f"127.0.0.1:{port}", app),
    ]


def gunicorn_refusing(app: str, env: dict[str, str]) -> list[str]:
    """The lines on stderr of a gunicorn that exits 2, refusing to start."""
    finished = subprocess.run(
        gunicorn_command(app, free_port(0)),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2, finished.stderr
    return finished.stderr.splitlines()


@pytest.mark.parametrize("process", PROCESSES)
def test_a_process_that_cannot_start_exits_2_with_the_reason_on_one_line(process, tmp_path):
    env = entrypoint_env(
        REDVEST_ENV="production",
        REDVEST_AUTH_SECRET="",
        DISPATCH_DATABASE_URL=f"sqlite:///{tmp_path}/dispatch.db",
    )
    env.pop("BROKER_URL")

    finished = entrypoint(process, env=env)

    assert finished.returncode == 2
    (line,) = finished.stderr.splitlines()
    assert line.startswith("cannot start: 3 problems with the settings: ")
    for setting in ("DISPATCH_DATABASE_URL", "BROKER_URL", "REDVEST_AUTH_SECRET"):
        assert setting in line


def test_gunicorn_itself_refuses_to_start_on_bad_settings_with_one_line_not_a_traceback():
    env = entrypoint_env(REDVEST_ENV="staging")

    (line,) = gunicorn_refusing("services.dispatch.app:create_app()", env)

    assert line.startswith("cannot start: ")
    assert "REDVEST_ENV must be exactly one of" in line


class PidServer:
    """gunicorn with deploy/gunicorn.conf.py serving tests/pid_app.py."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.port = free_port(0)
        self.log = tmp_path / "gunicorn.log"
        env = {**os.environ, "WEB_CONCURRENCY": "2", "WEB_THREADS": "1"}
        env.pop("GUNICORN_CMD_ARGS", None)
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                gunicorn_command("tests.pid_app:app", self.port),
                cwd=ROOT,
                env=venv_env(env | settings),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.workers: list[psutil.Process] = []

    def wait_until_ready(self) -> None:
        self.workers = eventually(
            lambda: len(children := psutil.Process(self.process.pid).children()) == 2 and children,
            what="two workers",
        )
        eventually(lambda: is_reachable("127.0.0.1", self.port), what="gunicorn listening")
        # Both workers answer (each in its loop), or a test's first connections could all go to
        # the first one up.
        answered: set[str] = set()
        eventually(
            lambda: answered.add(self.get("/")) or len(answered) == 2, what="both workers answer"
        )

    def get(self, path: str) -> str:
        connection = self.connection()
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def pid_server(tmp_path) -> Iterator[Callable[..., PidServer]]:
    started: list[PidServer] = []

    def start(**settings: str) -> PidServer:
        started.append(PidServer(tmp_path, **settings))
        started[-1].wait_until_ready()
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_a_web_worker_whose_threads_are_busy_leaves_new_connections_to_another(pid_server):
    # Six slow requests at once on six connections to two workers of one thread each: a worker
    # takes a connection only while its thread is free, so each serves three. gthread's own worker
    # takes every connection that reaches it, and the first to reach accept() often takes four
    # or more while the other idles.
    server = pid_server()
    connections = [server.connection() for _ in range(6)]
    try:
        for connection in connections:
            connection.request("GET", "/slow")
        served_by = [connection.getresponse().read().decode() for connection in connections]
    finally:
        for connection in connections:
            connection.close()

    assert sorted(served_by.count(str(worker.pid)) for worker in server.workers) == [3, 3], (
        served_by,
        server.log.read_text()[-2000:],
    )


def test_connections_kept_alive_and_idle_do_not_keep_a_new_one_waiting(pid_server):
    # Six connections each answered once and left open (kept alive for two minutes), then a new
    # one: it is answered at once, not when a kept-alive connection ends. A cap on a worker's
    # connections that counts idle ones (twice its threads, say) keeps it waiting until then.
    server = pid_server(GUNICORN_CMD_ARGS="--keep-alive 120")
    kept = [server.connection() for _ in range(6)]
    try:
        for connection in kept:
            connection.request("GET", "/")
            connection.getresponse().read()
        fresh = server.connection()
        fresh.request("GET", "/")
        answered = fresh.getresponse()
        fresh.close()
    finally:
        for connection in kept:
            connection.close()

    assert answered.status == 200


def test_a_new_connection_is_taken_while_kept_alive_clients_keep_every_thread_busy(pid_server):
    # Four clients send request after request on their kept-alive connections to two workers of
    # one thread, so a freed thread always has one of theirs waiting: a new connection is still
    # answered while they go on (after a few of their requests), not once they stop.
    server = pid_server()
    stop = threading.Event()
    looped: list[int] = []

    def loop() -> None:
        connection = server.connection()
        done = 0
        try:
            while not stop.is_set():
                connection.request("GET", "/nap")
                connection.getresponse().read()
                done += 1
        finally:
            connection.close()
            looped.append(done)

    clients = [threading.Thread(target=loop) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        eventually(lambda: all(client.is_alive() for client in clients), what="clients looping")
        time.sleep(0.5)  # every worker's queue holds its clients' next requests
        answered = server.get("/")
        still_looping = all(client.is_alive() for client in clients)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)

    assert answered in {str(worker.pid) for worker in server.workers}
    assert still_looping, looped


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
    ids=["url too long", "header too long", "not http"],
)
def test_a_request_gunicorn_refuses_is_answered_as_a_problem(pid_server, request_bytes, status):
    server = pid_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(request_bytes)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), answer[:300]
    assert "Content-Type: application/problem+json" in lines
    assert "Connection: close" in lines
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"].startswith("https://redvest.dev/problems/")
    assert b"aaaa" not in body and b"bbbb" not in body


def post_then_get(port: int, path: str, body_bytes: int) -> tuple[list[str], bytes]:
    """POST a body of ``body_bytes`` to ``path``, then GET / on the same connection: the POST
    answer's head lines, and all that followed it on the connection until it closed or idled."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {body_bytes}\r\n\r\n".encode()
            + b"x" * body_bytes
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += client.recv(65536)
        head, _, after = answer.partition(b"\r\n\r\n")
        client.settimeout(2)
        try:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            while chunk := client.recv(65536):
                after += chunk
        except (TimeoutError, ConnectionError):
            pass  # idle after the second answer, or closed under the second request
    return head.decode("latin-1").split("\r\n"), after


@pytest.mark.parametrize(
    ("path", "body_bytes", "kept"),
    [("/refuse", 1_000, True), ("/refuse", 200_000, False), ("/too-large", 2_000_000, False)],
    ids=["small body unread", "large body unread", "too large"],
)
def test_an_answer_says_close_when_gunicorn_will_close_for_the_body_left_unread(
    pid_server, path, body_bytes, kept
):
    server = pid_server()

    head, after = post_then_get(server.port, path, body_bytes)

    assert ("Connection: keep-alive" if kept else "Connection: close") in head, head
    # Kept alive, the next request on the connection is answered; told close, none is read.
    assert (b"HTTP/1.1 200 OK" in after) is kept, after[:300]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        *(("WEB_THREADS", value) for value in ("0", "-1", "four")),
        *(("WEB_CONNECTIONS", value) for value in ("0", "-1", "four")),
        # gunicorn reads this one itself as it loads: shared/web_server.py checks it before.
        *(("WEB_CONCURRENCY", value) for value in ("0", "-1", "four", "")),
    ],
)
def test_a_web_server_given_a_count_that_is_not_one_says_which_in_one_line(setting, value):
    env = venv_env({**os.environ, setting: value})

    assert gunicorn_refusing("tests.pid_app:app", env) == [
        f"cannot start: {setting} must be a whole number of 1 or more, not {value!r}"
    ]


def test_migrate_gives_up_on_a_database_that_never_answers_naming_where_it_waited():
    port = free_port(0)
    env = entrypoint_env(
        DISPATCH_DATABASE_URL=f"postgresql://dispatch:hunter2-secret@127.0.0.1:{port}/dispatch",
        DATABASE_WAIT_S="1",
    )

    finished = entrypoint("migrate", env=env)

    assert finished.returncode == 1
    (line,) = finished.stderr.splitlines()
    assert line.startswith(
        f"cannot start: the database at 127.0.0.1:{port} did not take connections within 1 s: "
    )
    assert "hunter2-secret" not in line


def test_a_worker_is_healthy_while_it_reaches_its_broker_and_database(tmp_path):
    env = entrypoint_env(DISPATCH_DATABASE_URL=f"sqlite:///{tmp_path}/dispatch.db")

    assert entrypoint("health", "worker", env=env).returncode == 0


def test_a_worker_that_cannot_reach_its_broker_is_unhealthy_and_says_so(tmp_path):
    env = entrypoint_env(
        DISPATCH_DATABASE_URL=f"sqlite:///{tmp_path}/dispatch.db",
        BROKER_URL=f"redis://127.0.0.1:{free_port(0)}/0",
    )

    finished = entrypoint("health", "worker", env=env)

    assert finished.returncode == 1
    (line,) = finished.stderr.splitlines()
    assert line.startswith("unhealthy: ping_broker: ")


# --- a worker told to stop -----------------------------------------------------------------------


class Worker:
    """dispatch's worker process, on a SQLite database and a broker namespace of its own."""

    def __init__(self, directory: Path, namespace: str, **settings: str) -> None:
        self.database_file = directory / "dispatch.db"
        self.log = directory / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.env = entrypoint_env(
            DISPATCH_DATABASE_URL=f"sqlite:///{self.database_file}",
            BROKER_NAMESPACE=namespace,
            # A stale heartbeat marks a dead worker sooner; still three idle polls long.
            BROKER_HEARTBEAT_TIMEOUT_MS="3000",
            LOG_LEVEL="INFO",
            LOG_FORMAT="json",
            WORKER_THREADS="1",
            **settings,
        )
        self.settings = Settings.from_env("dispatch", self.env)
        self.db = Database(self.settings.database_url)
        self.broker = create_broker(self.settings)
        self.process: subprocess.Popen[bytes] | None = None

    def migrate(self) -> None:
        finished = entrypoint("migrate", env=self.env)
        assert finished.returncode == 0, finished.stderr

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ENTRYPOINT), "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM to the process the container runs, as an engine stops it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def logged(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def handled(self, message_id: str) -> int:
        inbox = messaging.inbox
        with self.db.read() as session:
            count: int = session.scalar(
                select(func.count()).select_from(inbox).where(inbox.c.message_id == message_id)
            )
        return count

    def unacknowledged(self) -> set[str]:
        """Redis's ids of the messages fetched from the queue and not acknowledged."""
        client = redis.Redis.from_url(self.settings.broker_url)
        namespace = self.settings.broker_namespace
        try:
            return {
                member.decode()
                for key in client.scan_iter(match=f"{namespace}:__acks__.*")
                for member in client.smembers(key)
            }
        finally:
            client.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.broker.close()
        self.db.dispose()


def waiting_for_the_lock(lock_file: Path) -> bool:
    """Whether a process waits for the flock of ``lock_file`` (a ``->`` line of /proc/locks)."""
    inode = f":{lock_file.stat().st_ino} "
    return any(
        "->" in line and "FLOCK" in line and inode in line
        for line in Path("/proc/locks").read_text().splitlines()
    )


@pytest.fixture
def workers(tmp_path) -> Iterator[Callable[..., Worker]]:
    """Workers of one database and one broker namespace (within the test run's)."""
    namespace = f"{TEST_ENV['BROKER_NAMESPACE']}-stop-{uuid.uuid4().hex[:6]}"
    made: list[Worker] = []

    def make(**settings: str) -> Worker:
        made.append(Worker(tmp_path, namespace, **settings))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def hold_the_message(worker: Worker) -> tuple[str, str]:
    """Send dispatch a message and wait until the worker's handler waits for the database's
    write lock, which the test holds: the worker holds the message, half-handled. Returns the
    message's id and the id Redis keeps it under."""
    sent = worker.broker.enqueue(message_for(events.REQUEST_SUBMITTED, submitted()))
    eventually(
        lambda: waiting_for_the_lock(Path(f"{worker.database_file}.writer-lock")),
        what="the worker to take the message and wait for the database",
    )
    return str(sent.message_id), str(sent.options["redis_message_id"])


def test_a_worker_told_to_stop_finishes_the_message_it_holds_then_exits_0(workers):
    worker = workers()
    worker.migrate()
    writer = SQLiteWriterLock(str(worker.database_file.resolve()))
    worker.start()
    with writer:
        message_id, _ = hold_the_message(worker)
        worker.stop()
        eventually(lambda: worker.logged("Stopping worker process"), what="the SIGTERM")

    assert worker.wait() == 0
    assert worker.handled(message_id) == 1
    assert worker.unacknowledged() == set()


def test_a_message_still_held_when_the_grace_period_ends_goes_to_the_next_worker(workers):
    worker = workers(WORKER_SHUTDOWN_TIMEOUT_MS="1000")
    worker.migrate()
    writer = SQLiteWriterLock(str(worker.database_file.resolve()))
    worker.start()
    with writer:
        message_id, kept_as = hold_the_message(worker)
        worker.stop()
        # It stops on its own while its handler is still stuck: the grace period is kept.
        assert worker.wait() == 0
        assert kept_as in worker.unacknowledged()
        assert worker.handled(message_id) == 0

    successor = workers(WORKER_SHUTDOWN_TIMEOUT_MS="1000")
    successor.start()
    eventually(lambda: successor.handled(message_id) == 1, what="the next worker to handle it")
    eventually(lambda: worker.unacknowledged() == set(), what="the message to be acknowledged")


# --- a worker's metrics ---------------------------------------------------------------------------


def test_a_worker_given_a_metrics_directory_serves_each_actors_message_count(workers, tmp_path):
    port = free_port(0)
    worker = workers(
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "worker-metrics"), WORKER_METRICS_PORT=str(port)
    )
    worker.migrate()
    worker.start()
    sent = worker.broker.enqueue(message_for(events.REQUEST_SUBMITTED, submitted()))
    eventually(lambda: worker.handled(str(sent.message_id)) == 1, what="the message handled")

    def counted() -> bool:
        try:
            scraped = requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
        except requests.ConnectionError:
            return False
        return 'dramatiq_messages_total{actor_name="request.submitted.v1"' in scraped

    eventually(counted, what="dramatiq's count of the actor's messages on the metrics port")
    worker.stop()
    assert worker.wait() == 0


def test_a_scheduler_given_a_metrics_port_serves_its_metrics_beyond_the_container(workers):
    port = free_port(0)
    scheduler = workers(SCHEDULER_METRICS_PORT=str(port))
    scheduler.migrate()
    with scheduler.log.open("ab") as log:
        scheduler.process = subprocess.Popen(
            [sys.executable, str(ENTRYPOINT), "scheduler"],
            cwd=ROOT,
            env=scheduler.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def served() -> bool:
        try:
            return "python_info" in requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
        except requests.ConnectionError:
            return False

    eventually(served, what="the scheduler's metrics on its port")
    listening = Path(f"/proc/{scheduler.process.pid}/net/tcp").read_text()
    # Bound to every address (0.0.0.0 is 00000000), not to the loopback alone.
    assert f"00000000:{port:04X}" in listening
    scheduler.stop()
    assert scheduler.wait() == 0


def test_a_migration_that_keeps_failing_is_tried_three_times_then_fails_the_job(tmp_path):
    # A database "file" that is a directory: reachable as SQLite needs nothing, never migrated.
    (tmp_path / "dispatch.db").mkdir()
    env = entrypoint_env(DISPATCH_DATABASE_URL=f"sqlite:///{tmp_path}/dispatch.db")

    finished = entrypoint("migrate", env=env)

    assert finished.returncode == 1
    retries = [line for line in finished.stderr.splitlines() if line.startswith("migrate: ")]
    assert retries == [
        "migrate: attempt 1 of 3 exited 1; again in 2 s",
        "migrate: attempt 2 of 3 exited 1; again in 2 s",
    ]
