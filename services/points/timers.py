"""points' periodic jobs, and the modules whose timer handlers ``python -m services.points
scheduler`` runs: the ledger's (a pending transfer's timeout), the catalogue's (a reservation
not collected), earning's (a set of group work's earnings at its deadline) and expiry's (points
announced to expire, on their day)."""

from sqlalchemy.orm import Session

from services.points import audit, catalogue, earning, expiry, ledger
from services.points.config import runtime
from services.points.models import timers
from shared.timers import NIGHTLY, nightly_purge

# The modules imported for the timer handlers they register.
HANDLERS = (ledger, catalogue, earning, expiry)


def expire_points(session: Session) -> dict[str, int]:
    """The daily round of expiry, as the settings' policy says: counted for its run's record."""
    done = expiry.run_round(session, policy=expiry.ExpiryPolicy.of(runtime().settings))
    return {"expired": len(done.expired), "announced": len(done.announced)}


timers.job("purge", cron=NIGHTLY, run=nightly_purge(timers))
# Daily, after the purge: what it finds is logged and counted, never mended.
timers.job("audit", cron="15 4 * * *", run=audit.nightly_audit)
# Daily, once the expiries announced for the day fell due at midnight (UTC).
timers.job("expire", cron="0 1 * * *", run=expire_points)
