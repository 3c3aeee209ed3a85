"""intake's own commands: API keys for other systems, and the demo community."""

from __future__ import annotations

import argparse
import json
import uuid

from sqlalchemy import select

from services.intake import directory
from services.intake.models import ApiClient, Category, Resident
from shared.auth import hash_api_key, new_api_key
from shared.runtime import ServiceRuntime

DEMO_COMMUNITY = "changshan-garden"
DEMO_CATEGORIES = (
    ("knife_sharpening", "Knife and scissor sharpening", "normal"),
    ("lunch_delivery", "Lunch delivered from the seniors' canteen", "high"),
    ("electrical_repair", "Electrical fault in the home", "urgent"),
    ("legal_consultation", "Legal consultation", "normal"),
    ("piano_lessons", "Free piano lessons for children", "low"),
    ("mediation", "Dispute mediation between neighbours", "normal"),
    ("haircut", "Haircut at home", "normal"),
)
DEMO_RESIDENTS = (
    ("3", "2", "501", "Li Shufen", True, True),
    ("3", "2", "502", "Zhao Ming", False, False),
    ("5", "1", "101", "Sun Hua", True, False),
)


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


def _seed_demo(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Create (or refresh) the demo community; print its ids and a fresh console API key."""
    with runtime.db.transaction() as session:
        for code, name, priority in DEMO_CATEGORIES:
            if session.get(Category, code) is None:
                directory.add_category(session, code=code, name=name, default_priority=priority)
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
}
