"""notify's periodic jobs, and the modules whose timer handlers ``python -m services.notify
scheduler`` runs (none yet)."""

from services.notify.models import timers
from shared.timers import NIGHTLY, nightly_purge

timers.job("purge", cron=NIGHTLY, run=nightly_purge(timers))
