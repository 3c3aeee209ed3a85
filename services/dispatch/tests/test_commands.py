"""The demo seed: safe to run on every start."""

from __future__ import annotations

import argparse
import json

import pytest

from services.dispatch.commands import EXTRA_COMMANDS
from services.dispatch.config import runtime
from services.dispatch.models import Team
from services.dispatch.tests.builders import assigned, rules


def seed_demo(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, dict[str, str]]]:
    _, _, run = EXTRA_COMMANDS["seed-demo"]
    assert run(runtime(), argparse.Namespace()) == 0
    printed: dict[str, dict[str, dict[str, str]]] = json.loads(capsys.readouterr().out)
    return printed


def test_seeding_twice_gives_the_same_volunteers_and_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = seed_demo(capsys)
    second = seed_demo(capsys)

    assert first == second
    assert first["volunteers"]["knife_sharpener"]["name"] == "Lao Zhang"
    assert first["volunteers"]["electrician"]["name"] == "Wang Jun"
    assert sorted(rule.category for rule in rules()) == ["electrical_repair", "knife_sharpening"]


def test_the_seeded_rules_route_knives_and_wiring_to_the_right_people(
    capsys: pytest.CaptureFixture[str],
) -> None:
    volunteers = seed_demo(capsys)["volunteers"]

    assert assigned(category="knife_sharpening").volunteer_id == volunteers["knife_sharpener"]["id"]
    assert assigned(category="electrical_repair").volunteer_id == volunteers["electrician"]["id"]


def test_the_seeded_team_is_led_by_one_of_its_volunteers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = seed_demo(capsys)

    with runtime().db.read() as session:
        team = session.get(Team, seeded["team"]["id"])
        assert team is not None
        assert team.lead_volunteer_id == seeded["volunteers"]["knife_sharpener"]["id"]
