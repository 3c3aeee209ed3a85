"""Importing a community's register (households and their residents) from CSV: every row
checked first, a report naming each bad one, and nothing imported from a file with errors
unless the good rows alone are asked for."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from services.intake.directory import LANGUAGES, LEVELS, RESIDENT_FLAGS
from services.intake.models import NODE_KINDS, GridNode, Resident

# The register's columns: a household's place, then (optionally) one resident of it a row.
PLACE_COLUMNS = LEVELS
RESIDENT_COLUMNS = (
    "name",
    "phone",
    "language",
    "elderly",
    "lives_alone",
    "disabled",
    "reduced_mobility",
)
COLUMNS = (*PLACE_COLUMNS, *RESIDENT_COLUMNS)
FLAG_COLUMNS = dict(
    zip(("elderly", "lives_alone", "disabled", "reduced_mobility"), RESIDENT_FLAGS, strict=True)
)
LENGTHS = {"community": 64, "building": 32, "unit": 32, "household": 32, "name": 100, "phone": 32}
YES = {"1", "y", "yes", "true", "是", "x"}
NO = {"", "0", "n", "no", "false", "否"}
# Rows written per INSERT: large enough to be quick, small enough for any driver's limits.
CHUNK = 500

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BadRow:
    """A row of the file that cannot be imported, and every reason why."""

    line: int
    errors: tuple[str, ...]


@dataclass
class ImportReport:
    rows: int = 0
    bad: list[BadRow] = field(default_factory=list)
    nodes_added: int = 0
    households_added: int = 0
    residents_added: int = 0
    residents_known: int = 0
    imported: bool = False

    @property
    def is_clean(self) -> bool:
        return not self.bad


@dataclass(frozen=True)
class _Row:
    line: int
    place: tuple[str, str, str, str]
    resident: dict[str, Any] | None


def _flag(value: str, column: str, errors: list[str]) -> bool:
    text = value.strip().casefold()
    if text in YES:
        return True
    if text not in NO:
        errors.append(f"{column} must be yes or no, got {value!r}")
    return False


def _checked(line: int, raw: dict[str, str | None]) -> _Row | BadRow:
    errors = []
    values = {name: (raw.get(name) or "").strip() for name in COLUMNS}
    for name in PLACE_COLUMNS:
        if not values[name]:
            errors.append(f"{name} is missing")
    for name, longest in LENGTHS.items():
        if len(values[name]) > longest:
            errors.append(f"{name} is longer than {longest} characters")
    if any("\x00" in value for value in values.values()):
        errors.append("a value holds a NUL character")
    resident = None
    given = [name for name in RESIDENT_COLUMNS if values[name]]
    if given and not values["name"]:
        errors.append(f"name is missing, though the row gives {', '.join(given)}")
    elif values["name"]:
        language = values["language"] or "zh-CN"
        if language not in LANGUAGES:
            errors.append(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        resident = {
            "name": values["name"],
            "phone": values["phone"] or None,
            "language": language,
            **{
                flag: _flag(values[column], column, errors) for column, flag in FLAG_COLUMNS.items()
            },
        }
    if errors:
        return BadRow(line, tuple(errors))
    place = cast(tuple[str, str, str, str], tuple(values[name] for name in PLACE_COLUMNS))
    return _Row(line, place, resident)


def read_register(source: TextIO) -> tuple[list[_Row], list[BadRow], int]:
    """The file's rows, checked: the good, the bad, and how many there were."""
    reader = csv.DictReader(source)
    header = [name.strip() for name in reader.fieldnames or ()]
    missing = [name for name in PLACE_COLUMNS if name not in header]
    if missing:
        return [], [BadRow(1, (f"the header lacks the columns {', '.join(missing)}",))], 0
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        return [], [BadRow(1, (f"the header has unknown columns {', '.join(unknown)}",))], 0
    reader.fieldnames = header
    good: list[_Row] = []
    bad: list[BadRow] = []
    count = 0
    try:
        for raw in reader:
            count += 1
            if None in raw:
                bad.append(BadRow(reader.line_num, ("the row has more values than the header",)))
                continue
            checked = _checked(reader.line_num, raw)
            (bad if isinstance(checked, BadRow) else good).append(checked)  # type: ignore[arg-type]
    except csv.Error as error:
        bad.append(BadRow(reader.line_num, (f"not readable as CSV: {error}",)))
    return good, bad, count


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def import_register(
    session: Session,
    source: TextIO,
    *,
    good_rows_only: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Check every row of the register, then (if none is bad, or if ``good_rows_only``) put
    its households on the grid and register its residents; a resident already registered
    at the same household under the same name is left as they are."""
    good, bad, count = read_register(source)
    report = ImportReport(rows=count, bad=bad)
    if (bad and not good_rows_only) or not good:
        return report
    nodes = cast(Table, GridNode.__table__)
    known: dict[tuple[str, ...], int] = {
        tuple(part for part in path if part): node_id
        for node_id, *path in session.execute(
            select(nodes.c.id, nodes.c.community, nodes.c.building, nodes.c.unit, nodes.c.household)
        )
    }
    # The grid's nodes a level at a time, so that each level's parents already have ids.
    for depth, kind in enumerate(NODE_KINDS, start=1):
        missing = sorted({row.place[:depth] for row in good} - set(known))
        new_rows = [
            {
                "kind": kind,
                "parent_id": known.get(path[:-1]),
                "name": "",
                **{level: (path[i] if i < len(path) else "") for i, level in enumerate(LEVELS)},
            }
            for path in missing
        ]
        for chunk in _chunks(new_rows):
            session.execute(insert(nodes), chunk)
        if new_rows:
            added = session.execute(
                select(
                    nodes.c.id, nodes.c.community, nodes.c.building, nodes.c.unit, nodes.c.household
                ).where(nodes.c.kind == kind)
            )
            for node_id, *path in added:
                known.setdefault(tuple(part for part in path if part), node_id)
        report.nodes_added += len(new_rows)
        if kind == "household":
            report.households_added = len(new_rows)
    residents = cast(Table, Resident.__table__)
    registered = {
        (household_id, name)
        for household_id, name in session.execute(
            select(residents.c.household_id, residents.c.name)
        )
    }
    to_add = []
    for row in good:
        if row.resident is None:
            continue
        household_id = known[row.place]
        key = (household_id, row.resident["name"])
        if key in registered:
            report.residents_known += 1
            continue
        registered.add(key)
        to_add.append({"id": uuid.uuid4().hex, "household_id": household_id, **row.resident})
    done = 0
    for chunk in _chunks(to_add):
        session.execute(insert(residents), chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, len(to_add))
    report.residents_added = len(to_add)
    report.imported = True
    return report


def describe(report: ImportReport, *, good_rows_only: bool) -> Iterable[str]:
    """The report as lines for a person to read."""
    for row in report.bad:
        yield f"line {row.line}: " + "; ".join(row.errors)
    if report.bad and not report.imported:
        yield (
            f"{len(report.bad)} bad row(s) of {report.rows}: nothing imported (fix them, or "
            "pass --good-rows-only to import the others)"
        )
        return
    skipped = f", {len(report.bad)} bad row(s) skipped" if report.bad and good_rows_only else ""
    yield (
        f"imported {report.rows - len(report.bad)} row(s){skipped}: "
        f"{report.households_added} household(s) and {report.nodes_added} grid node(s) in all "
        f"added, {report.residents_added} resident(s) registered, {report.residents_known} "
        "already registered"
    )
