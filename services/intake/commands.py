"""intake's own commands: API keys for other systems, the demo community, and the import of
a community's register."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select

from services.intake import catalogue, directory, register
from services.intake.models import ApiClient, Category, Resident
from services.intake.schemas import CategoryCreateSchema
from shared.auth import hash_api_key, new_api_key
from shared.runtime import ServiceRuntime

DEMO_COMMUNITY = "changshan-garden"
DEMO_RESIDENTS = (
    ("3", "2", "501", "Li Shufen", True, True),
    ("3", "2", "502", "Zhao Ming", False, False),
    ("5", "1", "101", "Sun Hua", True, False),
)
BAR_WIDTH = 30


def demo_resident_id(building: str, unit: str, household: str) -> str:
    return uuid.uuid5(
        uuid.NAMESPACE_URL, f"redvest:{DEMO_COMMUNITY}/{building}/{unit}/{household}"
    ).hex


def _create_api_key(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    with runtime.db.transaction() as session:
        client, key = directory.create_api_client(session, name=args.name, role=args.role)
    print(json.dumps({"client": client.name, "role": client.role, "api_key": key}))
    return 0


def _configure_api_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the client's name, e.g. city-hotline")
    parser.add_argument("--role", choices=("system", "staff"), default="system")


def demo_categories(path: Path = catalogue.DEMO_CATALOGUE) -> list[dict[str, Any]]:
    """The catalogue file's categories, checked as the API would check them."""
    schema = CategoryCreateSchema()
    try:
        return [schema.load(entry) for entry in catalogue.catalogue_entries(path)]
    except ValidationError as error:
        raise SystemExit(f"{path}: {error.messages}") from None


def _seed_demo(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Create (or refresh) the demo community; print its ids and a fresh console API key."""
    with runtime.db.transaction() as session:
        for entry in demo_categories():
            code = entry.pop("code")
            if session.get(Category, code) is None:
                catalogue.add_category(session, code=code, **entry)
            else:
                catalogue.update_category(session, code=code, **entry)
        residents = {}
        for building, unit, number, name, elderly, alone in DEMO_RESIDENTS:
            household = directory.add_household(
                session, community=DEMO_COMMUNITY, building=building, unit=unit, number=number
            )
            resident_id = demo_resident_id(building, unit, number)
            if session.get(Resident, resident_id) is None:
                directory.register_resident(
                    session,
                    name=name,
                    household=household,
                    is_elderly=elderly,
                    lives_alone=alone,
                    resident_id=resident_id,
                )
            residents[f"{building}-{unit}-{number}"] = resident_id
        key = new_api_key()
        console = session.scalars(select(ApiClient).filter_by(name="demo-console")).first()
        if console is None:
            console, key = directory.create_api_client(session, name="demo-console", role="system")
        else:
            console.key_hash = hash_api_key(key)
            console.revoked_at = None
    print(json.dumps({"community": DEMO_COMMUNITY, "residents": residents, "api_key": key}))
    return 0


def _configure_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the register as CSV (UTF-8), with a header")
    parser.add_argument(
        "--good-rows-only",
        action="store_true",
        help="import the good rows of a file that has bad ones (by default nothing is)",
    )


def _bar(done: int, total: int) -> None:
    filled = BAR_WIDTH * done // max(total, 1)
    sys.stderr.write(f"\rresidents [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _import_register(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Check a register file, then import it (or its good rows); a report either way."""
    started = time.perf_counter()
    try:
        with (
            args.file.open(encoding="utf-8-sig", newline="") as source,
            runtime.db.transaction() as session,
        ):
            report = register.import_register(
                session, source, good_rows_only=args.good_rows_only, progress=_bar
            )
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    for line in register.describe(report, good_rows_only=args.good_rows_only):
        print(line)
    print(f"took {time.perf_counter() - started:.2f} s", file=sys.stderr)
    return 0 if report.imported and (report.is_clean or args.good_rows_only) else 1


EXTRA_COMMANDS = {
    "create-api-key": (
        "register another system and print its API key",
        _configure_api_key,
        _create_api_key,
    ),
    "seed-demo": (
        "create the demo community's grid, residents and catalogue",
        lambda parser: None,
        _seed_demo,
    ),
    "import-register": (
        "import a community's register of households and residents from CSV",
        _configure_import,
        _import_register,
    ),
}
