"""How many ledger transfers a second points writes: one a transaction, or a batch of them a
transaction, with every check a transfer meets in service (available points never below zero,
accounts locked in id order, the id looked for). For ``make bench``; it writes to the database
it is given, which must be a migrated points database of the bench's own."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from services.points import ledger
from services.points.ledger import ISSUANCE_HOLDER, TransferOrder
from services.points.models import ADJUST, GIFT
from shared.database import Database

# Members the transfers move points between: enough that no two neighbours in a batch share
# both accounts, few enough that each account's row stays hot.
MEMBERS = 16
# What each member starts with: more than any bench moves out of it.
START = Decimal("1000000.00")


@dataclass(frozen=True)
class TransfersTimed:
    """``transfers`` written in ``seconds``, ``batch`` to a transaction."""

    transfers: int
    batch: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.transfers / self.seconds if self.seconds > 0 else 0.0


def bench_transfers(db: Database, n: int, batch: int) -> TransfersTimed:
    """Write ``n`` gifts between members, ``batch`` to a transaction, and time them (the
    members' funding is not timed). Each run uses ids of its own, so runs can follow one
    another on one database."""
    if n < 1 or batch < 1:
        raise ValueError("n and batch are at least 1")
    run = uuid.uuid4().hex[:8]
    members = [f"volunteer:bench-{run}-{number}" for number in range(MEMBERS)]
    with db.transaction() as session:
        for member in members:
            ledger.create_transfer(
                session,
                order=TransferOrder(
                    id=f"bench:{run}:fund:{member.rsplit('-', 1)[1]}",
                    kind=ADJUST,
                    debit=ISSUANCE_HOLDER,
                    credit=member,
                    amount=START,
                    reason="Funds the bench",
                ),
            )
    orders = [
        TransferOrder(
            id=f"bench:{run}:{number}",
            kind=GIFT,
            debit=members[number % MEMBERS],
            credit=members[(number * 7 + 1) % MEMBERS],
            amount=Decimal("1.00"),
        )
        # 7 n + 1 and n differ modulo 16 for every n: never a transfer to itself.
        for number in range(n)
    ]
    started = time.perf_counter()
    for first in range(0, len(orders), batch):
        with db.transaction() as session:
            results = ledger.create_transfers(session, orders=orders[first : first + batch])
        refused = [result for result in results if not result.is_ok]
        if refused:
            raise RuntimeError(f"the bench's transfers were refused: {refused[:3]}")
    return TransfersTimed(transfers=len(orders), batch=batch, seconds=time.perf_counter() - started)
