"""``python -m services.intake``: migrate, relay, dead-letters, api-keys, seed-demo."""

import sys

from services.intake.commands import EXTRA_COMMANDS
from services.intake.config import runtime
from shared.cli import run_cli

sys.exit(run_cli(runtime, extra=EXTRA_COMMANDS))
