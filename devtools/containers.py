"""``python -m devtools.containers images|leg``: the services' images, and the one-host deployment
run from them with a request walked through it.

``images`` builds ``redvest-<service>`` for every service with podman: first, when missing, the
base image (Debian bookworm's Python, made with mmdebstrap from Debian's packages and imported,
as no registry can be reached) and the wheels of the services' dependencies, built on this host
for the base image's Python (its markers, not this interpreter's, decide what is needed). Images
are tagged with a digest of what goes into them, so an image of the current code is never
built twice and a stale one is never taken for it.

``leg`` installs what it needs when missing (podman, runc and mmdebstrap with apt-get,
podman-compose into this virtualenv), makes the images when missing (Redis and PostgreSQL too, the
same way), brings ``deploy/compose.yaml`` up under a project name of its own with free host
ports, waits for the migrations and for every process to be healthy, walks the knife-sharpening
thread through the published ports, stops every process (each must exit 0 within its grace
period) and always takes it all down: containers, volumes and network.

Exit codes: 0 done, 1 failed, 3 skipped (tools missing and not installable here: not root or no
apt-get; under ``CI=true`` that fails instead). Each phase prints how long it took.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from devtools.community import seed_demo
from devtools.processes import ROOT
from devtools.redis_server import free_port
from devtools.thread import KnifeSharpeningThread, ThreadFailed
from shared.topology import SERVICES

SKIPPED = 3
BIN = Path(sys.executable).parent
CONTAINERS_CONF = ROOT / "deploy" / "containers.conf"
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
WORK = ROOT / "var" / "images"
WHEELS = WORK / "wheels"
IMAGE_PREFIX = "localhost/redvest"
BASE_IMAGE = "localhost/redvest-base:bookworm"
REDIS_IMAGE = "localhost/redvest-redis:bookworm"
POSTGRES_IMAGE = "localhost/redvest-postgres:bookworm"
PODMAN_COMPOSE = "podman-compose==1.6.0"
# Debian's point release and its security fixes, not only the release as it shipped.
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# Manuals and translations serve no one in a container; the licences stay.
SLIM = (
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
)
# The environment packaging's markers are evaluated in (packaging.markers.default_environment).
MARKER_ENVIRONMENT = """\
import json, os, platform, sys
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": platform.python_version(),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""
# What an image of ``service`` must and must not hold, checked inside it after each build.
IMAGE_CHECK = """\
import importlib, json, os, pathlib, sys
service = os.environ["REDVEST_SERVICE"]
importlib.import_module(f"services.{service}.app")
importlib.import_module(f"services.{service}.actors")
app = pathlib.Path("/app")
print(json.dumps({
    "services": sorted(p.name for p in (app / "services").iterdir() if p.is_dir()
                       and p.name != "__pycache__"),
    "tests": sorted(str(p) for p in app.rglob("tests")),
    "devtools": (app / "devtools").exists(),
    "wheels": pathlib.Path("/wheels").exists(),
    "uid": os.getuid(),
}))
"""
# The interface of the public postgres image that deploy/compose.yaml relies on: the superuser's
# POSTGRES_PASSWORD, the scripts of /docker-entrypoint-initdb.d run once on an empty $PGDATA, and
# password logins from the other containers. Init runs on a socket only, so a health check over
# TCP passes only once it is done.
POSTGRES_ENTRYPOINT = """\
#!/bin/sh
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}"
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    password_file=$(mktemp)
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$password_file"
    "$bin/initdb" --username="$POSTGRES_USER" --pwfile="$password_file" --encoding=UTF8 \\
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    "$bin/pg_ctl" --wait --options="-c listen_addresses='' -c unix_socket_directories=/tmp" start
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) "$bin/psql" --host=/tmp --username="$POSTGRES_USER" --dbname=postgres \\
                       --no-psqlrc --set=ON_ERROR_STOP=1 --file="$script" ;;
            *.sh) . "$script" ;;
        esac
    done
    "$bin/pg_ctl" --wait --mode=fast stop
fi
exec "$bin/postgres" -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
"""


class Failed(Exception):
    """The images or the leg failed; the message says why."""


def say(text: str) -> None:
    print(f"containers: {text}", flush=True)


@contextlib.contextmanager
def phase(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time one phase; its line is printed whether it succeeds or fails."""
    started = time.monotonic()
    outcome = "failed"
    try:
        yield
        outcome = "done"
    finally:
        timings[name] = time.monotonic() - started
        say(f"{name} {outcome} in {timings[name]:.1f} s")


def podman_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **(extra or {})}


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> str:
    """Run a command to completion and return its stdout; fail with its output's tail."""
    result = subprocess.run(
        list(args),
        cwd=ROOT,
        env=dict(env) if env is not None else podman_env(),
        capture_output=True,
        text=True,
    )
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"$ {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise Failed(f"{' '.join(args[:4])} ... exited {result.returncode}:\n{tail}")
    return result.stdout


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --- tools ---------------------------------------------------------------------------------------


def ensure_tools(*, compose: bool) -> str | None:
    """Install what is missing; None when all is there, else why the run must be skipped."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            reason = f"{', '.join(missing)} missing, and installing needs root and apt-get"
            if is_ci():
                raise Failed(f"{reason} (CI requires the container leg)")
            return reason
        say(f"installing {', '.join(missing)} with apt-get")
        apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=apt)
        run(["apt-get", "install", "-y", "-qq", "podman", "runc", "mmdebstrap"], env=apt)
    if compose and not (BIN / "podman-compose").exists():
        say(f"installing {PODMAN_COMPOSE} into {BIN.parent}")
        run([sys.executable, "-m", "pip", "install", "--quiet", PODMAN_COMPOSE], env=os.environ)
    working = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        env=podman_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if working.returncode != 0:
        reason = "podman cannot run here: " + (working.stderr.strip().splitlines() or ["?"])[-1]
        if is_ci():
            raise Failed(reason)
        return reason
    return None


# --- images --------------------------------------------------------------------------------------


def image_exists(name: str) -> bool:
    return (
        subprocess.run(["podman", "image", "exists", name], env=podman_env(), cwd=ROOT).returncode
        == 0
    )


def debian_image(
    name: str,
    packages: Sequence[str],
    *,
    hooks: Sequence[str] = (),
    changes: Sequence[str] = (),
    log: Path,
) -> None:
    """Make ``name`` from Debian bookworm's packages with mmdebstrap and import it."""
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        tarball = Path(scratch) / "root.tar"
        run(
            [
                *("mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}"),
                *SLIM,
                *(f"--customize-hook={hook}" for hook in hooks),
                *("bookworm", str(tarball), *DEBIAN_SOURCES),
            ],
            log=log,
        )
        label = f"LABEL org.opencontainers.image.description=Debian bookworm: {' '.join(packages)}"
        change_args = [f"--change={change}" for change in ("ENV LANG=C.UTF-8", label, *changes)]
        run(["podman", "import", "--quiet", *change_args, str(tarball), name], log=log)


def ensure_base_image(log: Path) -> None:
    if image_exists(BASE_IMAGE):
        return
    say(f"making {BASE_IMAGE} with mmdebstrap")
    debian_image(
        BASE_IMAGE,
        ("python3", "python3-venv", "ca-certificates"),
        changes=('CMD ["python3"]',),
        log=log,
    )


def ensure_infrastructure_images(log: Path) -> None:
    """Redis and PostgreSQL, made as the base image is, for the public images compose names."""
    if not image_exists(REDIS_IMAGE):
        say(f"making {REDIS_IMAGE} with mmdebstrap")
        debian_image(
            REDIS_IMAGE,
            ("redis-server",),
            hooks=('mkdir -p "$1/data" && chroot "$1" chown redis:redis /data',),
            changes=("USER redis", "WORKDIR /data", 'CMD ["redis-server"]', "EXPOSE 6379"),
            log=log,
        )
    if not image_exists(POSTGRES_IMAGE):
        say(f"making {POSTGRES_IMAGE} with mmdebstrap")
        with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=WORK, delete=False) as script:
            script.write(POSTGRES_ENTRYPOINT)
        try:
            debian_image(
                POSTGRES_IMAGE,
                ("postgresql",),
                hooks=(
                    # The package's own cluster would only take space: the entrypoint makes one.
                    'rm -rf "$1"/var/lib/postgresql/*/main "$1"/etc/postgresql/*/main',
                    'mkdir -p "$1/var/lib/postgresql/data" "$1/docker-entrypoint-initdb.d"',
                    'chroot "$1" chown postgres:postgres /var/lib/postgresql/data',
                    'chmod 700 "$1/var/lib/postgresql/data"',
                    f'cp {script.name} "$1/usr/local/bin/postgres-entrypoint"',
                    'chmod 755 "$1/usr/local/bin/postgres-entrypoint"',
                ),
                changes=(
                    "USER postgres",
                    "ENV PGDATA=/var/lib/postgresql/data",
                    'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]',
                    "STOPSIGNAL SIGINT",
                    "EXPOSE 5432",
                ),
                log=log,
            )
        finally:
            Path(script.name).unlink()


def target_markers() -> dict[str, str]:
    """The marker environment of the base image's Python (Debian bookworm's 3.11.2)."""
    output = run(["podman", "run", "--rm", BASE_IMAGE, "python3", "-c", MARKER_ENVIRONMENT])
    markers: dict[str, str] = json.loads(output)
    return markers


def _project_requirements() -> list[str]:
    dependencies: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    return dependencies


def _tested_versions() -> str:
    """This virtualenv's versions: the images run what the tests ran against."""
    frozen = run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], env=os.environ
    ).splitlines()
    return "\n".join(line for line in frozen if "==" in line and " @ " not in line) + "\n"


def _needed_but_missing(markers: Mapping[str, str], wanted: Sequence[str]) -> list[str]:
    """What the target Python needs, from the wanted requirements and the wheels' metadata,
    that no wheel in WHEELS provides yet (this interpreter's markers may have left it out)."""
    import zipfile
    from email.parser import HeaderParser

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def applies(requirement: Requirement, extras: set[str]) -> bool:
        marker = requirement.marker
        return marker is None or any(
            marker.evaluate({**markers, "extra": extra}) for extra in extras | {""}
        )

    requires: dict[str, list[Requirement]] = {}
    for wheel in WHEELS.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            path = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = HeaderParser().parsestr(archive.read(path).decode())
        requires[canonicalize_name(metadata["Name"])] = [
            Requirement(line) for line in metadata.get_all("Requires-Dist", [])
        ]
    # Each needed project with the extras asked of it; a dependency's marker is evaluated with
    # the extras asked of the project that requires it.
    extras_of: dict[str, set[str]] = {}
    specifiers: dict[str, set[str]] = {}
    pending = [r for r in map(Requirement, wanted) if applies(r, set())]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        specifiers.setdefault(name, set()).add(str(requirement.specifier))
        if name in extras_of and requirement.extras <= extras_of[name]:
            continue
        extras = extras_of.setdefault(name, set())
        extras |= requirement.extras
        pending.extend(d for d in requires.get(name, []) if applies(d, extras))
    return [
        name + ",".join(sorted(s for s in specifiers[name] if s))
        for name in sorted(extras_of)
        if name not in requires
    ]


def ensure_wheels(markers: Mapping[str, str], log: Path) -> None:
    """Wheels of every dependency the images need, built here with pip wheel."""
    requirements = "\n".join(_project_requirements()) + "\n"
    constraints = _tested_versions()
    stamp = hashlib.sha256(
        f"{requirements}{constraints}{json.dumps(markers, sort_keys=True)}".encode()
    ).hexdigest()
    if (WHEELS / "stamp").exists() and (WHEELS / "stamp").read_text() == stamp:
        return
    say("building the wheels of the services' dependencies")
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir(parents=True)
    (WHEELS / "requirements.txt").write_text(requirements)
    (WHEELS / "constraints.txt").write_text(constraints)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(WHEELS)]
    constrained = ["--constraint", str(WHEELS / "constraints.txt")]
    run([*pip_wheel, "--requirement", str(WHEELS / "requirements.txt"), *constrained], log=log)
    # This interpreter evaluated the markers: what only the target needs (redis wants
    # async-timeout below Python 3.11.3) is wheeled now, until nothing is missing.
    for _ in range(10):
        missing = _needed_but_missing(markers, _project_requirements())
        if not missing:
            break
        say(f"the image's Python also needs: {', '.join(missing)}")
        run([*pip_wheel, "--no-deps", *missing, *constrained], log=log)
    else:
        raise Failed(f"wheels still missing for the image's Python: {', '.join(missing)}")
    (WHEELS / "stamp").write_text(stamp)


def _image_inputs() -> Iterator[Path]:
    """The files the Containerfiles copy (as .dockerignore lets them), in a stable order."""
    candidates = [
        *sorted((ROOT / "shared").rglob("*")),
        *sorted((ROOT / "services").rglob("*")),
        ROOT / ".dockerignore",
        ROOT / "deploy" / "gunicorn.conf.py",
        *sorted((ROOT / "deploy" / "images").iterdir()),
        WHEELS / "stamp",
    ]
    for path in candidates:
        parts = path.relative_to(ROOT).parts
        if path.is_file() and not {"tests", "__pycache__"} & set(parts) and path.suffix != ".pyc":
            yield path


def images_tag() -> str:
    """A digest of everything the service images are made of: base image, wheels and code."""
    digest = hashlib.sha256(
        run(["podman", "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE]).encode()
    )
    for path in _image_inputs():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def service_image(service: str, tag: str) -> str:
    return f"{IMAGE_PREFIX}-{service}:{tag}"


def build_service_image(service: str, tag: str, log: Path) -> None:
    """Build the service's image and check what is in it."""
    name = service_image(service, tag)
    base_id = run(["podman", "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE]).strip()
    run(
        [
            # HEALTHCHECK is part of docker's image format, not of OCI's.
            *("podman", "build", "--format", "docker", "--layers"),
            *("--file", f"deploy/images/{service}.Containerfile"),
            # The base is made here, so its tag names no fixed content: the label records which.
            *("--label", f"org.opencontainers.image.base.name={BASE_IMAGE}"),
            *("--label", f"org.opencontainers.image.base.digest=sha256:{base_id}"),
            *("--tag", name, "--tag", service_image(service, "latest"), "."),
        ],
        log=log,
    )
    found = json.loads(
        run(
            [
                "podman",
                "run",
                "--rm",
                "--no-healthcheck",
                "--entrypoint",
                "python",
                name,
                "-c",
                IMAGE_CHECK,
            ]
        )
    )
    problems = [
        problem
        for problem, is_wrong in (
            (f"it holds the services {found['services']}", found["services"] != [service]),
            (f"it holds tests: {found['tests']}", bool(found["tests"])),
            ("it holds devtools/", found["devtools"]),
            ("it holds the wheels", found["wheels"]),
            ("it runs as root", found["uid"] == 0),
        )
        if is_wrong
    ]
    if problems:
        raise Failed(f"{name}: " + "; ".join(problems))


def ensure_service_images(log: Path, *, rebuild: bool = False) -> str:
    """Base image, wheels and the four service images; returns their tag."""
    ensure_base_image(log)
    ensure_wheels(target_markers(), log)
    tag = images_tag()
    for service in SERVICES:
        if rebuild or not image_exists(service_image(service, tag)):
            say(f"building {service_image(service, tag)}")
            build_service_image(service, tag, log)
            _forget_older_images(service, tag)
    return tag


def _forget_older_images(service: str, tag: str) -> None:
    """Untag the service's images of older code; the layers the new one shares stay."""
    listed = run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{IMAGE_PREFIX}-{service}"]
    ).split()
    older = [name for name in listed if not name.endswith((f":{tag}", ":latest"))]
    if older:
        # One still used by a container (another run's) stays: it is only disk space.
        with contextlib.suppress(Failed):
            run(["podman", "rmi", *older])


# --- the leg -------------------------------------------------------------------------------------


class Deployment:
    """deploy/compose.yaml brought up under a project name of its own, on free host ports."""

    def __init__(self, tag: str, scratch: Path) -> None:
        self.project = f"redvest-leg-{uuid.uuid4().hex[:8]}"
        self.scratch = scratch
        self.log = scratch / "compose.log"
        self.web_ports = {service: free_port(0) for service in SERVICES}
        self.postgres_port = free_port(0)
        self.passwords = {service: secrets.token_hex(24) for service in SERVICES}
        self.settings = {
            "REDVEST_AUTH_SECRET": secrets.token_hex(32),
            "POSTGRES_PASSWORD": secrets.token_hex(24),
            **{f"{s.upper()}_DATABASE_PASSWORD": p for s, p in self.passwords.items()},
            "REDIS_IMAGE": REDIS_IMAGE,
            "POSTGRES_IMAGE": POSTGRES_IMAGE,
            "REDVEST_IMAGE_PREFIX": IMAGE_PREFIX,
            "REDVEST_IMAGE_TAG": tag,
            "REDVEST_PUBLISH_ADDRESS": "127.0.0.1",
            **{f"{s.upper()}_PORT": str(port) for s, port in self.web_ports.items()},
            # Twenty processes share the machine: one web worker each is plenty for the thread.
            "WEB_CONCURRENCY": "1",
        }
        # The leg seeds the demo community from this host, as `make run` does, so it reaches
        # PostgreSQL on a port of its own; deploy/compose.yaml publishes only the web processes.
        self.override = scratch / "leg.yaml"
        self.override.write_text(
            f'services:\n  postgres:\n    ports: ["127.0.0.1:{self.postgres_port}:5432"]\n'
        )

    def compose(self, *args: str) -> str:
        return run(
            [
                *(str(BIN / "podman-compose"), "--project-name", self.project),
                *("--file", str(COMPOSE_FILE), "--file", str(self.override), *args),
            ],
            env=podman_env(self.settings),
            log=self.log,
        )

    def containers(self) -> list[dict[str, Any]]:
        """The project's containers: name, process (compose service), state, exit code."""
        listed = json.loads(
            run(
                [
                    *("podman", "ps", "--all", "--format", "json"),
                    *("--filter", f"label=io.podman.compose.project={self.project}"),
                ]
            )
            or "[]"
        )
        return [
            {
                "name": entry["Names"][0],
                "process": entry["Labels"].get("com.docker.compose.service", ""),
                "state": entry["State"],
                "exit_code": entry.get("ExitCode", 0),
            }
            for entry in listed
        ]

    def is_healthy(self, name: str) -> bool:
        """Run the container's health check now (no systemd here runs it on a timer)."""
        checked = subprocess.run(
            ["podman", "healthcheck", "run", name],
            env=podman_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return checked.returncode == 0

    def logs(self, name: str, lines: int = 25) -> str:
        result = subprocess.run(
            ["podman", "logs", "--tail", str(lines), name],
            env=podman_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return (result.stdout + result.stderr).rstrip()

    def wait_for(self, conditions: Mapping[str, str], timeout: float = 180.0) -> None:
        """Wait until each process meets its compose condition; fail at once on one that
        cannot any more (a job that failed, a process that stopped), with its log."""
        deadline = time.monotonic() + timeout
        pending = dict(conditions)
        while pending:
            found = {container["process"]: container for container in self.containers()}
            for process, condition in list(pending.items()):
                container = found.get(process)
                if container is None:
                    raise Failed(f"compose made no container for {process}")
                state, code = container["state"], container["exit_code"]
                if condition == "service_completed_successfully":
                    if state == "exited" and code != 0:
                        raise Failed(f"{process} exited {code}:\n{self.logs(container['name'])}")
                    if state == "exited":
                        del pending[process]
                elif state != "running":
                    raise Failed(
                        f"{process} is {state} (exit {code}):\n{self.logs(container['name'])}"
                    )
                elif condition == "service_started" or self.is_healthy(container["name"]):
                    del pending[process]
            if pending and time.monotonic() > deadline:
                details = "\n".join(
                    f"--- {process}\n{self.logs(found[process]['name'])}" for process in pending
                )
                raise Failed(f"after {timeout:.0f} s still waiting for {pending}:\n{details}")
            if pending:
                time.sleep(1)

    def up(self) -> str:
        """Start the file's services in the order of its depends_on, each condition met before
        what depends on it starts. The conditions are checked here: podman 4.3 (Debian
        bookworm's) knows no healthy condition, and cannot start a container that requires one
        that has exited (a finished migration), so each service is started on its own."""
        services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
        needs = {name: _conditions(spec.get("depends_on")) for name, spec in services.items()}
        started: list[str] = []
        while len(started) < len(services):
            level = [n for n in services if n not in started and set(needs[n]) <= set(started)]
            if not level:
                raise Failed(
                    f"depends_on goes round in circles: {sorted(set(services) - set(started))}"
                )
            self.compose("up", "--detach", "--no-deps", *level)
            started.extend(level)
            self.wait_for(
                {
                    dependency: condition
                    for name in services
                    for dependency, condition in needs[name].items()
                    if dependency in level
                }
            )
        return f"{len(started)} containers started in the order of depends_on"

    def wait_until_healthy(self) -> str:
        """Every one-shot job (restart: "no") done, every process that runs on healthy."""
        services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
        jobs = [name for name, spec in services.items() if spec.get("restart") == "no"]
        self.wait_for(
            {
                name: "service_completed_successfully" if name in jobs else "service_healthy"
                for name in services
            }
        )
        return f"{len(jobs)} jobs done, {len(services) - len(jobs)} processes healthy"

    def walk_the_thread(self) -> None:
        """Seed the demo community into the deployment and walk a request through it."""
        env = {
            **os.environ,
            "REDVEST_ENV": "development",
            "REDVEST_AUTH_SECRET": self.settings["REDVEST_AUTH_SECRET"],
            # The deployment's relays publish what the seeding stages.
            "PUBLISH_AT_COMMIT": "off",
            **{
                f"{service.upper()}_DATABASE_URL": (
                    f"postgresql://redvest_{service}:{password}@127.0.0.1:{self.postgres_port}"
                    f"/redvest_{service}"
                )
                for service, password in self.passwords.items()
            },
        }
        urls = {service: f"http://127.0.0.1:{port}" for service, port in self.web_ports.items()}
        credentials = seed_demo(env, urls)
        try:
            KnifeSharpeningThread(credentials, say=lambda step: say(f"  {step}"), timeout=90).walk()
        except ThreadFailed as failure:
            raise Failed(f"the thread failed: {failure}") from None

    def stop_gracefully(self) -> str:
        """Stop every process as the engine would (SIGTERM, then the grace period): each must
        exit 0 on its own, not be killed at the end of it."""
        self.compose("stop")
        rough = [
            f"{c['process']} (exit {c['exit_code']})\n{self.logs(c['name'], 10)}"
            for c in self.containers()
            if not c["process"].endswith("-migrate") and c["exit_code"] != 0
        ]
        if rough:
            raise Failed("processes that did not stop cleanly:\n" + "\n".join(rough))
        return "every process exited 0"

    def take_down(self) -> None:
        """Remove the project's containers, volumes and network, whatever state they are in."""
        with contextlib.suppress(Failed):
            self.compose("down", "--volumes", "--timeout", "10")
        label = f"label=io.podman.compose.project={self.project}"
        for listing, removal in (
            (["ps", "--all"], ["rm", "--force"]),
            (["volume", "ls"], ["volume", "rm", "--force"]),
            (["network", "ls"], ["network", "rm", "--force"]),
        ):
            left = run(["podman", *listing, "--quiet", "--filter", label]).split()
            if left:
                say(f"removing what compose left: {' '.join(removal[:-2] or ['container'])} {left}")
                run(["podman", *removal, *left])


def _conditions(depends_on: Any) -> dict[str, str]:
    """A service's depends_on as {service: condition}, in either of compose's forms."""
    if isinstance(depends_on, list):
        return {name: "service_started" for name in depends_on}
    return {
        name: spec.get("condition", "service_started") for name, spec in (depends_on or {}).items()
    }


def leg() -> int:
    """The deployment of deploy/compose.yaml from the images, up, healthy, walked, down."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        with phase("tools", timings):
            skipped = ensure_tools(compose=True)
        if skipped is not None:
            print(f"containers leg: SKIPPED, {skipped}", flush=True)
            return SKIPPED
        log = _fresh_log()
        with phase("images", timings):
            tag = ensure_service_images(log)
            ensure_infrastructure_images(log)
        with tempfile.TemporaryDirectory(prefix="redvest-leg-") as scratch:
            deployment = Deployment(tag, Path(scratch))
            say(f"project {deployment.project}, images {service_image('<service>', tag)}")
            try:
                with phase("up", timings):
                    say(deployment.up())
                with phase("healthy", timings):
                    say(deployment.wait_until_healthy())
                with phase("thread", timings):
                    deployment.walk_the_thread()
                with phase("stop", timings):
                    say(deployment.stop_gracefully())
            except Failed:
                say(f"compose's log: {deployment.log.read_text()[-3000:]}")
                raise
            finally:
                with phase("down", timings):
                    deployment.take_down()
    except Failed as failure:
        print(f"containers leg: FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    total = time.monotonic() - started
    spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    print(f"containers leg: ok in {total:.0f} s ({spent})", flush=True)
    return 0


def _fresh_log() -> Path:
    """Where the builds' output goes (the tail of a failed command is printed too)."""
    log = WORK / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    return log


def images(*, rebuild: bool) -> int:
    """Build (when missing, or all with ``rebuild``) the base image, wheels and service images."""
    timings: dict[str, float] = {}
    try:
        with phase("tools", timings):
            skipped = ensure_tools(compose=False)
        if skipped is not None:
            print(f"containers images: SKIPPED, {skipped}", flush=True)
            return SKIPPED
        with phase("images", timings):
            tag = ensure_service_images(_fresh_log(), rebuild=rebuild)
    except Failed as failure:
        print(f"containers images: FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    for service in SERVICES:
        print(f"{service_image(service, tag)}  (also :latest)")
    return 0


def _stop_on_sigterm(*_: object) -> None:
    # SystemExit unwinds through the finally blocks: the deployment is taken down.
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.containers")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("images", help="build one image per service with podman")
    build.add_argument("--rebuild", action="store_true", help="build them even if they exist")
    commands.add_parser(
        "leg", help="run deploy/compose.yaml from the images and walk a request through it"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.command == "images":
        return images(rebuild=args.rebuild)
    return leg()


if __name__ == "__main__":
    sys.exit(main())
