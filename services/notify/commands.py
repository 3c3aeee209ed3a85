"""notify's own commands: the templates a demo (or a fresh deployment) needs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from services.notify import delivery
from shared.cli import Command
from shared.runtime import ServiceRuntime


def _seed_demo(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Create the default templates that are missing, keeping any staff edits."""
    with runtime.db.transaction() as session:
        keys = delivery.ensure_default_templates(session)
    print(json.dumps({"templates": keys}))
    return 0


EXTRA_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "seed-demo": (
        "create the default message templates that are missing",
        lambda parser: None,
        _seed_demo,
    ),
}
