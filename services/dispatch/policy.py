"""Who may do what at dispatch: volunteers work their own assignments, staff everything."""

from __future__ import annotations

from shared.errors import NotFound
from shared.policy import RESIDENT, STAFF, VOLUNTEER, Owner, Policy, allow

# A volunteer's own assignments are those handed to them.
HANDED_TO = Owner("volunteer_id")

ACCEPT = "assignments.Acceptance.post"
COMPLETE = "assignments.Completion.post"

POLICY = Policy(
    "dispatch",
    # People only: other systems go through intake, so no API key is known here.
    roles=(STAFF, VOLUNTEER, RESIDENT),
    rules={
        "assignments.Assignments.get": allow(STAFF, own={VOLUNTEER: HANDED_TO}),
        "assignments.Assignment.get": allow(STAFF, own={VOLUNTEER: HANDED_TO}),
        ACCEPT: allow(STAFF, own={VOLUNTEER: HANDED_TO}),
        COMPLETE: allow(STAFF, own={VOLUNTEER: HANDED_TO}),
        "roster.Teams.get": allow(STAFF),
        "roster.Teams.post": allow(STAFF),
        "roster.Volunteers.get": allow(STAFF),
        "roster.Volunteers.post": allow(STAFF),
        "roster.RoutingRules.get": allow(STAFF),
        "roster.RoutingRules.post": allow(STAFF),
    },
)


def no_assignment(assignment_id: str) -> NotFound:
    """The answer for an assignment that does not exist, or is another volunteer's."""
    return NotFound(f"No assignment {assignment_id}")
