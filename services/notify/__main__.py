"""``python -m services.notify``: migrate, relay, dead-letters, seed-demo."""

import sys

from services.notify.commands import EXTRA_COMMANDS
from services.notify.config import runtime
from shared.cli import run_cli

sys.exit(run_cli(runtime, extra=EXTRA_COMMANDS))
