"""intake's periodic jobs, which ``python -m services.intake scheduler`` runs: closing the
completed requests no one confirmed in time, and the nightly purge; and the modules whose timer
handlers it fires (``webhooks``: reading the timeline for the webhooks, announcing deliveries
that fell due)."""

from datetime import timedelta

from sqlalchemy.orm import Session

from services.intake import (
    requests,
    webhooks,  # noqa: F401  (declares the timers it handles)
)
from services.intake.config import runtime
from services.intake.models import timers
from shared.timers import NIGHTLY, nightly_purge


def close_unconfirmed(session: Session) -> dict[str, int]:
    """Close what was not confirmed within ``CONFIRM_WITHIN_DAYS`` of its completion."""
    days = runtime().settings.confirm_within_days
    return requests.close_unconfirmed(session, confirm_within=timedelta(days=days))


# Every ten minutes: a request is closed at most that long after its time to confirm is out.
timers.job("close-unconfirmed", cron="*/10 * * * *", run=close_unconfirmed)
timers.job("purge", cron=NIGHTLY, run=nightly_purge(timers))
