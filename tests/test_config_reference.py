"""The configuration reference is generated from where variables are read, and says when the
checked-in copy is stale."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from devtools import config_reference
from shared.settings import VARIABLES, Settings
from shared.topology import SERVICES


class ReadingLog(Mapping[str, str]):
    """An environment that notes every variable looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings must look variables up by name, not list them")

    def __len__(self) -> int:
        return len(self.values)


PRODUCTION = {
    "REDVEST_ENV": "production",
    "REDVEST_AUTH_SECRET": "add9879e9476a772a5cd16012782d318a419bf118b9ca4eb428775f4da53110a",
    "INTAKE_DATABASE_URL": "postgresql://redvest@postgres/redvest_intake",
    "BROKER_URL": "redis://redis:6379/0",
}


def test_the_settings_read_every_declared_variable_and_nothing_undeclared() -> None:
    # Unset, REDIS_URL is read in place of BROKER_URL; in production BROKER_URL is set.
    unset, production = ReadingLog({}), ReadingLog(PRODUCTION)

    Settings.from_env("intake", unset)
    Settings.from_env("intake", production)

    declared = {variable.of("intake") for variable in VARIABLES}
    assert unset.read == declared
    assert production.read == declared - {"REDIS_URL"}


def test_the_reference_lists_every_declared_variable_with_its_default() -> None:
    text = config_reference.render()

    for variable in VARIABLES:
        if variable.is_per_service:
            for service in SERVICES:
                assert f"| `{variable.of(service)}` |" in text
        else:
            default = f"`{variable.default}`" if variable.default else "unset"
            read_by = ", ".join(variable.services) or "every service"
            assert f"| `{variable.name}` | {default} | {read_by} |" in text


def test_each_service_is_told_apart_in_the_database_url_it_reads() -> None:
    text = config_reference.render()

    assert "| `POINTS_DATABASE_URL` | `sqlite:///{REDVEST_VAR_DIR}/points.db` | points |" in text


def test_a_python_file_s_lookups_are_found_with_their_defaults_and_what_they_are_for(
    tmp_path: Path,
) -> None:
    source = tmp_path / "settings.py"
    source.write_text(
        '"""Runs things. The pool holds ``POOL_SIZE`` connections."""\n'
        "import os\n"
        'workers = int(os.environ.get("WORKERS", "3"))\n'
        "def command(env, service):\n"
        '    """The command line."""\n'
        '    port = env.get(f"{service.upper()}_PORT") or 8000\n'
        '    size = env.get("POOL_SIZE", "5")\n'
        '    return [*("--threads", env.get("THREADS", "4")), port, size]\n'
    )

    entries = config_reference.python_entries(source, read_by="web", assigned="gunicorn's `{}`")

    assert entries == [
        config_reference.Entry("WORKERS", "3", "web", "gunicorn's `workers`"),
        config_reference.Entry(
            "<SERVICE>_PORT", "8000", "web", "`port` in `command()`: The command line"
        ),
        config_reference.Entry("POOL_SIZE", "5", "web", "The pool holds `POOL_SIZE` connections"),
        config_reference.Entry("THREADS", "4", "web", "the `--threads` option"),
    ]


def test_the_procfile_s_parameters_are_found_with_the_processes_that_use_them(
    tmp_path: Path,
) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "a-web: serve --bind 127.0.0.1:${A_PORT:-8001}\n"
        "a-worker: work --processes ${PROCESSES:-1}\n"
        "b-worker: work --processes ${PROCESSES:-1}\n"
    )

    assert config_reference.procfile_entries(procfile) == [
        config_reference.Entry("A_PORT", "8001", "a-web", "`--bind 127.0.0.1:${A_PORT:-8001}`"),
        config_reference.Entry(
            "PROCESSES", "1", "a-worker, b-worker", "`--processes ${PROCESSES:-1}`"
        ),
    ]


def test_check_fails_on_a_stale_reference_and_passes_on_a_fresh_one(tmp_path: Path) -> None:
    reference = tmp_path / "CONFIGURATION.md"
    reference.write_text(config_reference.render().replace("`20`", "`10`"))

    assert config_reference.main(["--check"], reference=reference) == 1

    assert config_reference.main([], reference=reference) == 0
    assert config_reference.main(["--check"], reference=reference) == 0


def test_the_checked_in_reference_is_what_the_code_says_today() -> None:
    assert config_reference.main(["--check"]) == 0
