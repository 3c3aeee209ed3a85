"""``make stories`` against the services as real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.community import write_credentials
from devtools.processes import ROOT
from devtools.stories import STORIES

pytestmark = pytest.mark.e2e


def run_stories(stack, credentials, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m devtools stories`` reading ``credentials`` where ``make run`` writes them."""
    write_credentials(tmp_path / "demo-credentials.json", credentials)
    return subprocess.run(
        [sys.executable, "-m", "devtools", "stories"],
        cwd=ROOT,
        env={**stack.env, "REDVEST_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_every_built_story_is_ok_and_the_others_say_they_are_not_built(stack, tmp_path):
    result = run_stories(stack, stack.seed(), tmp_path)

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[2] == "story 3 knife sharpening: ok"
    assert lines[7].startswith("story 8 a city hotline posts") and lines[7].endswith(": ok")
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        "ok" if story.is_built else "not built" for story in STORIES
    ]
    assert [story.number for story in STORIES] == list(range(1, 11))


def test_a_system_that_refuses_the_hotline_fails_every_built_story_with_its_reason(stack, tmp_path):
    credentials = {**stack.seed(), "intake_api_key": "rv_not-a-key-intake-knows"}

    result = run_stories(stack, credentials, tmp_path)

    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines[2].startswith("story 3 knife sharpening: FAIL ") and "401" in lines[2]
    assert lines[7].startswith("story 8 ") and ": FAIL " in lines[7] and "401" in lines[7]
    assert lines[0].endswith(": not built")
