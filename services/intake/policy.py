"""Who may do what at intake: the one door's table, the scope an API key needs for each
operation, and who may confirm a request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session, aliased

from services.intake.models import NODE_KINDS, GridNode, Resident, ServiceRequest
from shared.auth import Principal
from shared.errors import Forbidden, Invalid, NotFound
from shared.people import address
from shared.policy import (
    ADMIN,
    GRID_LEADER,
    HEALTH,
    RESIDENT,
    STAFF,
    SYSTEM,
    VOLUNTEER,
    Owner,
    Policy,
    QueriedOwner,
    allow,
)

# A node's path names its levels by their kinds: a place's columns are named the same.
LEVELS = NODE_KINDS


def in_area_of(leader_id: str, place: Mapping[str, Any]) -> ColumnElement[bool]:
    """Whether ``place`` (columns or values, by level) lies at or beneath a node of the grid
    that resident ``leader_id`` is responsible for."""
    node = aliased(GridNode)
    # Below a node's own level its path is empty: there, any place of the level is beneath it.
    return exists().where(
        node.responsible_resident_id == leader_id,
        node.community == place["community"],
        *(
            or_(getattr(node, level) == "", getattr(node, level) == place[level])
            for level in LEVELS[1:]
        ),
    )


def _request_in_their_area(session: Session, leader: Principal, request: Any) -> bool:
    if request.resident_id == leader.subject:
        return True
    place = {level: getattr(request, level) for level in LEVELS}
    return bool(session.scalar(select(in_area_of(leader.subject, place))))


def _resident_in_their_area(session: Session, leader: Principal, submission: Any) -> bool:
    home = aliased(GridNode)
    found = session.scalar(
        select(Resident.id)
        .join(home, Resident.household_id == home.id)
        .where(
            Resident.id == submission.get("resident_id"),
            in_area_of(leader.subject, {level: getattr(home, level) for level in LEVELS}),
        )
    )
    return found is not None


# A resident's own: the requests made for them, and their record.
FOR_THEM = Owner("resident_id")
# A grid leader's: the requests placed in their area and their own wherever they live, and the
# residents who live in their area. A list is kept to these by listing.RequestFilter.area_of.
IN_THEIR_AREA = QueriedOwner(_request_in_their_area, scope_field="area_of")
LIVES_IN_THEIR_AREA = QueriedOwner(_resident_in_their_area, scope_field="area_of")
# A volunteer's own: the requests assigned to them.
ASSIGNED_TO_THEM = Owner("assignee_id")
CONFIRM = "requests.Confirmation.post"
TRIAGE = "requests.Triage.post"
START = "requests.Start.post"
ESCALATE = "requests.Escalation.post"
CANCEL = "requests.Cancellation.post"
REJECT = "requests.Rejection.post"
REOPEN = "requests.Reopening.post"
MERGE = "requests.Merge.post"
NOTE = "requests.Notes.post"
ATTACH = "requests.Attachments.post"

API_KEYS = "requests.ApiKeys"
API_KEY = "requests.ApiKey"

EVERYONE = (SYSTEM, STAFF, VOLUNTEER, RESIDENT, HEALTH, ADMIN, GRID_LEADER)
# Who may do what at intake; other systems and staff consoles call with API keys (system or
# staff), administration tools with admin keys, people with tokens.
POLICY = Policy(
    "intake",
    roles=EVERYONE,
    rules={
        # Requests, and what people do to them; a grid leader acts for the residents of their
        # area, on the requests placed there.
        "requests.Requests.post": allow(
            SYSTEM, STAFF, own={RESIDENT: FOR_THEM, GRID_LEADER: LIVES_IN_THEIR_AREA}
        ),
        "requests.Requests.get": allow(
            SYSTEM, STAFF, own={RESIDENT: FOR_THEM, GRID_LEADER: IN_THEIR_AREA}
        ),
        "requests.RequestChanges.get": allow(SYSTEM, STAFF),
        "requests.RequestCounts.get": allow(SYSTEM, STAFF),
        "requests.Request.get": allow(
            SYSTEM, STAFF, own={RESIDENT: FOR_THEM, GRID_LEADER: IN_THEIR_AREA}
        ),
        # Confirming mints the volunteer's points: see check_may_confirm for the rest of it.
        CONFIRM: allow(
            STAFF,
            own={RESIDENT: FOR_THEM, GRID_LEADER: IN_THEIR_AREA},
            refusal="Only the resident who asked, or staff on their behalf, may confirm a request",
        ),
        TRIAGE: allow(STAFF),
        START: allow(STAFF, own={VOLUNTEER: ASSIGNED_TO_THEM}),
        ESCALATE: allow(STAFF),
        CANCEL: allow(SYSTEM, STAFF, own={RESIDENT: FOR_THEM}),
        REJECT: allow(STAFF),
        REOPEN: allow(SYSTEM, STAFF, own={RESIDENT: FOR_THEM}),
        MERGE: allow(STAFF),
        NOTE: allow(SYSTEM, STAFF, own={RESIDENT: FOR_THEM, GRID_LEADER: IN_THEIR_AREA}),
        ATTACH: allow(SYSTEM, STAFF, own={RESIDENT: FOR_THEM}),
        # The catalogue: everyone reads it, staff keep it.
        "requests.Categories.get": allow(*EVERYONE),
        "requests.Categories.post": allow(SYSTEM, STAFF),
        "requests.Category.get": allow(*EVERYONE),
        "requests.Category.patch": allow(SYSTEM, STAFF),
        # The grid and the people on it.
        "requests.GridNodes.get": allow(SYSTEM, STAFF),
        "requests.GridNodes.post": allow(SYSTEM, STAFF),
        "requests.GridNode.get": allow(SYSTEM, STAFF),
        "requests.GridNode.patch": allow(SYSTEM, STAFF),
        "requests.Residents.post": allow(SYSTEM, STAFF),
        "requests.Residents.get": allow(SYSTEM, STAFF),
        "requests.Resident.get": allow(SYSTEM, STAFF, own={RESIDENT: FOR_THEM}),
        "requests.Resident.patch": allow(SYSTEM, STAFF),
        # The health register: sensitive, read by the health role alone; staff may add to it.
        "requests.HealthNotes.get": allow(HEALTH),
        "requests.HealthNotes.post": allow(STAFF, HEALTH),
        # Webhooks (webhooks.py): a system registers receivers for the events of the requests
        # it submitted, and it alone sees and acts on them; staff look after everyone's.
        **{
            f"requests.{view}": allow(STAFF, own={SYSTEM: Owner("owner")})
            for view in (
                "Webhooks.post",
                "Webhooks.get",
                "Webhook.get",
                "Webhook.patch",
                "Webhook.delete",
                "WebhookSecret.post",
                "WebhookResumption.post",
                "WebhookDeliveries.get",
                "WebhookDelivery.get",
                "WebhookDeliveryReplay.post",
                "WebhookReplays.post",
            )
        },
        # API keys (clients.py): issued, read and revoked by admins alone.
        f"{API_KEYS}.post": allow(ADMIN),
        f"{API_KEYS}.get": allow(ADMIN),
        f"{API_KEY}.get": allow(ADMIN),
        f"{API_KEY}.delete": allow(ADMIN),
    },
)


# Open311's callers without an api_key: the specification lets anyone read it.
PUBLIC = "public"
ANYONE = (SYSTEM, STAFF, PUBLIC)
# Who may do what through the Open311 facade (open311.py), known by api_key alone. A table of
# its own: POLICY matches the OpenAPI document one to one, and the facade is not in it.
OPEN311 = Policy(
    "intake",
    roles=ANYONE,
    rules={
        "open311.Discovery.get": allow(*ANYONE),
        "open311.Services.get": allow(*ANYONE),
        "open311.ServiceDefinition.get": allow(*ANYONE),
        "open311.Requests.post": allow(SYSTEM, STAFF),
        # Private categories never appear in what these read, and without a key a request shows
        # its service, state and building only: see georeport.PublicRecord.
        "open311.Requests.get": allow(*ANYONE),
        "open311.Request.get": allow(*ANYONE),
        "open311.Token.get": allow(*ANYONE),
    },
)


# The scope (clients.SCOPES) an API key needs for each operation it may call, on top of what its
# role allows; None: any key its role admits. People's tokens hold no scopes: their role says it.
_ANY_KEY = None
SCOPES: dict[str, str | None] = {
    **dict.fromkeys(
        (
            "requests.Requests.get",
            "requests.RequestChanges.get",
            "requests.RequestCounts.get",
            "requests.Request.get",
        ),
        "requests:read",
    ),
    **dict.fromkeys(
        (
            "requests.Requests.post",
            CONFIRM,
            TRIAGE,
            START,
            ESCALATE,
            CANCEL,
            REJECT,
            REOPEN,
            MERGE,
            NOTE,
            ATTACH,
        ),
        "requests:write",
    ),
    "requests.Categories.get": _ANY_KEY,
    "requests.Category.get": _ANY_KEY,
    "requests.Categories.post": "catalogue:write",
    "requests.Category.patch": "catalogue:write",
    **dict.fromkeys(
        (
            "requests.GridNodes.get",
            "requests.GridNode.get",
            "requests.Residents.get",
            "requests.Resident.get",
        ),
        "directory:read",
    ),
    **dict.fromkeys(
        (
            "requests.GridNodes.post",
            "requests.GridNode.patch",
            "requests.Residents.post",
            "requests.Resident.patch",
        ),
        "directory:write",
    ),
    # Read by the health role alone, which no key has.
    "requests.HealthNotes.get": _ANY_KEY,
    "requests.HealthNotes.post": "health:write",
    **{name: "webhooks" for name in POLICY.rules if name.startswith("requests.Webhook")},
    **dict.fromkeys(
        (f"{API_KEYS}.post", f"{API_KEYS}.get", f"{API_KEY}.get", f"{API_KEY}.delete"), "admin"
    ),
    # The facade: a key given as its api_key (or in the header) needs the open311 scope.
    **dict.fromkeys(OPEN311.rules, "open311"),
}


def no_request(request_id: str) -> NotFound:
    """The answer for a request that does not exist, or is another resident's."""
    return NotFound(f"No request {request_id}")


def no_resident(resident_id: str) -> NotFound:
    """The answer for a resident who does not exist, or is not the resident asking."""
    return NotFound(f"No resident {resident_id}", field="resident_id")


class PartyToTheService(Forbidden):
    """Whoever accepted or completed a service may never confirm it: that would mint points."""

    code = "party-to-the-service"
    title = "A party to the service cannot confirm it"


def actor_address(principal: Principal) -> str:
    """How intake names who acted: a grid leader is a resident, recognised as that resident
    wherever they appear (a timeline, a confirmation, the points it mints)."""
    return address("system", principal.subject) if principal.is_system else principal.address


def check_may_confirm(
    session: Session,
    request: ServiceRequest,
    confirmer: Principal,
    reason: str,
    *,
    as_proxy: bool = False,
) -> None:
    """Separation of duties: the resident (or a neighbour or the leader of their place standing
    in for them), or staff who took no part in it, with a reason."""
    if confirmer.is_system:
        raise Forbidden(
            "Only the resident who asked, or staff on their behalf with their own token, may "
            "confirm a request; a system or console known by an API key may not"
        )
    if confirmer.role == GRID_LEADER and confirmer.subject == request.resident_id:
        # Their own request: a grid leader confirms it as the resident they are, wherever
        # their area lies.
        confirmer = replace(confirmer, role=RESIDENT)
    if as_proxy:
        POLICY.check_role(CONFIRM, confirmer)
    else:
        POLICY.check_owner(
            CONFIRM, confirmer, request, hidden_as=no_request(request.id), session=session
        )
        if confirmer.role == GRID_LEADER:
            raise Forbidden(
                "A grid leader confirms only as the proxy of a resident living in their place, "
                f"and request {request.id} has no such resident"
            )
    if confirmer.role == STAFF and not reason:
        raise Invalid(
            "Staff confirming on the resident's behalf must give the reason in note",
            field="note",
        )
    steps = {"accepted": request.accepted_by, "completed": request.completed_by}
    confirmer_address = actor_address(confirmer)
    took_part = [step for step, by in steps.items() if by == confirmer_address]
    if took_part:
        raise PartyToTheService(
            f"{confirmer_address} {' and '.join(took_part)} this service, so may not confirm "
            "it: the resident, or staff who took no part in it, must"
        )
