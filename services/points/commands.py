"""points' own commands: the demo earning rates."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from decimal import Decimal

from services.points import ledger
from services.points.models import ISSUANCE, EarningRate
from shared.cli import Command
from shared.runtime import ServiceRuntime

DEMO_RATES = (
    ("knife_sharpening", Decimal(10)),
    ("lunch_delivery", Decimal(8)),
    ("electrical_repair", Decimal(15)),
    ("legal_consultation", Decimal(12)),
    ("piano_lessons", Decimal(10)),
    ("mediation", Decimal(12)),
    ("haircut", Decimal(8)),
)


def _seed_demo(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Open the issuance account and set the demo rates that are not set yet; print the rates."""
    rates = {}
    with runtime.db.transaction() as session:
        ledger.open_account(session, holder=ledger.ISSUANCE_HOLDER, kind=ISSUANCE)
        for category, points_per_hour in DEMO_RATES:
            rate = session.get(EarningRate, category)
            if rate is None:
                rate = ledger.set_rate(session, category=category, points_per_hour=points_per_hour)
            rates[category] = str(rate.points_per_hour)
    print(json.dumps({"rates": rates}))
    return 0


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


EXTRA_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "seed-demo": (
        "open the issuance account and set the demo earning rates",
        _no_arguments,
        _seed_demo,
    ),
}
