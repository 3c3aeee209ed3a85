"""points' periodic jobs, and the modules whose timer handlers ``python -m services.points
scheduler`` runs: the ledger's (a pending transfer's timeout) and the catalogue's (a
reservation not collected)."""

from services.points import audit, catalogue, ledger
from services.points.models import timers
from shared.timers import NIGHTLY, nightly_purge

# The modules imported for the timer handlers they register.
HANDLERS = (ledger, catalogue)

timers.job("purge", cron=NIGHTLY, run=nightly_purge(timers))
# Daily, after the purge: what it finds is logged and counted, never mended.
timers.job("audit", cron="15 4 * * *", run=audit.nightly_audit)
