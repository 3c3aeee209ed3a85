"""``python -m services.dispatch``: migrate, relay, dead-letters, seed-demo."""

import sys

from services.dispatch.commands import EXTRA_COMMANDS
from services.dispatch.config import runtime
from shared.cli import run_cli

sys.exit(run_cli(runtime, extra=EXTRA_COMMANDS))
