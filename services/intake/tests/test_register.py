"""Importing a community's register from CSV: checked first, all or (if asked) the good rows."""

from __future__ import annotations

import io
import time

import pytest
from sqlalchemy import func, select

from services.intake import register
from services.intake.commands import EXTRA_COMMANDS
from services.intake.config import runtime
from services.intake.models import GridNode, Resident
from shared.cli import run_cli

HEADER = (
    "community,building,unit,household,name,phone,language,elderly,lives_alone,disabled,"
    "reduced_mobility\n"
)
GOOD = (
    "changshan-garden,3,2,501,Li Shufen,138,zh-CN,yes,yes,no,no\n"
    "changshan-garden,3,2,502,Zhao Ming,,en,,,,\n"
    "changshan-garden,3,2,502,Zhao Lei,,,,,,\n"
    "changshan-garden,5,1,101,,,,,,,\n"
)
BAD = (
    "changshan-garden,3,,503,Wang Fang,,,,,,\n"
    "changshan-garden,3,2,504,Sun Hua,,fr,maybe,,,\n"
    "changshan-garden,3,2,505,,139,,,,,\n"
)


def counts() -> tuple[int, int]:
    with runtime().db.read() as session:
        households = session.scalar(
            select(func.count()).select_from(GridNode).where(GridNode.kind == "household")
        )
        residents = session.scalar(select(func.count()).select_from(Resident))
        return int(households or 0), int(residents or 0)


def imported(text: str, **options) -> register.ImportReport:
    with runtime().db.transaction() as session:
        return register.import_register(session, io.StringIO(text), **options)


def test_a_clean_register_puts_its_households_and_residents_on_the_grid():
    report = imported(HEADER + GOOD)
    assert report.is_clean and report.imported
    assert (report.households_added, report.residents_added) == (3, 3)
    assert counts() == (3, 3)
    with runtime().db.read() as session:
        li = session.scalars(select(Resident).filter_by(name="Li Shufen")).one()
        assert (li.is_elderly, li.lives_alone, li.phone) == (True, True, "138")
        assert li.household.path == "changshan-garden/3/2/501"
        unit = session.get(GridNode, li.household.parent_id)
        assert (unit.kind, unit.path) == ("unit", "changshan-garden/3/2")


def test_a_register_with_bad_rows_imports_nothing_and_names_each_bad_row():
    report = imported(HEADER + GOOD + BAD)
    assert not report.imported
    assert [(row.line, row.errors) for row in report.bad] == [
        (6, ("unit is missing",)),
        (
            7,
            (
                "language must be one of zh-CN, en, got 'fr'",
                "elderly must be yes or no, got 'maybe'",
            ),
        ),
        (8, ("name is missing, though the row gives phone",)),
    ]
    assert counts() == (0, 0)
    lines = list(register.describe(report, good_rows_only=False))
    assert lines[0] == "line 6: unit is missing"
    assert "nothing imported" in lines[-1]


def test_the_good_rows_alone_are_imported_when_asked_for():
    report = imported(HEADER + GOOD + BAD, good_rows_only=True)
    assert report.imported and len(report.bad) == 3
    assert counts() == (3, 3)


def test_importing_the_same_register_again_adds_no_one_twice():
    imported(HEADER + GOOD)
    again = imported(HEADER + GOOD)
    assert (again.households_added, again.residents_added, again.residents_known) == (0, 0, 3)
    assert counts() == (3, 3)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("community,building,unit\n", "lacks the columns household"),
        ("community,building,unit,household,colour\n", "unknown columns colour"),
        (HEADER + "c,1,1,1,a,b,en,no,no,no,no,extra\n", "more values than the header"),
    ],
)
def test_a_malformed_file_is_refused_as_a_whole(text, reason):
    report = imported(text)
    assert not report.imported
    assert reason in report.bad[0].errors[0]


def a_register(households: int) -> str:
    """A register of ``households`` households over buildings of 4 units of 25, two or three
    residents each."""
    rows = [HEADER]
    for index in range(households):
        building, rest = divmod(index, 100)
        unit, number = divmod(rest, 25)
        place = f"changshan-garden,{building + 1},{unit + 1},{(number + 1) * 100 + 1}"
        for person in range(2 + index % 2):
            elderly = "yes" if person == 0 and index % 3 == 0 else "no"
            rows.append(f"{place},Resident {index}-{person},,zh-CN,{elderly},no,no,no\n")
    return "".join(rows)


def test_the_command_imports_a_register_of_3100_households_with_a_progress_bar(tmp_path, capsys):
    path = tmp_path / "register.csv"
    path.write_text(a_register(3100), encoding="utf-8")
    started = time.perf_counter()
    code = run_cli(runtime, ["import-register", str(path)], extra=EXTRA_COMMANDS)
    took = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert counts() == (3100, 7750)
    assert "3100 household(s)" in out
    assert "residents [" in err and "7750/7750" in err
    # Reported, not asserted: a time is not a test's to judge on a shared machine.
    print(f"imported 3,100 households and 7,750 residents in {took:.2f} s")


def test_the_command_exits_non_zero_and_imports_nothing_from_a_file_with_errors(tmp_path, capsys):
    path = tmp_path / "register.csv"
    path.write_text(HEADER + GOOD + BAD, encoding="utf-8")
    assert run_cli(runtime, ["import-register", str(path)], extra=EXTRA_COMMANDS) == 1
    assert "line 7: language" in capsys.readouterr().out
    assert counts() == (0, 0)
    assert (
        run_cli(runtime, ["import-register", str(path), "--good-rows-only"], extra=EXTRA_COMMANDS)
        == 0
    )
    assert counts() == (3, 3)
