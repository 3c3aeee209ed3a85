"""``make chaos``: many requests through the whole system while its processes are killed.

The system runs as ``make run`` runs it (every Procfile process under the supervisor, which
restarts what dies) with databases, an embedded Redis (AOF) and ports of its own. Requests are
posted through intake with an API key, a share of them posted twice under the same
Idempotency-Key, and each is driven through acceptance and completion (the volunteer's token)
and confirmation (the resident's token). Meanwhile every kind of process of every service is
SIGKILLed at a random time and Redis is stopped and started once. Clients retry connection errors
and 5xx answers with the same Idempotency-Key, as a careful client does.

Then the audit, through the APIs and the databases: every request confirmed, one assignment and
one credit (``earn:<request id>``) per request, the ledger balanced, no notification twice, every
outstanding dead letter listed with its error. Any loss or duplicate fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis as redis_client
import requests
import sqlalchemy
from sqlalchemy import text

from devtools.community import Databases, place_services, prepare_community
from devtools.processes import kill_group, procfile_commands, venv_env, wait_until_ready
from devtools.redis_server import EmbeddedRedis
from devtools.supervisor import Backoff, Supervisor
from shared.topology import SERVICES, queue_of

HOURS = Decimal("1.5")
CATEGORY = "knife_sharpening"
# The four notifications each request causes: (template, who receives it).
NOTIFICATIONS = (
    ("assignment.created", "volunteer"),
    ("request.accepted", "resident"),
    ("request.completed", "resident"),
    ("points.credited", "volunteer"),
)


class ChaosFailed(RuntimeError):
    pass


def say(message: str) -> None:
    print(message, flush=True)


# --- the careful client -----------------------------------------------------------------------
@dataclass
class Tally:
    posted: int = 0
    duplicate_posts: int = 0
    replayed: int = 0
    retries: int = 0
    already_done: int = 0
    doubled_answers: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)

    def note(self, name: str, line: str) -> None:
        with self.lock:
            getattr(self, name).append(line)


class Client:
    """Calls the public APIs as the demo's people do; retries what a crash may have cut off."""

    def __init__(self, credentials: Mapping[str, Any], tally: Tally, *, give_up_at: float) -> None:
        self.urls = credentials["urls"]
        self.tally = tally
        self.give_up_at = give_up_at
        self.headers = {
            "system": {"X-API-Key": credentials["intake_api_key"]},
            "staff": {"Authorization": f"Bearer {credentials['staff_token']}"},
            "volunteer": {"Authorization": f"Bearer {credentials['volunteer']['token']}"},
            "resident": {"Authorization": f"Bearer {credentials['resident']['token']}"},
        }
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        who: str,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """The first answer under 500; the same request again after a connection error or 5xx."""
        attempt = 0
        while True:
            try:
                response = self._session().request(
                    method,
                    self.urls[service] + path,
                    headers={**self.headers[who], **(headers or {})},
                    timeout=(3, 30),
                    **kwargs,
                )
                if response.status_code < 500:
                    return response
                reason = f"{response.status_code} {response.text[:200]}"
            except requests.RequestException as error:
                # A connection cut mid-answer may leave a broken pooled connection behind.
                self._local.session = requests.Session()
                reason = type(error).__name__
            attempt += 1
            self.tally.add("retries")
            if time.monotonic() > self.give_up_at:
                raise ChaosFailed(f"{method} {service}{path}: still {reason} after {attempt} tries")
            time.sleep(min(0.1 * 2 ** min(attempt, 5), 2.0) * random.uniform(0.5, 1.0))

    def total(self, service: str, path: str, *, who: str, **params: Any) -> int:
        """How many items a list endpoint matches, from its pagination header."""
        response = self.call("GET", service, path, who=who, params={**params, "page_size": 1})
        if response.status_code != 200:
            raise ChaosFailed(f"GET {service}{path} answered {response.status_code}")
        return int(json.loads(response.headers["X-Pagination"])["total"])


# --- posting and driving ----------------------------------------------------------------------
def post_requests(
    client: Client,
    credentials: Mapping[str, Any],
    created: dict[str, str],
    *,
    count: int,
    duplicate_share: float,
    run_id: str,
    concurrency: int,
    spread: float,
    rng: random.Random,
) -> None:
    """Post ``count`` requests over ``spread`` seconds at the least, a share of them twice;
    ``created`` gets the request id each external_ref was answered with."""
    resident = credentials["resident"]
    begin = time.monotonic()
    twice = set(rng.sample(range(count), round(count * duplicate_share)))
    lock = threading.Lock()

    def post(index: int) -> None:
        # Paced, so that the requests meet the kills rather than all come before them.
        time.sleep(max(0.0, begin + index * spread / count - time.monotonic()))
        reference = f"chaos-{run_id}-{index}"
        body = {
            "category": CATEGORY,
            "summary": f"Chaos request {index}",
            "resident_id": resident["id"],
            "location": resident["location"],
            "channel": "hotline",
            "external_ref": reference,
        }
        headers = {"Idempotency-Key": reference}
        ids = []
        for _ in range(2 if index in twice else 1):
            response = client.call(
                "POST", "intake", "/v1/requests", who="system", headers=headers, json=body
            )
            if response.status_code != 201:
                client.tally.note(
                    "refusals", f"POST {reference}: {response.status_code} {response.text[:200]}"
                )
                return
            client.tally.add("replayed", response.headers.get("Idempotent-Replayed") == "true")
            ids.append(response.json()["id"])
        client.tally.add("posted")
        client.tally.add("duplicate_posts", len(ids) - 1)
        if len(set(ids)) > 1:
            client.tally.note("doubled_answers", f"{reference}: answered {sorted(set(ids))}")
        with lock:
            created[reference] = ids[0]

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, range(count)))


class Driver:
    """Moves every request on as soon as it can: accept, complete, confirm, in sweeps."""

    def __init__(self, client: Client, *, concurrency: int) -> None:
        self.client = client
        self.pool = ThreadPoolExecutor(concurrency)

    def _step(self, service: str, path: str, who: str, **kwargs: Any) -> int:
        response = self.client.call("POST", service, path, who=who, **kwargs)
        if response.status_code == 200:
            return 1
        if response.status_code == 409:
            # A retry of a step whose first try committed before the connection was cut.
            self.client.tally.add("already_done")
            return 0
        self.client.tally.note(
            "refusals", f"POST {service}{path}: {response.status_code} {response.text[:200]}"
        )
        return 0

    def _listed(self, service: str, path: str, who: str, status: str) -> list[dict[str, Any]]:
        response = self.client.call(
            "GET", service, path, who=who, params={"status": status, "page_size": 100}
        )
        if response.status_code != 200:
            raise ChaosFailed(f"GET {service}{path} answered {response.status_code}")
        listed: list[dict[str, Any]] = response.json()
        return listed

    def sweep(self) -> int:
        """One pass over what waits for each step; how many steps were taken."""
        steps = [
            (
                self._listed("dispatch", "/v1/assignments", "volunteer", "assigned"),
                lambda a: self._step(
                    "dispatch", f"/v1/assignments/{a['id']}/acceptance", "volunteer"
                ),
            ),
            (
                self._listed("dispatch", "/v1/assignments", "volunteer", "accepted"),
                lambda a: self._step(
                    "dispatch",
                    f"/v1/assignments/{a['id']}/completion",
                    "volunteer",
                    json={"hours": str(HOURS), "note": "Sharpened"},
                ),
            ),
            (
                self._listed("intake", "/v1/requests", "system", "completed"),
                lambda r: self._step("intake", f"/v1/requests/{r['id']}/confirmation", "resident"),
            ),
        ]
        return sum(sum(self.pool.map(act, listed)) for listed, act in steps)

    def drive(self, *, is_finished: Callable[[int], bool], deadline: float) -> int:
        """Sweep until ``is_finished(confirmed requests)``; the confirmed count."""
        confirmed = 0
        while time.monotonic() < deadline:
            moved = self.sweep()
            confirmed = self.client.total(
                "intake", "/v1/requests", who="system", status="confirmed"
            )
            if is_finished(confirmed):
                break
            if not moved:
                time.sleep(0.3)
        return confirmed

    def close(self) -> None:
        self.pool.shutdown()


# --- the chaos --------------------------------------------------------------------------------
class Monkey(threading.Thread):
    """SIGKILLs every Procfile process at a random time, round after round, and restarts Redis
    once in the first round; asked to finish, it completes the first round before it stops."""

    def __init__(
        self,
        supervisor: Supervisor,
        redis: EmbeddedRedis,
        names: Iterable[str],
        *,
        rng: random.Random,
        gap: tuple[float, float],
        started: float,
    ) -> None:
        super().__init__(name="chaos monkey", daemon=True)
        self.supervisor = supervisor
        self.redis = redis
        self.names = list(names)
        self.rng = rng
        self.gap = gap
        self.started = started
        self.kills: Counter[str] = Counter()
        self.redis_restarts = 0
        self.failure: str | None = None
        self._finish = threading.Event()
        self._halt = threading.Event()

    def say(self, message: str) -> None:
        say(f"  {time.monotonic() - self.started:6.1f}s  {message}")

    def run(self) -> None:
        try:
            first = [*self.names, "redis"]
            self.rng.shuffle(first)
            rounds = 0
            while not (self._finish.is_set() and rounds > 0):
                targets = first if rounds == 0 else self.rng.sample(self.names, len(self.names))
                for target in targets:
                    if self._finish.is_set():
                        # Asked to finish: the rest of the first round comes quickly.
                        time.sleep(0.5)
                    else:
                        self._finish.wait(self.rng.uniform(*self.gap))
                    if self._halt.is_set() or (self._finish.is_set() and rounds > 0):
                        return
                    if target == "redis":
                        self.restart_redis()
                    else:
                        self.kill(target)
                rounds += 1
        except Exception as error:  # reported by finish(), not lost in a thread
            self.failure = f"{type(error).__name__}: {error}"

    def kill(self, name: str) -> None:
        pid = self.wait_for_pid(name, not_pid=None)
        kill_group(pid)
        killed_at = time.monotonic()
        self.kills[name] += 1
        restarted = self.wait_for_pid(name, not_pid=pid)
        self.say(
            f"SIGKILL {name} (pid {pid}); the supervisor restarted it as pid {restarted} "
            f"{time.monotonic() - killed_at:.1f}s later"
        )

    def wait_for_pid(self, name: str, *, not_pid: int | None, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while (pid := self.supervisor.pid(name)) is None or pid == not_pid:
            if time.monotonic() > deadline:
                raise ChaosFailed(f"{name} was not running again after {timeout:.0f}s")
            time.sleep(0.05)
        return pid

    def restart_redis(self) -> None:
        self.redis.stop()
        stopped_at = time.monotonic()
        time.sleep(2.0)
        self.redis.start()
        self.redis_restarts += 1
        self.say(
            f"stopped Redis (AOF in {self.redis.directory}) and started it again on port "
            f"{self.redis.port} {time.monotonic() - stopped_at:.1f}s later"
        )

    def finish(self) -> None:
        """Complete the first round, then stop; fail if the chaos itself failed."""
        self._finish.set()
        self.join()
        if self.failure:
            raise ChaosFailed(f"the chaos itself failed: {self.failure}")

    def stop(self) -> None:
        """Stop after the current kill, whatever round it is in."""
        self._halt.set()
        self._finish.set()
        self.join()

    @property
    def is_done(self) -> bool:
        """Every process killed once and Redis restarted: the first round is over."""
        return self.redis_restarts > 0 and all(self.kills[name] for name in self.names)


# --- the audit --------------------------------------------------------------------------------
@dataclass
class Observed:
    """What the databases and APIs hold after the run, read once."""

    requests: list[tuple[str, str, str]]  # (external_ref, id, status)
    assignments: list[tuple[str, str]]  # (request_id, status)
    credits: list[tuple[str, str, Decimal]]  # (transfer id, request_id, amount)
    entries: list[tuple[int, Decimal]]  # (account id, amount)
    balances: dict[int, tuple[str, Decimal]]  # account id -> (holder, balance)
    notifications: list[tuple[str, str, str]]  # (source message id, template, request_id)
    dead_letters: list[tuple[str, str, str, str]]  # (service, message id, actor, error)
    confirmed_by_api: int
    volunteer_balance_by_api: Decimal


@dataclass
class Verdict:
    lost: set[str] = field(default_factory=set)
    doubled: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def fail(self, line: str, *, lost: Iterable[str] = (), doubled: Iterable[str] = ()) -> None:
        self.problems.append(line)
        self.lost.update(lost)
        self.doubled.update(doubled)


def _decimal(value: Any) -> Decimal:
    # SQLite hands NUMERIC back as float; its shortest repr is the two-decimal amount stored.
    return Decimal(str(value)).quantize(Decimal("0.01"))


def judge(*, posted: Mapping[str, str], observed: Observed, points_per_request: Decimal) -> Verdict:
    """Every posted request confirmed, assigned once, credited once and told once; a balanced
    ledger; ``lost`` and ``doubled`` name the external references at fault."""
    verdict = Verdict()
    by_reference: dict[str, list[tuple[str, str]]] = {}
    for reference, request_id, status in observed.requests:
        by_reference.setdefault(reference, []).append((request_id, status))
    reference_of = {rid: ref for ref, rows in by_reference.items() for rid, _ in rows}
    missing = [ref for ref in posted if ref not in by_reference]
    if missing:
        verdict.fail(
            f"intake: no request for {len(missing)} posted, e.g. {missing[:3]}", lost=missing
        )
    doubled = [ref for ref, rows in by_reference.items() if len(rows) > 1]
    if doubled:
        verdict.fail(f"intake: {len(doubled)} posted twice, e.g. {doubled[:3]}", doubled=doubled)
    unconfirmed = [
        ref for ref, rows in by_reference.items() if any(s != "confirmed" for _, s in rows)
    ]
    if unconfirmed:
        statuses = Counter(s for rows in by_reference.values() for _, s in rows)
        verdict.fail(
            f"intake: {len(unconfirmed)} requests not confirmed ({dict(statuses)})",
            lost=unconfirmed,
        )
    if observed.confirmed_by_api != len(observed.requests):
        verdict.fail(
            f"intake API: {observed.confirmed_by_api} confirmed of {len(observed.requests)}"
        )

    def per_request(rows: Iterable[str], what: str, service: str) -> None:
        counts = Counter(rows)
        absent = [ref_ for rid, ref_ in reference_of.items() if counts[rid] == 0]
        twice = [reference_of.get(rid, rid) for rid, n in counts.items() if n > 1]
        if absent:
            verdict.fail(f"{service}: {len(absent)} requests without {what}", lost=absent)
        if twice:
            verdict.fail(f"{service}: {len(twice)} requests with {what} twice", doubled=twice)

    per_request((rid for rid, _ in observed.assignments), "an assignment", "dispatch")
    open_assignments = [rid for rid, status in observed.assignments if status != "confirmed"]
    if open_assignments:
        verdict.fail(
            f"dispatch: {len(open_assignments)} assignments not closed",
            lost=[reference_of.get(rid, rid) for rid in open_assignments],
        )
    per_request((rid for _, rid, _ in observed.credits), "a credit", "points")
    wrong = [
        reference_of.get(rid, rid)
        for transfer_id, rid, amount in observed.credits
        if transfer_id != f"earn:{rid}" or amount != points_per_request
    ]
    if wrong:
        verdict.fail(f"points: {len(wrong)} credits not earn:<id> of {points_per_request}")
    total = sum((amount for _, amount in observed.entries), Decimal(0))
    if total != 0:
        verdict.fail(f"points: the ledger's entries sum to {total}, not 0")
    sums: dict[int, Decimal] = defaultdict(Decimal)
    for account, amount in observed.entries:
        sums[account] += amount
    off = [
        f"{holder} {balance} != {sums[account]}"
        for account, (holder, balance) in observed.balances.items()
        if balance != sums[account]
    ]
    if off:
        verdict.fail(f"points: balances differ from their entries: {off[:3]}")
    expected_balance = points_per_request * len(observed.requests)
    if observed.volunteer_balance_by_api != expected_balance:
        verdict.fail(
            f"points API: the volunteer's balance is {observed.volunteer_balance_by_api}, "
            f"expected {expected_balance}"
        )
    sources = Counter(source for source, _, _ in observed.notifications)
    repeated = [source for source, n in sources.items() if n > 1]
    if repeated:
        verdict.fail(f"notify: {len(repeated)} messages delivered twice, e.g. {repeated[:3]}")
    for template, _ in NOTIFICATIONS:
        per_request(
            (rid for _, kind, rid in observed.notifications if kind == template),
            f"a {template} notification",
            "notify",
        )
    return verdict


def read_databases(urls: Mapping[str, str], *, run_id: str) -> dict[str, Any]:
    """The rows the audit needs, straight from each service's database."""

    def rows(service: str, query: str, **params: Any) -> list[Any]:
        engine = sqlalchemy.create_engine(urls[service])
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(query), params))
        finally:
            engine.dispose()

    def data_of(value: Any) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
        return loaded

    found: dict[str, Any] = {
        "requests": [
            (ref, rid, status)
            for ref, rid, status in rows(
                "intake",
                "SELECT external_ref, id, status FROM requests WHERE external_ref LIKE :prefix",
                prefix=f"chaos-{run_id}-%",
            )
        ],
        "assignments": [
            (rid, status)
            for rid, status in rows("dispatch", "SELECT request_id, status FROM assignments")
        ],
        "credits": [
            (tid, rid, _decimal(amount))
            for tid, rid, amount in rows(
                "points", "SELECT id, request_id, amount FROM transfers WHERE kind = 'earn'"
            )
        ],
        "entries": [
            (account, _decimal(amount))
            for account, amount in rows("points", "SELECT account_id, amount FROM entries")
        ],
        "balances": {
            account: (holder, _decimal(balance))
            for account, holder, balance in rows(
                "points", "SELECT id, holder, balance FROM accounts"
            )
        },
        "notifications": [
            (source, template, data_of(data).get("request_id", ""))
            for source, template, data in rows(
                "notify", "SELECT source_message_id, template, data FROM inbox_messages"
            )
        ],
        "dead_letters": [
            (service, message_id, actor, error)
            for service in SERVICES
            for message_id, actor, error in rows(
                service,
                "SELECT message_id, actor, error FROM dead_letters WHERE replayed_at IS NULL",
            )
        ],
    }
    return found


def is_drained(urls: Mapping[str, str], broker_url: str, namespace: str) -> bool:
    """Nothing left to publish in any outbox, nothing queued, delayed or held by a worker."""

    def pending(service: str) -> int:
        engine = sqlalchemy.create_engine(urls[service])
        try:
            with engine.connect() as connection:
                return int(
                    connection.scalar(
                        text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    )
                    or 0
                )
        finally:
            engine.dispose()

    if any(pending(service) for service in SERVICES):
        return False
    client = redis_client.Redis.from_url(broker_url)
    try:
        # A message stays in its queue's .msgs hash from enqueue until a worker acknowledges it.
        return not any(
            client.hlen(f"{namespace}:{queue_of(service)}{suffix}.msgs")
            for service in SERVICES
            for suffix in ("", ".DQ")
        )
    except redis_client.RedisError:
        return False
    finally:
        client.close()


# --- the run ----------------------------------------------------------------------------------
@dataclass
class System:
    """The whole system on this machine: its own directory, ports, databases and Redis."""

    work: Path
    env: dict[str, str]
    urls: dict[str, str]
    database_urls: dict[str, str]
    redis: EmbeddedRedis
    supervisor: Supervisor
    thread: threading.Thread

    def stop(self) -> None:
        self.supervisor.stop()
        if self.thread.ident is not None:
            self.thread.join()
        self.redis.stop()


def start_system(work: Path, *, run_id: str, databases: Databases | None) -> System:
    env = {
        **os.environ,
        "REDVEST_ENV": "development",
        "REDVEST_VAR_DIR": str(work),
        "REDVEST_AUTH_SECRET": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "BROKER_NAMESPACE": f"redvest-chaos-{run_id}",
        # A killed worker's messages come back within seconds, not the production 30 s.
        "BROKER_HEARTBEAT_TIMEOUT_MS": "10000",
        "WEB_CONCURRENCY": "2",
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "4",
    }
    # Always a Redis of its own: the chaos restarts it.
    env.pop("REDIS_URL", None)
    env.pop("BROKER_URL", None)
    redis = place_services(env, work, databases)
    assert redis is not None
    urls = {s: f"http://127.0.0.1:{env[f'{s.upper()}_PORT']}" for s in SERVICES}
    log = (work / "processes.log").open("a", buffering=1)
    supervisor = Supervisor(
        procfile_commands(),
        env=venv_env(env),
        # Restart at once after each kill; the chaos kills the same process more than once.
        backoff=Backoff(first=0.5, longest=2.0, reset_after=5.0),
        grace=10.0,
        pid_dir=work / "run",
        output=log,
    )
    thread = threading.Thread(
        target=supervisor.run, kwargs={"handle_signals": False}, name="supervisor", daemon=True
    )
    database_urls = {s: env[f"{s.upper()}_DATABASE_URL"] for s in SERVICES}
    return System(work, env, urls, database_urls, redis, supervisor, thread)


def drive_under_chaos(
    system: System,
    credentials: Mapping[str, Any],
    client: Client,
    monkey: Monkey,
    posted: dict[str, str],
    args: argparse.Namespace,
    *,
    run_id: str,
    deadline: float,
) -> None:
    """Post and drive every request while the monkey kills; then drive home what is left."""
    driver = Driver(client, concurrency=args.concurrency)
    with ThreadPoolExecutor(1) as poster:
        posting = poster.submit(
            post_requests,
            client,
            credentials,
            posted,
            count=args.requests,
            duplicate_share=args.duplicates,
            run_id=run_id,
            concurrency=args.concurrency,
            # As long as the first round of kills takes, so that every kill meets work.
            spread=(len(monkey.names) + 1) * args.kill_every,
            rng=random.Random(args.seed),
        )
        try:
            driver.drive(
                is_finished=lambda confirmed: (
                    posting.done()
                    and confirmed >= len(posted)
                    and (monkey.is_done or not monkey.is_alive())
                ),
                deadline=deadline,
            )
            posting.result()
            monkey.finish()
            # Whatever the last kills held back, drive it home with every process left alone.
            driver.drive(is_finished=lambda confirmed: confirmed >= len(posted), deadline=deadline)
        finally:
            monkey.stop()
            driver.close()
    while not is_drained(
        system.database_urls, system.env["BROKER_URL"], system.env["BROKER_NAMESPACE"]
    ):
        if time.monotonic() > deadline:
            raise ChaosFailed("the system did not drain its backlog in time")
        time.sleep(0.5)


def chaos(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.time_limit
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="redvest-chaos-"))
    databases = Databases(args.postgres, f"redvest_chaos_{run_id}") if args.postgres else None
    system = start_system(work, run_id=run_id, databases=databases)
    is_ok = False
    try:
        credentials = prepare_community(system.env, databases)
        system.thread.start()
        wait_until_ready(system.urls.values(), timeout=120)
        names = list(procfile_commands())
        say(
            f"chaos: {len(names)} processes ({', '.join(names)}) on "
            f"{'PostgreSQL' if databases else 'SQLite'}, Redis at {system.redis.url}; "
            f"logs in {work}"
        )
        say(
            f"chaos: posting {args.requests} requests ({args.duplicates:.0%} of them twice), "
            "killing processes meanwhile:"
        )
        tally = Tally()
        posted: dict[str, str] = {}
        monkey = Monkey(
            system.supervisor,
            system.redis,
            names,
            rng=random.Random(args.seed),
            gap=(args.kill_every * 0.5, args.kill_every * 1.5),
            started=started,
        )
        monkey.start()
        failure = ""
        try:
            drive_under_chaos(
                system,
                credentials,
                Client(credentials, tally, give_up_at=deadline),
                monkey,
                posted,
                args,
                run_id=run_id,
                deadline=deadline,
            )
        except ChaosFailed as error:
            failure = str(error)
            say(f"chaos: FAILED: {failure}; auditing what there is")
        say(
            f"chaos: {sum(monkey.kills.values())} kills, {monkey.redis_restarts} Redis restart; "
            f"{tally.duplicate_posts} duplicate POSTs ({tally.replayed} answered as replays), "
            f"{tally.retries} calls retried after a connection error or 5xx, "
            f"{tally.already_done} steps found already done on retry"
        )
        is_ok = audit(system, credentials, posted, tally, run_id=run_id, requested=args.requests)
        is_ok = is_ok and not failure
        say(f"chaos: took {time.monotonic() - started:.0f}s")
    except ChaosFailed as error:
        say(f"chaos: FAILED: {error}")
    finally:
        system.stop()
        if databases:
            databases.drop()
        if is_ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"chaos: logs and databases kept in {work}")
    return 0 if is_ok else 1


def audit(
    system: System,
    credentials: Mapping[str, Any],
    posted: Mapping[str, str],
    tally: Tally,
    *,
    run_id: str,
    requested: int,
) -> bool:
    client = Client(credentials, tally, give_up_at=time.monotonic() + 60)
    rates = client.call("GET", "points", "/v1/rates", who="staff").json()
    rate = next(Decimal(str(r["points_per_hour"])) for r in rates if r["category"] == CATEGORY)
    volunteer = f"volunteer:{credentials['volunteer']['id']}"
    account = client.call("GET", "points", f"/v1/accounts/{volunteer}", who="volunteer")
    found = read_databases(system.database_urls, run_id=run_id)
    observed = Observed(
        **found,
        confirmed_by_api=client.total("intake", "/v1/requests", who="system", status="confirmed"),
        volunteer_balance_by_api=_decimal(account.json()["balance"])
        if account.status_code == 200
        else Decimal(0),
    )
    verdict = judge(
        posted=posted,
        observed=observed,
        points_per_request=(HOURS * rate).quantize(Decimal("0.01")),
    )
    for line in tally.refusals[:10]:
        say(f"  refused: {line}")
    for line in tally.doubled_answers:
        verdict.fail(f"intake: a duplicate POST got another request: {line}")
    never_posted = requested - len(posted)
    say(
        f"chaos: audit of {len(observed.requests)} requests: "
        f"{observed.confirmed_by_api} confirmed (API), {len(observed.assignments)} assignments, "
        f"{len(observed.credits)} credits, {len(observed.entries)} ledger entries on "
        f"{len(observed.balances)} accounts, {len(observed.notifications)} notifications"
    )
    for problem in verdict.problems:
        say(f"  {problem}")
    for service, message_id, actor, error in observed.dead_letters:
        say(f"  dead letter in {service}: {message_id} ({actor}): {error[:300]}")
    lost = len(verdict.lost) + never_posted
    say(
        f"chaos: posted {len(posted)}, created {len({rid for _, rid, _ in observed.requests})}, "
        f"lost {lost}, doubled {len(verdict.doubled)}, "
        f"dead letters {len(observed.dead_letters)}"
    )
    return not verdict.problems and not tally.refusals and never_posted == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.chaos", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests to post (2000)")
    parser.add_argument(
        "--duplicates", type=float, default=0.1, help="share posted twice under one key (0.1)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    parser.add_argument(
        "--kill-every", type=float, default=3.0, help="mean seconds between kills (3)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=3600.0, help="seconds before the run fails (3600)"
    )
    parser.add_argument("--seed", type=int, help="seed of the random choices, to repeat a run")
    parser.add_argument("--keep", action="store_true", help="keep logs and databases")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on PostgreSQL: databases of the run's own are created on this server "
        "(e.g. postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards",
    )
    return chaos(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
