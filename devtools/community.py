"""Migrate every service's database, seed the demo community and write its credentials."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from devtools.processes import run_command
from shared.auth import issue_token
from shared.settings import Settings
from shared.topology import SERVICES


def migrate_all(env: Mapping[str, str]) -> None:
    for service in SERVICES:
        run_command([sys.executable, "-m", f"services.{service}", "migrate"], env)


def seed_demo(env: Mapping[str, str], urls: Mapping[str, str]) -> dict[str, Any]:
    """Seed each service through its own command and mint the demo people's tokens."""
    seeded = {
        service: json.loads(
            run_command([sys.executable, "-m", f"services.{service}", "seed-demo"], env)
            .strip()
            .splitlines()[-1]
        )
        for service in SERVICES
    }
    secret = Settings.from_env("intake", env).auth_secret
    ttl = timedelta(days=30)
    volunteer = seeded["dispatch"]["volunteers"]["knife_sharpener"]
    resident_id = seeded["intake"]["residents"]["3-2-501"]
    return {
        "urls": dict(urls),
        "intake_api_key": seeded["intake"]["api_key"],
        "staff_token": issue_token(secret, subject="duty-officer", role="staff", ttl=ttl),
        "volunteer": {
            "id": volunteer["id"],
            "name": volunteer["name"],
            "token": issue_token(secret, subject=volunteer["id"], role="volunteer", ttl=ttl),
        },
        "resident": {
            "id": resident_id,
            "location": {
                "community": seeded["intake"]["community"],
                "building": "3",
                "unit": "2",
                "household": "501",
            },
            "token": issue_token(secret, subject=resident_id, role="resident", ttl=ttl),
        },
        "seeded": seeded,
    }


def write_credentials(path: Path, credentials: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(credentials, indent=2) + "\n")
    path.chmod(0o600)
