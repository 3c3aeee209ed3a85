"""``python -m devtools.door_profile``: intake's ``POST /v1/requests`` in this process, timed and
profiled, for work on the door.

The bench's rates move with the machine (see the README); the CPU a POST takes in one process,
with nothing else running, moves much less. This seeds the demo community into databases of
its own (SQLite files, or PostgreSQL with ``--postgres``), posts through Flask's test client
(the test client's own cost included), prints the CPU a POST in a few rounds, and with
``--profile`` where the time goes (cProfile: its own overhead inflates Python code more than C).
The write lock's hold a POST is printed on SQLite. Events go to the Redis broker given (or an
embedded one), under a namespace of the run's own, removed afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from devtools.bench import request_body
from devtools.community import (
    Databases,
    forget_namespace,
    place_services,
    prepare_community,
)


def _post_loop(client: Any, body: dict[str, Any], key: str) -> Any:
    def post() -> None:
        answer = client.post(
            "/v1/requests",
            json=body,
            headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
        )
        if answer.status_code != 201:
            raise SystemExit(f"POST answered {answer.status_code}: {answer.get_data(as_text=True)}")

    return post


def _timed_lock() -> Any:
    """Time every hold of intake's write lock from now on; the seconds so far, when called."""
    from shared.database import SQLiteWriterLock

    held = [0.0]
    enter, leave = SQLiteWriterLock.__enter__, SQLiteWriterLock.__exit__
    taken: dict[int, float] = {}

    def timed_enter(lock: SQLiteWriterLock) -> None:
        enter(lock)
        taken[id(lock)] = time.perf_counter()

    def timed_exit(lock: SQLiteWriterLock, *exc: object) -> None:
        held[0] += time.perf_counter() - taken.pop(id(lock))
        leave(lock, *exc)

    SQLiteWriterLock.__enter__ = timed_enter  # type: ignore[method-assign]
    SQLiteWriterLock.__exit__ = timed_exit  # type: ignore[method-assign]
    return lambda: held[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.door_profile")
    parser.add_argument("--posts", type=int, default=2000, help="POSTs a round (2000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one more round under cProfile")
    parser.add_argument("--top", type=int, default=30, help="functions listed by the profile")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server to use")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="redvest-door-"))
    run_id = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "REDVEST_VAR_DIR": str(work),
        "LOG_LEVEL": "WARNING",
        "BROKER_NAMESPACE": f"redvest-door-{run_id}",
        "REDVEST_AUTH_SECRET": os.environ.get("REDVEST_AUTH_SECRET", secrets.token_urlsafe(48)),
    }
    databases = Databases(args.postgres, f"redvest_door_{run_id}") if args.postgres else None
    redis = place_services(env, work, databases)
    try:
        credentials = prepare_community(env, databases)
        os.environ.update(env)
        from services.intake.app import create_app
        from services.intake.config import runtime

        post = _post_loop(
            create_app().test_client(), request_body(credentials), credentials["intake_api_key"]
        )
        for _ in range(200):
            post()  # imports, caches and first connections
        held = _timed_lock() if runtime().db.is_sqlite else None
        rounds = []
        for _ in range(args.rounds):
            started = time.process_time()
            for _ in range(args.posts):
                post()
            rounds.append((time.process_time() - started) * 1000 / args.posts)
        database = "PostgreSQL" if databases else "SQLite"
        print(
            f"intake POST in process, {database}: CPU a POST "
            + " / ".join(f"{spent:.3f}" for spent in rounds)
            + f" ms ({args.rounds} round(s) of {args.posts}; best {min(rounds):.3f} ms)"
        )
        if held is not None:
            print(f"write lock held a POST: {held() * 1000 / (args.rounds * args.posts):.3f} ms")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.posts):
                post()
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
        publisher = runtime().publish_at_commit()
        if publisher is not None:
            publisher.close()  # its last marks, before the databases go
        runtime().db.dispose()
    finally:
        if redis is not None:
            redis.stop()
        else:
            forget_namespace(env["BROKER_URL"], env["BROKER_NAMESPACE"])
        if databases:
            databases.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
