"""Who may do what at points: volunteers read their own account, statements, certificate and
transfers, redeem their own points and give them to the pool or their recorded family; staff
read all, write, post, void and reverse transfers, set rates, keep the catalogue and the family
register and hand redemptions over; everyone sees the honour rolls."""

from __future__ import annotations

from shared.errors import NotFound
from shared.policy import (
    GRID_LEADER,
    RESIDENT,
    STAFF,
    TEAM_LEAD,
    VOLUNTEER,
    Owner,
    Ownership,
    Policy,
    allow,
)

# A volunteer's own account is held under their address; a transfer is theirs on either side.
HELD_BY = Owner("holder", by_address=True)
ON_EITHER_SIDE = Owner("debit_account.holder", "credit_account.holder", by_address=True)
# A list of transfers is kept to those on the volunteer's own account.
ON_THEIR_ACCOUNT = Owner("holder", by_address=True)

# A team lead is a volunteer, a grid leader a resident: each has the points their role has.
MEMBERS = (VOLUNTEER, TEAM_LEAD)
EVERYONE = (STAFF, *MEMBERS, RESIDENT, GRID_LEADER)


def members_own(ownership: Ownership) -> dict[str, Ownership]:
    """A volunteer's (or team lead's) own things, held as ``ownership`` says."""
    return dict.fromkeys(MEMBERS, ownership)


POLICY = Policy(
    "points",
    # People only: other systems go through intake, so no API key is known here.
    roles=EVERYONE,
    rules={
        "points.AccountBalance.get": allow(STAFF, own=members_own(HELD_BY)),
        "points.AccountEntries.get": allow(STAFF, own=members_own(HELD_BY)),
        "points.AccountStatement.get": allow(STAFF, own=members_own(HELD_BY)),
        "points.ServiceCertificate.get": allow(STAFF, own=members_own(HELD_BY)),
        # An honour roll is put up for the whole community to see.
        "points.HonourRoll.get": allow(*EVERYONE),
        # A member gives their own points; staff give a member's at the desk, on their word.
        "points.Donations.post": allow(STAFF, own=members_own(HELD_BY)),
        "points.Gifts.post": allow(STAFF, own=members_own(HELD_BY)),
        "points.Family.get": allow(STAFF, own=members_own(HELD_BY)),
        # Staff know the families of the community; members cannot name their own.
        "points.FamilyMember.put": allow(STAFF),
        "points.FamilyMember.delete": allow(STAFF),
        "points.TransferDetail.get": allow(STAFF, own=members_own(ON_EITHER_SIDE)),
        "points.Transfers.get": allow(STAFF, own=members_own(ON_THEIR_ACCOUNT)),
        "points.Transfers.post": allow(STAFF),
        "points.TransferPosting.post": allow(STAFF),
        "points.TransferVoiding.post": allow(STAFF),
        "points.TransferReversal.post": allow(STAFF),
        "points.Rates.get": allow(*EVERYONE),
        "points.Rate.put": allow(STAFF),
        "points.RateHistory.get": allow(*EVERYONE),
        "points.Catalogue.get": allow(*EVERYONE),
        "points.CatalogueItem.get": allow(*EVERYONE),
        "points.CatalogueItem.put": allow(STAFF),
        # A volunteer redeems their own points; staff redeem any member's at the desk.
        "points.Redemptions.get": allow(STAFF, own=members_own(HELD_BY)),
        "points.Redemptions.post": allow(STAFF, own=members_own(HELD_BY)),
        "points.RedemptionDetail.get": allow(STAFF, own=members_own(HELD_BY)),
        # The handover, or its cancellation, happens at the community's desk.
        "points.RedemptionFulfilment.post": allow(STAFF),
        "points.RedemptionCancellation.post": allow(STAFF),
    },
)


def no_account(holder: str) -> NotFound:
    """The answer for an account that does not exist, or is another volunteer's."""
    return NotFound(f"No account {holder!r}", field="holder")


def no_transfer(transfer_id: str) -> NotFound:
    """The answer for a transfer that does not exist, or is between others."""
    return NotFound(f"No transfer {transfer_id!r}")
