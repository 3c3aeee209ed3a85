"""``python -m services.points``: migrate, relay, dead-letters, seed-demo."""

import sys

from services.points.commands import EXTRA_COMMANDS
from services.points.config import runtime
from shared.cli import run_cli

sys.exit(run_cli(runtime, extra=EXTRA_COMMANDS))
