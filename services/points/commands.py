"""points' own commands: the demo earning rates and catalogue, the audit of the ledger, and the
expiry of unused points."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal

from services.points import audit, catalogue, expiry, ledger
from services.points.models import GOODS, ISSUANCE, SERVICE, CatalogueItem, EarningRate
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

# What points buy in the demo: (id, name, kind, price, stock, at most this many a month).
DEMO_CATALOGUE = (
    ("haircut", "Haircut at home", SERVICE, Decimal(8), None, 1),
    ("rice-5kg", "Rice, 5 kg", GOODS, Decimal(20), 50, 2),
    ("oil-1l", "Cooking oil, 1 l", GOODS, Decimal(15), 30, 2),
)


def _seed_demo(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Open the issuance account and set the demo rates and catalogue items that are not set
    yet; print the rates and the catalogue."""
    rates, items = {}, {}
    with runtime.db.transaction() as session:
        ledger.open_account(session, holder=ledger.ISSUANCE_HOLDER, kind=ISSUANCE)
        for category, points_per_hour in DEMO_RATES:
            rate = session.get(EarningRate, category)
            if rate is None:
                rate = ledger.set_rate(session, category=category, points_per_hour=points_per_hour)
            rates[category] = str(rate.points_per_hour)
        for item_id, name, kind, price, stock, monthly in DEMO_CATALOGUE:
            item = session.get(CatalogueItem, item_id)
            if item is None:
                item = catalogue.put_item(
                    session,
                    item_id=item_id,
                    name=name,
                    kind=kind,
                    price=price,
                    stock=stock,
                    limit_per_person=monthly,
                    limit_period_days=30,
                )
            items[item_id] = str(item.price)
    print(json.dumps({"rates": rates, "catalogue": items}))
    return 0


def _audit(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Check the ledger's invariants; print each finding, and exit 1 when there is any."""
    with runtime.db.read() as session:
        findings = audit.audit_ledger(session)
    for finding in findings:
        print(f"{finding.check}\t{finding.subject}\t{finding.detail}")
    print(f"{runtime.name}: the ledger audit found {len(findings)} problem(s)", file=sys.stderr)
    return 1 if findings else 0


def _expire(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Run the day's round of expiry now, or with --dry-run only say what it would do; print
    one line for each expiry: what it does, the member, the day and the points."""
    policy = expiry.ExpiryPolicy.of(runtime.settings)
    if not policy.is_on:
        print(f"{runtime.name}: POINTS_EXPIRE_AFTER_DAYS is unset: points never expire")
    if args.dry_run:
        with runtime.db.read() as session:
            done = expiry.plan_round(session, policy=policy)
        verbs = ("would expire", "would announce")
    else:
        with runtime.db.transaction() as session:
            done = expiry.run_round(session, policy=policy)
        verbs = ("expired", "announced")
    for verb, expiries in zip(verbs, (done.expired, done.announced), strict=True):
        for item in expiries:
            print(f"{verb}\t{item.holder}\t{item.expires_on.isoformat()}\t{item.points}")
    return 0


def _expire_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would expire and be announced"
    )


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


EXTRA_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "seed-demo": (
        "open the issuance account and set the demo earning rates and catalogue",
        _no_arguments,
        _seed_demo,
    ),
    "audit": (
        "check the ledger's invariants; exit 1 on any finding",
        _no_arguments,
        _audit,
    ),
    "expire": (
        "move announced unused points that fell due to the bank and announce the next ones "
        "(the scheduler's daily round); --dry-run lists what it would do",
        _expire_arguments,
        _expire,
    ),
}
