"""``python -m stack run|demo``: the whole system on one machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys

from honcho.compat import ProcessManager

from stack.processes import DEFAULT_PORTS, ROOT, SERVICES, procfile_commands, venv_env

VAR = ROOT / "var"
CREDENTIALS = VAR / "demo-credentials.json"


def service_urls(env: dict[str, str]) -> dict[str, str]:
    return {
        service: f"http://127.0.0.1:{env.get(f'{service.upper()}_PORT', DEFAULT_PORTS[service])}"
        for service in SERVICES
    }


class _LeaderOnlyTermination(ProcessManager):
    """Stop each process by signalling only its leader, as an orchestrator would.

    honcho signals whole process groups; dramatiq's worker children, signalled both directly
    and by their master, would then stop hard instead of finishing their messages.
    """

    def terminate(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


def run() -> int:
    """Migrate, seed, start every process with honcho; Ctrl-C stops them all."""
    from honcho.manager import Manager

    from stack.community import migrate_all, seed_demo, write_credentials
    from stack.redis_server import EmbeddedRedis

    env = dict(os.environ)
    env.setdefault("REDVEST_VAR_DIR", str(VAR))
    env.setdefault("REDVEST_METRICS_DIR", str(VAR / "metrics"))
    redis = None
    if not (env.get("BROKER_URL") or env.get("REDIS_URL")):
        redis = EmbeddedRedis(VAR / "redis").start()
        env["BROKER_URL"] = redis.url
        print(f"redis: started its own server at {redis.url} (AOF in {VAR / 'redis'})")
    try:
        migrate_all(env)
        urls = service_urls(env)
        credentials = seed_demo(env, urls)
        write_credentials(CREDENTIALS, credentials)
        print("\nRedvest is starting:")
        for service, url in urls.items():
            print(f"  {service:<9} {url}   docs {url}/docs   metrics {url}/metrics")
        print(f"  demo credentials: {CREDENTIALS.relative_to(ROOT)}   walk the thread: make demo\n")
        manager = Manager()
        manager._procmgr = _LeaderOnlyTermination()
        for name, command in procfile_commands().items():
            manager.add_process(name, f"exec {command}", env=venv_env(env), cwd=str(ROOT))
        manager.loop()
        return int(manager.returncode or 0)
    finally:
        if redis is not None:
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    parser.add_argument("command", choices=("run", "demo"))
    args = parser.parse_args(argv)
    if args.command == "run":
        return run()
    from stack.demo import walk_the_thread

    if not CREDENTIALS.exists():
        print(
            "no var/demo-credentials.json: start the system with `make run` first", file=sys.stderr
        )
        return 2
    return walk_the_thread(json.loads(CREDENTIALS.read_text()))


if __name__ == "__main__":
    sys.exit(main())
