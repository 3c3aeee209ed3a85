"""The command line every service shares: ``python -m services.<name> <command>``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from prometheus_client import start_http_server

from shared.auth import ALL_SERVICES, TOKEN_ROLES, issue_token
from shared.dead_letters import list_dead_letters, replay_dead_letter
from shared.logs import configure_logging
from shared.migrations import current_revision, downgrade, upgrade
from shared.relay import drain
from shared.runtime import ServiceRuntime
from shared.scheduler import Scheduler
from shared.settings import SettingsError
from shared.timers import Timers

Command = Callable[[ServiceRuntime, argparse.Namespace], int]
MIN_PURGE_DAYS = 8


def _migrate(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    upgrade(runtime.migrations, runtime.settings.database_url, args.revision)
    print(f"{runtime.name}: database at {current_revision(runtime.settings.database_url)}")
    return 0


def _downgrade(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    url = runtime.settings.database_url
    downgrade(runtime.migrations, url, args.revision)
    print(f"{runtime.name}: database at {current_revision(url) or 'base (empty)'}")
    return 0


def _relay(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    if args.once:
        print(f"{runtime.name}: published {drain(runtime.relay())} event(s)")
        return 0
    runtime.relay().run_until_signalled()
    return 0


def _scheduler(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    # Each service declares its timer handlers and jobs in services/<name>/timers.py, as its
    # worker's consumers are in actors.py; loading it registers them on the service's Timers.
    interval = runtime.settings.scheduler_interval_s if args.interval is None else args.interval
    if interval <= 0:
        print("--interval must be above 0", file=sys.stderr)
        return 2
    importlib.import_module(f"services.{runtime.name}.timers")
    timers = Timers.on(runtime.metadata)
    if timers is None:
        print(f"{runtime.name} has no timers table", file=sys.stderr)
        return 2
    scheduler = Scheduler(
        service=runtime.name,
        db=runtime.db,
        timers=timers,
        interval_s=interval,
        max_attempts=runtime.settings.max_retries,
    )
    if args.once:
        fired, ran = scheduler.fire_due(), scheduler.run_jobs()
        scheduler.release_lease()
        print(f"{runtime.name}: fired {len(fired)} timer(s), ran {len(ran)} job(s)")
        return 0
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=args.metrics_host)
    scheduler.run_until_signalled()
    return 0


def _listed(lines: Sequence[str], what: str) -> int:
    """Print one line per item on stdout and how many there are on stderr."""
    for line in lines:
        print(line)
    print(f"{len(lines)} {what}", file=sys.stderr)
    return 0


def _acted_on(ids: Sequence[str], missing: Sequence[str], *, none: str, done: str) -> int:
    """Say which ids were not found (exit 1 if any) and how many were acted on."""
    for item in missing:
        print(f"{none} {item}", file=sys.stderr)
    print(done.format(len(ids) - len(missing)))
    return 1 if missing else 0


def _timers(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    timers = Timers.on(runtime.metadata)
    if timers is None:
        print(f"{runtime.name} has no timers table", file=sys.stderr)
        return 2
    if args.action == "failed":
        with runtime.db.read() as session:
            failed = timers.failed(session)
        return _listed(
            [
                f"{timer.key}\t{timer.what}\tdue={timer.due_at:%Y-%m-%d %H:%M:%S}"
                f"\tattempts={timer.attempts}\t{timer.last_error}"
                for timer in failed
            ],
            "failed timer(s)",
        )
    with runtime.db.transaction() as session:
        keys = args.keys or [timer.key for timer in timers.failed(session)]
        missing = [key for key in keys if not timers.retry(session, key)]
    return _acted_on(keys, missing, none="no failed timer", done="{} timer(s) to fire again")


def _dead_letters(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    db, table = runtime.db, runtime.messaging.dead_letters
    if args.action == "list":
        return _listed(
            [
                f"{letter.message_id}\t{letter.actor}\t{letter.failed_at:%Y-%m-%d %H:%M:%S}"
                f"\tfailures={letter.failures}\treplays={letter.replays}\t{letter.error}"
                for letter in list_dead_letters(db, table, include_replayed=args.all)
            ],
            "dead letter(s)",
        )
    ids = args.message_ids or [letter.message_id for letter in list_dead_letters(db, table)]
    missing = [
        message_id
        for message_id in ids
        if not replay_dead_letter(db, table, runtime.broker, message_id)
    ]
    return _acted_on(ids, missing, none="no dead letter", done="replayed {} message(s)")


def _purge(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    if args.older_than_days < MIN_PURGE_DAYS:
        print(
            f"--older-than-days must be at least {MIN_PURGE_DAYS}: the broker may redeliver a "
            "message for up to a week, and a forgotten message id would be handled again",
            file=sys.stderr,
        )
        return 2
    with runtime.db.transaction() as session:
        removed = runtime.messaging.purge(session, older_than=timedelta(days=args.older_than_days))
    print(f"{runtime.name}: removed " + ", ".join(f"{n} {table}" for table, n in removed.items()))
    return 0


def _issue_token(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    try:
        token = issue_token(
            runtime.settings.auth_secret,
            subject=args.subject,
            role=args.role,
            ttl=timedelta(days=args.days),
            audience=tuple(args.audience),
        )
    except ValueError as error:
        print(f"cannot issue the token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def run_cli(
    runtime_factory: Callable[[], ServiceRuntime],
    argv: Sequence[str] | None = None,
    *,
    extra: Mapping[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]]
    | None = None,
) -> int:
    """Parse ``argv`` and run one command against the service's runtime."""
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)

    migrate = commands.add_parser("migrate", help="apply the database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(run=_migrate)

    down = commands.add_parser(
        "downgrade", help="undo migrations down to a revision (stop the service's processes first)"
    )
    down.add_argument("revision", help="the revision to go back to, or 'base' for none")
    down.set_defaults(run=_downgrade)

    relay = commands.add_parser("relay", help="publish the outbox to the broker")
    relay.add_argument("--once", action="store_true", help="publish what is pending, then exit")
    relay.set_defaults(run=_relay)

    scheduler = commands.add_parser("scheduler", help="fire due timers and run periodic jobs")
    scheduler.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between polls when nothing is due sooner (default: SCHEDULER_INTERVAL_S, 1)",
    )
    scheduler.add_argument(
        "--once", action="store_true", help="fire what is due and run due jobs, then exit"
    )
    scheduler.add_argument(
        "--metrics-port",
        type=int,
        help="serve this process's metrics (timer lateness) on PORT",
    )
    scheduler.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address the metrics are served on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    scheduler.set_defaults(run=_scheduler)

    timers = commands.add_parser("timers", help="list failed timers or fire them again")
    timers.add_argument("action", choices=("failed", "retry"))
    timers.add_argument("keys", nargs="*", help="retry these (default: every failed timer)")
    timers.set_defaults(run=_timers)

    dead = commands.add_parser("dead-letters", help="list or replay dead letters")
    dead.add_argument("action", choices=("list", "replay"))
    dead.add_argument("message_ids", nargs="*", help="replay these (default: all not replayed)")
    dead.add_argument("--all", action="store_true", help="list replayed ones too")
    dead.set_defaults(run=_dead_letters)

    purge = commands.add_parser(
        "purge", help="forget published events, handled message ids and old idempotency keys"
    )
    purge.add_argument("--older-than-days", type=int, default=14)
    purge.set_defaults(run=_purge)

    token = commands.add_parser(
        "issue-token", help="sign a bearer token for a person (staff, volunteer or resident)"
    )
    token.add_argument("role", choices=TOKEN_ROLES)
    token.add_argument("subject", help="the person's id (a volunteer's or resident's id)")
    token.add_argument("--days", type=int, default=30, help="lifetime (default 30)")
    token.add_argument(
        "--audience",
        nargs="+",
        choices=ALL_SERVICES,
        default=list(ALL_SERVICES),
        help="the services it is good at (default: all)",
    )
    token.set_defaults(run=_issue_token)

    for name, (help_text, configure, run) in (extra or {}).items():
        sub = commands.add_parser(name, help=help_text)
        configure(sub)
        sub.set_defaults(run=run)

    args = parser.parse_args(argv)
    try:
        runtime = runtime_factory()
    except SettingsError as error:
        # The operator has settings to fix, not code to debug: one line, no traceback.
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    configure_logging(runtime.settings)
    code: int = args.run(runtime, args)
    return code
