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

Group work. A report may name several participants, each with their own hours: the volunteer
the request was assigned to and others of their team. Their earnings are one linked set of
pending transfers, written together or not at all: ``earn:<request id>`` for the assigned
volunteer, ``earn.<n>:<request id>`` for the others (n = 2, 3 ... in the order of their ids),
each priced at the category's rate for that participant's own hours. The set ends as one, in
one transaction: the confirmation posts every earning, each capped at the hours the resident
confirmed (no one gave a service more time than it took; the cap posts part of an earning and
releases the rest); a confirmation that mints nothing voids them all; and the set's own
deadline (not each earning's) posts them all, or voids them all as the policy says (then they
read expired, as a single earning does at its deadline). A confirmation of
more hours than any participant reported is refused, as for one volunteer. A confirmation
names the participants its completion named (intake keeps them): one that reaches points
before its completion holds the set as the completion would have, then ends it; the
completion arriving after holds nothing. A report that arrives after its earning ended
(posted, voided, expired, or credited at once) holds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.points import ledger
from services.points.ledger import ISSUANCE_HOLDER, TransferOrder
from services.points.models import (
    EARN,
    EXPIRED,
    PENDING,
    POST,
    POSTED,
    VOID,
    VOIDED,
    Account,
    EarningRefusal,
    Transfer,
    messaging,
    timers,
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
class Participant:
    """One volunteer who did a piece of group work, the hours they gave and their name."""

    volunteer_id: str
    hours: Decimal
    name: str | None = None


# The durable timer that ends a set of earnings still pending at the community's deadline.
SET_DEADLINE = "earning.set_deadline"


def share_transfer_id(request_id: str, position: int) -> str:
    """The id of the earning of a request's ``position``-th participant (the first is the
    volunteer it was assigned to, whose earning is ``earn:<request id>``)."""
    return f"earn.{position}:{request_id}"


def _deadline_key(request_id: str) -> str:
    return f"earning:{request_id}:deadline"


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
    transfer_id: str | None = None,
    is_in_set: bool = False,
    is_linked: bool = False,
) -> TransferOrder:
    """The earning of a request's hours at ``rate``: pending when a ``policy`` ends it, or
    (``is_in_set``) when it is one of a set that its own deadline ends."""
    hours = hours.quantize(ledger.CENT)
    rate = rate.quantize(ledger.CENT)
    amount = ledger.points_for(hours, rate)
    if amount <= 0:
        raise Invalid(f"{hours} hour(s) at {rate} points/hour earn no points", field="hours")
    is_timed = policy is not None and not is_in_set
    return ledger.checked(
        TransferOrder(
            id=transfer_id or ledger.earn_transfer_id(request_id),
            kind=EARN,
            debit=ISSUANCE_HOLDER,
            credit=ledger.volunteer_holder(volunteer_id),
            amount=amount,
            is_pending=policy is not None or is_in_set,
            timeout=policy.confirm_within if policy is not None and is_timed else None,
            on_timeout=policy.when_unconfirmed if policy is not None and is_timed else None,
            is_linked=is_linked,
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


def _confirmed_first(session: Session, request_id: str, existing: Transfer | None) -> bool:
    """Whether the request's earning was settled before this completion came: its
    confirmation minted nothing (refused), credited the hours at once or held and posted
    group work's set; or the earning was posted, voided or expired since. Nothing is left to
    hold then."""
    if session.get(EarningRefusal, request_id) is not None:
        log.info("points.completion_after_refusal", request_id=request_id)
        return True
    if existing is not None and existing.status != PENDING:
        log.info("points.completion_after_settled", transfer_id=existing.id, status=existing.status)
        return True
    return False


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
    participants: Sequence[Participant] | None = None,
) -> Transfer | None:
    """Hold the points a service reported done earns until its resident confirms it; None
    when the report does not say the request's category (its confirmation credits it then).
    Where the report says them, the volunteer's name is kept on their account and the team
    and community the service was done for on the earning. Group work (several
    ``participants``) is held as one linked set; the assigned volunteer's earning is returned."""
    ledger.check_identifier(request_id, "request_id")
    ledger.check_identifier(volunteer_id, "volunteer_id")
    if participants:
        lead = _lead_first(volunteer_id, participants)
        if len(lead) > 1:
            return _open_pending_set(
                session,
                request_id=request_id,
                participants=lead,
                category=category,
                completed_by=completed_by,
                policy=policy,
                team_id=team_id,
                community=community,
            )
        hours = lead[0].hours
        volunteer_name = lead[0].name or volunteer_name
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
    if _confirmed_first(session, request_id, existing):
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


def _lead_first(volunteer_id: str, participants: Sequence[Participant]) -> list[Participant]:
    """The participants, the assigned volunteer first and the others in the order of their
    ids (which numbers their earnings); Invalid unless each is named once, the assigned
    volunteer among them."""
    named = [person.volunteer_id for person in participants]
    if len(set(named)) < len(named) or volunteer_id not in named:
        raise Invalid(
            f"The participants must name volunteer {volunteer_id} and each volunteer once",
            field="participants",
        )
    for person in participants:
        ledger.check_identifier(person.volunteer_id, "volunteer_id")
    others = sorted(
        (person for person in participants if person.volunteer_id != volunteer_id),
        key=lambda person: person.volunteer_id,
    )
    return [next(p for p in participants if p.volunteer_id == volunteer_id), *others]


def _open_pending_set(
    session: Session,
    *,
    request_id: str,
    participants: list[Participant],
    category: str | None,
    completed_by: str | None,
    policy: EarningPolicy,
    team_id: str | None,
    community: str | None,
) -> Transfer | None:
    """Hold group work's earnings as one linked set, the assigned volunteer's first."""
    if category is None:
        log.warning("points.completion_without_category", request_id=request_id)
        return None
    lead_id = ledger.earn_transfer_id(request_id)
    holders = [ledger.volunteer_holder(person.volunteer_id) for person in participants]
    # Every account of the set under one lock in id order, the issuance account's first: a
    # confirmation of the same request, which takes it too, waits for the whole set.
    held, existing = ledger.hold_for(session, lead_id, ISSUANCE_HOLDER, *holders)
    for person, holder in zip(participants, holders, strict=True):
        account = held.get(holder)
        if account is not None and person.name is not None:
            ledger.name_holder(account, person.name)
    if _confirmed_first(session, request_id, existing):
        return existing
    rate = existing.rate if existing is not None and existing.rate is not None else None
    rate = rate or ledger.rate_for(session, category).points_per_hour
    last = len(participants) - 1
    ids = [lead_id, *(share_transfer_id(request_id, n + 1) for n in range(1, len(participants)))]
    if existing is not None:
        held_ids = {member.id for member in _set_of(session, request_id)}
        if held_ids != set(ids):
            raise ledger.Refused(
                "exists_with_different_participants",
                f"The earnings of request {request_id} are held for {len(held_ids)} "
                f"participant(s), not {len(ids)}: a set is written once, so this is not applied",
                field="participants",
            )
    orders = [
        _earning(
            request_id=request_id,
            volunteer_id=person.volunteer_id,
            category=category,
            hours=person.hours,
            rate=rate,
            operator=completed_by,
            policy=policy,
            team_id=team_id,
            community=community,
            transfer_id=ids[index],
            is_in_set=True,
            is_linked=index < last,
        )
        for index, person in enumerate(participants)
    ]
    results = ledger.create_transfers(session, orders=orders)
    failed = next((result for result in results if not result.is_ok), None)
    if failed is not None:
        cause = next(r for r in results if r.result != ledger.LINKED_EVENT_FAILED)
        raise ledger.Refused(
            cause.result,
            f"The earnings of request {request_id} are written together or not at all, and "
            f"{cause.id} was refused: {cause.detail}",
        )
    if any(result.result == ledger.CREATED for result in results):
        timers.schedule(
            session,
            due_at=utcnow() + policy.confirm_within,
            what=SET_DEADLINE,
            key=_deadline_key(request_id),
            payload={"request_id": request_id, "when_unconfirmed": policy.when_unconfirmed},
        )
    return ledger.get_transfer(session, lead_id)


def _is_in_set(transfer: Transfer) -> bool:
    """Whether an earning is one of a set of group work's: held pending without a deadline of
    its own (an earning held alone carries the policy's), so that a confirmation of one
    volunteer's work costs no look-up for a set."""
    return transfer.is_pending and transfer.timeout_s is None


def _set_of(session: Session, request_id: str) -> list[Transfer]:
    """The earnings of a request: one, or the linked set of its group work, lead first."""
    query = (
        select(Transfer)
        .where(Transfer.request_id == request_id, Transfer.kind == EARN)
        .execution_options(populate_existing=True)
    )
    lead = ledger.earn_transfer_id(request_id)
    return sorted(
        session.scalars(query).unique(), key=lambda transfer: (transfer.id != lead, transfer.id)
    )


def _set_held(session: Session, request_id: str) -> list[Transfer]:
    """A request's set of earnings, read again once all their accounts are locked: how each
    ended is then what the last writer left."""
    members = _set_of(session, request_id)
    ledger.lock_accounts(session, ISSUANCE_HOLDER, *(member.credit for member in members))
    return _set_of(session, request_id)


def _post_set(
    session: Session,
    members: Sequence[Transfer],
    *,
    hours: Decimal | None,
    operator: str | None,
    reason: str | None = None,
) -> None:
    """Post every pending earning of a set, each capped at ``hours`` where they are given."""
    for member in members:
        if member.status != PENDING:
            # Posted already, by an earlier delivery of the same confirmation.
            continue
        own = member.hours or Decimal(0)
        if hours is None or own <= hours:
            ledger.post_pending(session, transfer_id=member.id, operator=operator, reason=reason)
            continue
        amount = ledger.points_for(hours, member.rate or Decimal(0))
        if amount <= 0:
            raise Invalid(f"{hours} hour(s) earn no points", field="hours")
        ledger.post_pending(
            session, transfer_id=member.id, amount=amount, operator=operator, hours=hours
        )
    timers.cancel(session, _deadline_key(members[0].request_id or ""))


def _void_set(
    session: Session,
    members: Sequence[Transfer],
    *,
    reason: str,
    operator: str | None,
    at_deadline: bool = False,
) -> None:
    """Void every pending earning of a set; at the set's deadline they expire, as a single
    earning does at its own."""
    for member in members:
        if member.status != PENDING:
            continue
        if at_deadline:
            ledger.expire_pending(session, transfer_id=member.id, reason=reason)
        else:
            ledger.void_pending(session, transfer_id=member.id, reason=reason, operator=operator)
    timers.cancel(session, _deadline_key(members[0].request_id or ""))


@timers.handler(SET_DEADLINE)
def end_unconfirmed_set(session: Session, *, key: str, payload: dict[str, Any]) -> None:
    """A set of earnings still pending at its deadline is posted or voided, all together."""
    members = _set_held(session, payload["request_id"])
    if not any(member.status == PENDING for member in members):
        return
    if payload["when_unconfirmed"] == POST:
        reason = "Not confirmed in time: posted, as the community's policy says"
        _post_set(session, members, hours=None, operator=None, reason=reason)
    else:
        reason = "Not confirmed in time: voided, as the community's policy says"
        _void_set(session, members, reason=reason, operator=None, at_deadline=True)


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
    if existing.status == POSTED:
        # Posted already, in whole or for fewer hours (by an earlier confirmation, or at its
        # timeout): nothing more to do. Posting it again would be a different posting.
        log.info("points.credited_already", transfer_id=existing.id)
        return existing
    if existing.status != PENDING:
        # Voided or expired: the ledger says so.
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


def why_not_minted(
    *, volunteer_id: str, parties: Parties, others: Sequence[str] = ()
) -> str | None:
    """Why confirmed hours must not become points (separation of duties), or None; ``others``
    are the addresses of the other participants of group work."""
    confirmer = parties.confirmed_by
    if role_of(confirmer) not in CONFIRMING_ROLES:
        return f"it was confirmed by {confirmer}, who is neither the resident nor staff"
    doers = {
        "the volunteer credited": ledger.volunteer_holder(volunteer_id),
        "the one who accepted it": parties.accepted_by,
        "the one who completed it": parties.completed_by,
    }
    same = [role for role, who in doers.items() if who == confirmer]
    if confirmer in others:
        same.append("one who took part in it")
    if same:
        return (
            f"it was confirmed by {confirmer}, who is also {' and '.join(same)}: "
            "no one may both do a service and confirm it"
        )
    return None


def refuse_by_hand(session: Session, transfer_id: str) -> None:
    """Refuse to post or void by hand a volunteer's earning: posting it would mint points that
    no one who did not do the work vouched for, and ending one of a group's earnings alone would
    break its set. The confirmation posts it, or the set's deadline ends it."""
    kind = session.scalar(select(Transfer.kind).where(Transfer.id == transfer_id))
    if kind == EARN:
        raise ledger.Refused(
            "owned_by_earning",
            f"Transfer {transfer_id!r} holds a volunteer's earning: the resident's confirmation "
            "of the service posts it, and a confirmation that mints nothing or the confirmation "
            "deadline ends it; once posted, a reversal takes it back",
        )


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
    participants: Sequence[Participant] = (),
    policy: EarningPolicy | None = None,
) -> Transfer | None:
    """A confirmed service earns its volunteer points, unless one person stands on both sides
    or its pending points were voided; then nothing is minted and the request is told why.
    Group work's ``participants``, which the confirmation names as the completion did, are
    held as the completion would have held them when it has not arrived yet, then credited."""
    ledger.check_identifier(request_id, "request_id")
    ledger.check_identifier(volunteer_id, "volunteer_id")
    held, existing = ledger.hold_for(
        session,
        ledger.earn_transfer_id(request_id),
        ISSUANCE_HOLDER,
        ledger.volunteer_holder(volunteer_id),
    )
    if existing is None and len(participants) > 1:
        # The completion is still on its way (points' worker was behind, or its message is
        # being delivered again): without the set it holds, only the assigned volunteer would
        # be credited, and the completion arriving after would hold nothing for the others.
        log.info("points.confirmation_before_completion", request_id=request_id)
        existing = _open_pending_set(
            session,
            request_id=request_id,
            participants=_lead_first(volunteer_id, participants),
            category=category,
            completed_by=parties.completed_by,
            policy=policy or EarningPolicy(),
            team_id=None,
            community=None,
        )
    if existing is not None and _is_in_set(existing):
        return _credit_confirmed_set(
            session,
            request_id=request_id,
            volunteer_id=volunteer_id,
            hours=hours,
            parties=parties,
        )
    reason = why_not_minted(volunteer_id=volunteer_id, parties=parties)
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
    _refuse(session, request_id=request_id, volunteer_id=volunteer_id, reason=reason)
    return None


def _credit_confirmed_set(
    session: Session,
    *,
    request_id: str,
    volunteer_id: str,
    hours: Decimal,
    parties: Parties,
) -> Transfer | None:
    """Group work confirmed: its set of earnings is posted, or voided and refused, as one."""
    members = _set_held(session, request_id)
    lead = members[0]
    if lead.credit != ledger.volunteer_holder(volunteer_id):
        raise ledger.TransferExists(lead.id, "credit", lead.credit, volunteer_id)
    others = [member.credit for member in members[1:]]
    reason = why_not_minted(volunteer_id=volunteer_id, parties=parties, others=others)
    if reason is None:
        reason = next((why for member in members if (why := _ended(member))), None)
    if reason is None:
        most = max(member.hours or Decimal(0) for member in members)
        if hours > most:
            raise ledger.Refused(
                "exceeds_pending_amount",
                f"{hours} hour(s) were confirmed for request {request_id}, more than any of "
                f"its participants reported ({most} at most)",
                field="hours",
            )
        _post_set(
            session, members, hours=hours.quantize(ledger.CENT), operator=parties.confirmed_by
        )
        return lead
    _void_set(session, members, reason=f"No points: {reason}", operator=parties.confirmed_by)
    _refuse(session, request_id=request_id, volunteer_id=volunteer_id, reason=reason)
    return None


def _refuse(session: Session, *, request_id: str, volunteer_id: str, reason: str) -> None:
    """Record that a request's confirmation minted nothing, and tell intake why."""
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
