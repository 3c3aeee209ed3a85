"""Who may do what at dispatch: volunteers work their own assignments, team leads follow and
steer their teams' work, staff everything."""

from __future__ import annotations

from shared.errors import NotFound
from shared.policy import RESIDENT, STAFF, TEAM_LEAD, VOLUNTEER, Owner, Policy, allow

# A volunteer's own assignments are those handed to them.
HANDED_TO = Owner("volunteer_id")
# A team lead's are those of the teams they lead: assignments handed to its volunteers, and the
# volunteers themselves (both read ``lead_volunteer_id`` through the volunteer's team).
LED_BY = Owner("lead_volunteer_id")

ACCEPT = "assignments.Acceptance.post"
COMPLETE = "assignments.Completion.post"

POLICY = Policy(
    "dispatch",
    # People only: other systems go through intake, so no API key is known here.
    roles=(STAFF, VOLUNTEER, RESIDENT, TEAM_LEAD),
    rules={
        "assignments.Assignments.get": allow(STAFF, own={VOLUNTEER: HANDED_TO, TEAM_LEAD: LED_BY}),
        "assignments.Assignment.get": allow(STAFF, own={VOLUNTEER: HANDED_TO, TEAM_LEAD: LED_BY}),
        ACCEPT: allow(STAFF, own={VOLUNTEER: HANDED_TO, TEAM_LEAD: LED_BY}),
        COMPLETE: allow(STAFF, own={VOLUNTEER: HANDED_TO, TEAM_LEAD: LED_BY}),
        "roster.Teams.get": allow(STAFF),
        "roster.Teams.post": allow(STAFF),
        "roster.Team.patch": allow(STAFF),
        "roster.Volunteers.get": allow(STAFF, own={TEAM_LEAD: LED_BY}),
        "roster.Volunteers.post": allow(STAFF),
        "roster.RoutingRules.get": allow(STAFF),
        "roster.RoutingRules.post": allow(STAFF),
    },
)


def no_assignment(assignment_id: str) -> NotFound:
    """The answer for an assignment that does not exist, or is another volunteer's or team's."""
    return NotFound(f"No assignment {assignment_id}")
