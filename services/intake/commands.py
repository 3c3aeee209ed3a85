"""intake's own commands: API keys for other systems (issue, list, revoke), the demo community,
and the import of a community's register."""

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

from services.intake import catalogue, clients, directory, register
from services.intake.models import ApiClient, Category, Resident
from services.intake.schemas import ApiKeySchema, CategoryCreateSchema
from shared.errors import DomainError
from shared.runtime import ServiceRuntime

DEMO_COMMUNITY = "changshan-garden"
DEMO_RESIDENTS = (
    ("3", "2", "501", "Li Shufen", True, True),
    ("3", "2", "502", "Zhao Ming", False, False),
    ("5", "1", "101", "Sun Hua", True, False),
)
BAR_WIDTH = 30
# The demo console's key drives make bench, the stories and the chaos runs, which post far
# faster than any console would: its limit only stops a runaway loop.
DEMO_CONSOLE_RATE_LIMIT = "100000/minute"


def demo_resident_id(building: str, unit: str, household: str) -> str:
    return uuid.uuid5(
        uuid.NAMESPACE_URL, f"redvest:{DEMO_COMMUNITY}/{building}/{unit}/{household}"
    ).hex


def _shown(record: ApiClient, /, **extra: str) -> str:
    return json.dumps({**ApiKeySchema().dump(record), **extra}, ensure_ascii=False)


def _refused(error: DomainError) -> int:
    print(error.detail, file=sys.stderr)
    return 2


def _create_api_key(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Issue a key and print it, once, with what it may do."""
    try:
        with runtime.db.transaction() as session:
            client, key = clients.create_api_client(
                session,
                name=args.name or args.client,
                role=args.role,
                scopes=args.scope,
                rate_limit=args.rate_limit,
            )
            shown = _shown(client, client=client.name, api_key=key)
    except DomainError as error:
        return _refused(error)
    print(shown)
    return 0


def _configure_api_key(parser: argparse.ArgumentParser) -> None:
    named = parser.add_mutually_exclusive_group(required=True)
    named.add_argument("--name", help="the client's name, e.g. city-hotline")
    named.add_argument("client", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument(
        "--role",
        choices=clients.ROLES,
        help="system (the default), staff (a staff console) or admin (implied by --scope admin)",
    )
    parser.add_argument(
        "--scope",
        action="append",
        choices=list(clients.SCOPES),
        help="a scope the key holds; repeat for more (default: all its role allows)",
    )
    parser.add_argument(
        "--rate-limit", help="its own limit, e.g. 1200/minute (default: API_KEY_RATE_LIMIT)"
    )


def _revoke_api_key(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Revoke a key: each web process refuses it within 30 s."""
    try:
        with runtime.db.transaction() as session:
            shown = _shown(clients.revoke_api_client(session, name=args.name))
    except DomainError as error:
        return _refused(error)
    print(shown)
    return 0


def _list_api_keys(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Every client, one JSON line each, by name: never the keys themselves."""
    after = None
    with runtime.db.read() as session:
        while True:
            page = clients.list_api_clients(session, after=after, page_size=clients.MAX_PAGE_SIZE)
            for client in page.items:
                print(_shown(client))
            if page.next_cursor is None:
                return 0
            after = page.next_cursor


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
        if session.scalars(select(ApiClient).filter_by(name="demo-console")).first() is None:
            _, key = clients.create_api_client(
                session, name="demo-console", rate_limit=DEMO_CONSOLE_RATE_LIMIT
            )
        else:
            console, key = clients.rekey_api_client(session, name="demo-console")
            console.rate_limit = DEMO_CONSOLE_RATE_LIMIT
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
        "issue an API key to another system, a console or an admin tool and print it once",
        _configure_api_key,
        _create_api_key,
    ),
    "revoke-api-key": (
        "revoke a client's API key for good",
        lambda parser: parser.add_argument("name", help="the client's name"),
        _revoke_api_key,
    ),
    "list-api-keys": (
        "list API clients with their scopes, limits, last use and revocation",
        lambda parser: None,
        _list_api_keys,
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
