"""The bench's ledger figure writes what it times: every transfer it counts, through the same
checks as in service, leaving the ledger balanced."""

from __future__ import annotations

from sqlalchemy import func, select

from services.points.benchmark import bench_transfers
from services.points.config import runtime
from services.points.models import GIFT, Transfer
from services.points.tests.builders import audit_findings


def test_benching_transfers_in_batches_writes_each_one_and_keeps_the_ledger_balanced() -> None:
    timed = bench_transfers(runtime().db, 30, 7)

    with runtime().db.read() as session:
        gifts = session.scalar(select(func.count()).where(Transfer.kind == GIFT))
    assert (timed.transfers, timed.batch, gifts) == (30, 7, 30)
    assert timed.seconds > 0 and timed.per_second > 0
    assert audit_findings() == []
