"""dispatch's own commands: the demo team, its volunteers and their routing rules."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dispatch import routing
from services.dispatch.models import RoutingRule, Team, Volunteer
from shared.cli import Command
from shared.runtime import ServiceRuntime

DEMO_TEAM = (
    "Red Vest household service team",
    "Household repairs and everyday help from the neighbourhood's volunteers",
)
# key, name, the category routed to them
DEMO_VOLUNTEERS = (
    ("knife_sharpener", "Lao Zhang", "knife_sharpening"),
    ("electrician", "Wang Jun", "electrical_repair"),
)
# The volunteer who leads the demo team, by key.
DEMO_LEAD = "knife_sharpener"


def demo_id(kind: str, key: str) -> str:
    """The same id on every run, so that seeding is safe to repeat."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"redvest:{kind}/{key.replace('_', '-')}").hex


def _ensure_team(session: Session) -> Team:
    name, description = DEMO_TEAM
    team = session.scalars(select(Team).filter_by(name=name)).first()
    if team is None:
        team = routing.create_team(
            session,
            name=name,
            description=description,
            team_id=demo_id("team", "household-service"),
        )
    return team


def _ensure_rule(session: Session, *, category: str, volunteer: Volunteer) -> None:
    rule_id = demo_id("rule", f"{category}/{volunteer.id}")
    existing = session.scalars(
        select(RoutingRule.id).filter_by(category=category, volunteer_id=volunteer.id)
    ).first()
    if existing is None and session.get(RoutingRule, rule_id) is None:
        routing.add_routing_rule(
            session, category=category, volunteer_id=volunteer.id, rule_id=rule_id
        )


def _seed_demo(runtime: ServiceRuntime, args: argparse.Namespace) -> int:
    """Create (or leave as they are) the demo team, volunteers and rules; print their ids."""
    volunteers = {}
    with runtime.db.transaction() as session:
        team = _ensure_team(session)
        for key, name, category in DEMO_VOLUNTEERS:
            volunteer = session.get(Volunteer, demo_id("volunteer", key))
            if volunteer is None:
                volunteer = routing.register_volunteer(
                    session, name=name, team_id=team.id, volunteer_id=demo_id("volunteer", key)
                )
            _ensure_rule(session, category=category, volunteer=volunteer)
            volunteers[key] = {"id": volunteer.id, "name": volunteer.name}
        if team.lead_volunteer_id is None:
            routing.update_team(
                session, team_id=team.id, lead_volunteer_id=volunteers[DEMO_LEAD]["id"]
            )
    print(json.dumps({"volunteers": volunteers, "team": {"id": team.id, "lead": DEMO_LEAD}}))
    return 0


EXTRA_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "seed-demo": (
        "create the demo team, its volunteers, its lead and their routing rules",
        lambda parser: None,
        _seed_demo,
    ),
}
