"""Hours of service become points, once per request, and only when someone who did not do the
work stands behind them.

When a volunteer reports a service done, its hours are priced at the category's rate of the
moment and held as a pending earning (``earn:<request id>``, from the issuance account), which
the resident's confirmation posts. Unconfirmed after the time the community allows, it is
posted or voided as the community's policy says, by a durable timer; the default voids it,
since otherwise a volunteer's own report would mint points that no one else vouched for.

A confirmation that finds no pending earning (the report came before this rule, or has not
arrived yet, or did not say the category) credits the hours at once, as before; a report that
arrives after that credit holds nothing. Where the confirmer also accepted, completed or earns
the service, nothing is minted, a pending earning is voided (a report arriving later holds
nothing), and ``earning.refused`` puts the reason on the request's timeline; so does a
confirmation that comes after its pending earning was voided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session

from services.points import ledger
from services.points.ledger import ISSUANCE_HOLDER, TransferOrder
from services.points.models import (
    EARN,
    EXPIRED,
    PENDING,
    POST,
    VOID,
    VOIDED,
    Account,
    EarningRefusal,
    Transfer,
    messaging,
)
from shared import events
from shared.clock import utcnow
from shared.errors import Invalid
from shared.people import role_of

log = structlog.get_logger(__name__)

# Who may confirm a service so that it mints points: never one who did the work.
CONFIRMING_ROLES = ("resident", "staff")


@dataclass(frozen=True)
class EarningPolicy:
    """What a community decided: how long a resident has to confirm the hours reported done,
    and whether they are then posted or voided."""

    confirm_within: timedelta = timedelta(days=7)
    when_unconfirmed: str = VOID

    def __post_init__(self) -> None:
        if self.when_unconfirmed not in (POST, VOID):
            raise ValueError(f"unconfirmed earnings are {POST!r}ed or {VOID!r}ed")
        if not timedelta(seconds=1) <= self.confirm_within <= ledger.MAX_TIMEOUT:
            raise ValueError(f"the time to confirm is 1 second to {ledger.MAX_TIMEOUT.days} days")


@dataclass(frozen=True)
class Parties:
    """Who did each step of a service, as addresses (None where it is not known)."""

    confirmed_by: str
    accepted_by: str | None
    completed_by: str | None


def _earning(
    *,
    request_id: str,
    volunteer_id: str,
    category: str,
    hours: Decimal,
    rate: Decimal,
    operator: str | None,
    policy: EarningPolicy | None = None,
    team_id: str | None = None,
    community: str | None = None,
) -> TransferOrder:
    """The earning of a request's hours at ``rate``: pending when a ``policy`` ends it."""
    hours = hours.quantize(ledger.CENT)
    rate = rate.quantize(ledger.CENT)
    amount = ledger.points_for(hours, rate)
    if amount <= 0:
        raise Invalid(f"{hours} hour(s) at {rate} points/hour earn no points", field="hours")
    return ledger.checked(
        TransferOrder(
            id=ledger.earn_transfer_id(request_id),
            kind=EARN,
            debit=ISSUANCE_HOLDER,
            credit=ledger.volunteer_holder(volunteer_id),
            amount=amount,
            is_pending=policy is not None,
            timeout=policy.confirm_within if policy is not None else None,
            on_timeout=policy.when_unconfirmed if policy is not None else None,
            request_id=request_id,
            category=category,
            hours=hours,
            rate=rate,
            operator=operator,
            memo=f"{hours} h of {category} at {rate} points/h",
            team_id=team_id,
            community=community,
        )
    )


def _issuance_and(held: dict[str, Account], volunteer_id: str) -> tuple[Account, Account]:
    return held[ISSUANCE_HOLDER], held[ledger.volunteer_holder(volunteer_id)]


def open_pending_earn(
    session: Session,
    *,
    request_id: str,
    volunteer_id: str,
    category: str | None,
    hours: Decimal,
    completed_by: str,
    policy: EarningPolicy,
    volunteer_name: str | None = None,
    team_id: str | None = None,
    community: str | None = None,
) -> Transfer | None:
    """Hold the points a service reported done earns until its resident confirms it; None
    when the report does not say the request's category (its confirmation credits it then).
    Where the report says them, the volunteer's name is kept on their account and the team
    and community the service was done for on the earning."""
    ledger.check_identifier(request_id, "request_id")
    ledger.check_identifier(volunteer_id, "volunteer_id")
    if category is None:
        log.warning("points.completion_without_category", request_id=request_id)
        return None
    # Under the locks a confirmation of the same request takes too, so that of the two the
    # second sees what the first did.
    held, existing = ledger.hold_for(
        session,
        ledger.earn_transfer_id(request_id),
        ISSUANCE_HOLDER,
        ledger.volunteer_holder(volunteer_id),
    )
    volunteer = held.get(ledger.volunteer_holder(volunteer_id))
    if volunteer is not None and volunteer_name is not None:
        ledger.name_holder(volunteer, volunteer_name)
    if session.get(EarningRefusal, request_id) is not None:
        # Its confirmation came first and minted nothing: there is nothing to hold.
        log.info("points.completion_after_refusal", request_id=request_id)
        return None
    if existing is not None and not existing.is_pending:
        # The confirmation came first and credited the hours: nothing is left to hold.
        log.info("points.completion_after_credit", transfer_id=existing.id)
        return existing
    # A pending earning is compared at the rate it was priced at: the rate may have changed.
    rate = existing.rate if existing is not None and existing.rate is not None else None
    order = _earning(
        request_id=request_id,
        volunteer_id=volunteer_id,
        category=category,
        hours=hours,
        rate=rate or ledger.rate_for(session, category).points_per_hour,
        operator=completed_by,
        policy=policy,
        team_id=team_id,
        community=community,
    )
    if existing is not None:
        return ledger.same_transfer(existing, order)
    issuance, volunteer = _issuance_and(held, volunteer_id)
    return ledger.write_transfer(session, order=order, debit=issuance, credit=volunteer)


def credit_earned_points(
    session: Session,
    *,
    request_id: str,
    volunteer_id: str,
    category: str,
    hours: Decimal,
    operator: str | None = None,
) -> Transfer:
    """Credit a volunteer for confirmed hours, once per request whatever the deliveries: post
    the request's pending earning, or credit them at once when there is none."""
    ledger.check_identifier(request_id, "request_id")
    ledger.check_identifier(volunteer_id, "volunteer_id")
    # Every credit locks the issuance account before it looks for its transfer, so of two
    # credits of one request the second waits for the first, then finds its transfer.
    held, existing = ledger.hold_for(
        session,
        ledger.earn_transfer_id(request_id),
        ISSUANCE_HOLDER,
        ledger.volunteer_holder(volunteer_id),
    )
    return _credit(
        session,
        held,
        existing,
        request_id=request_id,
        volunteer_id=volunteer_id,
        category=category,
        hours=hours,
        operator=operator,
    )


def _credit(
    session: Session,
    held: dict[str, Account],
    existing: Transfer | None,
    *,
    request_id: str,
    volunteer_id: str,
    category: str,
    hours: Decimal,
    operator: str | None,
) -> Transfer:
    if existing is None:
        order = _earning(
            request_id=request_id,
            volunteer_id=volunteer_id,
            category=category,
            hours=hours,
            rate=ledger.rate_for(session, category).points_per_hour,
            operator=operator,
        )
        issuance, volunteer = _issuance_and(held, volunteer_id)
        return ledger.write_transfer(session, order=order, debit=issuance, credit=volunteer)
    if not existing.is_pending:
        order = _earning(
            request_id=request_id,
            volunteer_id=volunteer_id,
            category=category,
            hours=hours,
            rate=existing.rate or ledger.rate_for(session, category).points_per_hour,
            operator=operator,
        )
        return ledger.same_transfer(existing, order)
    holder = ledger.volunteer_holder(volunteer_id)
    if existing.credit_account.holder != holder:
        raise ledger.TransferExists(existing.id, "credit", existing.credit_account.holder, holder)
    if existing.status != PENDING:
        # Posted already (by an earlier confirmation, or at its timeout): nothing more to do.
        return ledger.post_pending(session, transfer_id=existing.id, operator=operator)
    pending_hours = existing.hours or hours
    if hours > pending_hours:
        raise ledger.Refused(
            "exceeds_pending_amount",
            f"{hours} hour(s) were confirmed for request {request_id}, more than the "
            f"{pending_hours} reported done",
            field="hours",
        )
    # Fewer hours confirmed than reported: the confirmed part is posted, the rest released.
    rate = existing.rate or ledger.rate_for(session, category).points_per_hour
    amount = None if hours == pending_hours else ledger.points_for(hours, rate)
    if amount is not None and amount <= 0:
        raise Invalid(f"{hours} hour(s) earn no points", field="hours")
    return ledger.post_pending(
        session, transfer_id=existing.id, amount=amount, operator=operator, hours=hours
    )


def why_not_minted(*, volunteer_id: str, parties: Parties) -> str | None:
    """Why confirmed hours must not become points (separation of duties), or None."""
    confirmer = parties.confirmed_by
    if role_of(confirmer) not in CONFIRMING_ROLES:
        return f"it was confirmed by {confirmer}, who is neither the resident nor staff"
    doers = {
        "the volunteer credited": ledger.volunteer_holder(volunteer_id),
        "the one who accepted it": parties.accepted_by,
        "the one who completed it": parties.completed_by,
    }
    same = [role for role, who in doers.items() if who == confirmer]
    if same:
        return (
            f"it was confirmed by {confirmer}, who is also {' and '.join(same)}: "
            "no one may both do a service and confirm it"
        )
    return None


def _ended(transfer: Transfer) -> str | None:
    """Why a request's earning can no longer be credited, or None."""
    if transfer.status not in (VOIDED, EXPIRED) or transfer.resolution is None:
        return None
    when = transfer.resolution.resolved_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"its pending points were {transfer.status} on {when} before it was confirmed "
        f"({transfer.resolution.reason})"
    )


def credit_confirmed_service(
    session: Session,
    *,
    request_id: str,
    volunteer_id: str,
    category: str,
    hours: Decimal,
    parties: Parties,
) -> Transfer | None:
    """A confirmed service earns its volunteer points, unless one person stands on both sides
    or its pending points were voided; then nothing is minted and the request is told why."""
    ledger.check_identifier(request_id, "request_id")
    ledger.check_identifier(volunteer_id, "volunteer_id")
    reason = why_not_minted(volunteer_id=volunteer_id, parties=parties)
    held, existing = ledger.hold_for(
        session,
        ledger.earn_transfer_id(request_id),
        ISSUANCE_HOLDER,
        ledger.volunteer_holder(volunteer_id),
    )
    if reason is None and existing is not None:
        reason = _ended(existing)
    if reason is None:
        return _credit(
            session,
            held,
            existing,
            request_id=request_id,
            volunteer_id=volunteer_id,
            category=category,
            hours=hours,
            operator=parties.confirmed_by,
        )
    if existing is not None and existing.status == PENDING:
        ledger.void_pending(
            session,
            transfer_id=existing.id,
            reason=f"No points: {reason}",
            operator=parties.confirmed_by,
        )
    log.warning("points.refused", request_id=request_id, reason=reason)
    if session.get(EarningRefusal, request_id) is None:
        session.add(
            EarningRefusal(
                request_id=request_id,
                volunteer_id=volunteer_id,
                reason=reason,
                refused_at=utcnow(),
            )
        )
    messaging.stage(
        session,
        events.EARNING_REFUSED,
        {
            "request_id": request_id,
            "volunteer_id": volunteer_id,
            "reason": reason,
            "refused_at": utcnow(),
        },
    )
    return None
