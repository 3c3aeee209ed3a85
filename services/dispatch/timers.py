"""dispatch's periodic jobs, and the modules whose timer handlers ``python -m services.dispatch
scheduler`` runs (none yet)."""

from services.dispatch.models import timers
from shared.timers import NIGHTLY, nightly_purge

timers.job("purge", cron=NIGHTLY, run=nightly_purge(timers))
