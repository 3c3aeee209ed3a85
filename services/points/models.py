"""Tables points owns: a double-entry ledger of accounts, transfers (one or two phases) and
their entries, the earning rates that turn confirmed hours into points and their history, the
earnings refused, the catalogue and its redemptions, and the family each member may give to."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.database import UtcDateTime
from shared.messaging import Messaging
from shared.timers import Timers


class Base(DeclarativeBase):
    pass


messaging = Messaging(Base.metadata)
timers = Timers(Base.metadata, messaging=messaging)

ZERO = Decimal("0.00")

# The kinds of account. A member (a volunteer, or a household where the community pools
# points) is a "holder"; the bank has one account of each other kind.
HOLDER = "holder"
ISSUANCE = "issuance"
POOL = "pool"
SINK = "sink"
ACCOUNT_KINDS = (HOLDER, ISSUANCE, POOL, SINK)

# Transfer codes: why points moved.
EARN = "earn"
REDEEM = "redeem"
REVERSAL = "reversal"
ADJUST = "adjust"
DONATE = "donate"
GIFT = "gift"
EXPIRY = "expiry"
CODES = (EARN, REDEEM, REVERSAL, ADJUST, DONATE, GIFT, EXPIRY)

# What becomes of a pending transfer; a transfer of one phase is posted when written.
PENDING = "pending"
POSTED = "posted"
VOIDED = "voided"
EXPIRED = "expired"
# What a pending transfer's timeout does to it.
POST = "post"
VOID = "void"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Account(Base):
    """Whoever can hold points; the issuance account is where earned points come from."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ACCOUNT_KINDS), name="ck_accounts_kind"),
        # Only the issuance account may go below zero: its debt is every point it issued.
        CheckConstraint(
            "kind = 'issuance' OR balance - debits_pending >= 0",
            name="ck_accounts_available_not_negative",
        ),
        CheckConstraint(
            "debits_pending >= 0 AND credits_pending >= 0", name="ck_accounts_pending_not_negative"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default=HOLDER)
    # The holder's name as the service that knows people last gave it (for certificates and
    # honour rolls); None until one did.
    name: Mapped[str | None] = mapped_column(String(100))
    # Credits posted minus debits posted: kept equal to the sum of the account's entries, in
    # the same transaction as each entry.
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=ZERO)
    # What pending transfers hold: reserved from (debits) or promised to (credits) the account.
    debits_pending: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=ZERO)
    credits_pending: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=ZERO)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    @property
    def available(self) -> Decimal:
        """What the holder may spend: the balance less what pending debits hold."""
        return self.balance - self.debits_pending


class TransferResolution(Base):
    """How a pending transfer ended, written once: posted (in whole or in part), voided, or
    expired at its timeout."""

    __tablename__ = "transfer_resolutions"
    __table_args__ = (
        CheckConstraint(
            _one_of("outcome", (POSTED, VOIDED, EXPIRED)), name="ck_transfer_resolutions_outcome"
        ),
        # Only a posting moves points, and it moves some.
        CheckConstraint(
            "(outcome = 'posted' AND amount > 0) OR (outcome <> 'posted' AND amount = 0)",
            name="ck_transfer_resolutions_amount",
        ),
    )

    # One resolution per pending transfer: a second posting or voiding cannot be written.
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(10))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    operator: Mapped[str | None] = mapped_column(String(150))
    reason: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The hours a posting confirmed, where the transfer prices hours: all of them, or those
    # confirmed when fewer were.
    hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))


class Transfer(Base):
    """One movement of points, keyed by the business fact that caused it (``earn:<request>``).

    Never edited: a pending transfer's end is its resolution, a correction is a new transfer.
    """

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_two_accounts"),
        CheckConstraint(_one_of("kind", CODES), name="ck_transfers_kind"),
        CheckConstraint(
            f"on_timeout IS NULL OR {_one_of('on_timeout', (POST, VOID))}",
            name="ck_transfers_on_timeout",
        ),
        # A transfer is reversed at most once.
        Index("ix_transfers_reverses_id", "reverses_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The transfer's code: why the points moved (earn, redeem, reversal ...).
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    memo: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    is_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # A pending transfer still unresolved this long after it was written is posted or voided,
    # as on_timeout says, by a durable timer.
    timeout_s: Mapped[int | None] = mapped_column(Integer)
    on_timeout: Mapped[str | None] = mapped_column(String(4))
    category: Mapped[str | None] = mapped_column(String(64))
    hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    rate: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    # Who made it happen, as an address (``staff:duty-officer``, ``resident:r-1``).
    operator: Mapped[str | None] = mapped_column(String(150))
    reason: Mapped[str | None] = mapped_column(Text)
    reverses_id: Mapped[str | None] = mapped_column(ForeignKey("transfers.id"))
    # Where an earning's service was done, as the service that routed it said: the volunteer
    # team it was done for and the community it was done in (None where it was not said).
    team_id: Mapped[str | None] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(64))

    debit_account: Mapped[Account] = relationship(foreign_keys=[debit_account_id], lazy="joined")
    credit_account: Mapped[Account] = relationship(foreign_keys=[credit_account_id], lazy="joined")
    resolution: Mapped[TransferResolution | None] = relationship(lazy="joined")

    @property
    def status(self) -> str:
        if not self.is_pending:
            return POSTED
        return self.resolution.outcome if self.resolution is not None else PENDING

    @property
    def posted_amount(self) -> Decimal:
        """What the transfer moved: its amount, or what posting its pending amount moved."""
        if not self.is_pending:
            return self.amount
        return self.resolution.amount if self.resolution is not None else ZERO

    @property
    def posted_hours(self) -> Decimal | None:
        """The hours what it moved stands for, where it prices hours."""
        if not self.is_pending:
            return self.hours
        return self.resolution.hours if self.resolution is not None else None

    @property
    def debit(self) -> str:
        return self.debit_account.holder

    @property
    def credit(self) -> str:
        return self.credit_account.holder


class Entry(Base):
    """One side of a transfer on one account: negative on the debit side, positive on the credit.

    Written when points move: at once for a transfer of one phase, at posting for a pending one.
    """

    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ck_entries_amount_not_zero"),
        Index("ix_entries_account_id", "account_id", "id"),
        Index("ix_entries_account_posted_at", "account_id", "posted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    # When the points moved: as the transfer was written, or as its pending phase was posted.
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)

    transfer: Mapped[Transfer] = relationship(lazy="joined")


class EarningRate(Base):
    """How many points an hour of service in a category earns now."""

    __tablename__ = "earning_rates"
    __table_args__ = (CheckConstraint("points_per_hour > 0", name="ck_earning_rates_positive"),)

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    points_per_hour: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EarningRateChange(Base):
    """Each rate a category was given, and when and by whom: the history of earning_rates."""

    __tablename__ = "earning_rate_changes"
    __table_args__ = (
        CheckConstraint("points_per_hour > 0", name="ck_earning_rate_changes_positive"),
        Index("ix_earning_rate_changes_category", "category", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    category: Mapped[str] = mapped_column(String(64))
    points_per_hour: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)
    set_by: Mapped[str | None] = mapped_column(String(150))


class EarningRefusal(Base):
    """A request whose confirmation minted nothing, and why: its hours, reported done after,
    are not held as points either."""

    __tablename__ = "earning_refusals"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    volunteer_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    refused_at: Mapped[datetime] = mapped_column(UtcDateTime)


# The catalogue: what points buy.
SERVICE = "service"
GOODS = "goods"
ITEM_KINDS = (SERVICE, GOODS)
RESERVED = "reserved"
FULFILLED = "fulfilled"
CANCELLED = "cancelled"
REDEMPTION_STATUSES = (RESERVED, FULFILLED, CANCELLED)


class CatalogueItem(Base):
    """A service or goods points buy: its price, what is in stock, how many one person may
    have, and when it can be had."""

    __tablename__ = "catalogue_items"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ITEM_KINDS), name="ck_catalogue_items_kind"),
        CheckConstraint("price > 0", name="ck_catalogue_items_price_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="ck_catalogue_items_stock"),
        CheckConstraint(
            "limit_per_person IS NULL OR limit_per_person > 0",
            name="ck_catalogue_items_limit_positive",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    # None: not counted (a service given as often as it is asked for).
    stock: Mapped[int | None] = mapped_column(Integer)
    # At most this many per person in any ``limit_period_days`` (ever, without a period).
    limit_per_person: Mapped[int | None] = mapped_column(Integer)
    limit_period_days: Mapped[int | None] = mapped_column(Integer)
    available_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    available_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Redemption(Base):
    """Points exchanged for an item: reserved (the points held by a pending transfer and the
    stock set aside), then fulfilled at handover or cancelled."""

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint(_one_of("status", REDEMPTION_STATUSES), name="ck_redemptions_status"),
        CheckConstraint("quantity > 0", name="ck_redemptions_quantity_positive"),
        Index("ix_redemptions_item_holder", "item_id", "holder", "created_at"),
        Index("ix_redemptions_holder", "holder", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("catalogue_items.id"))
    holder: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    points: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(10))
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), unique=True)
    operator: Mapped[str | None] = mapped_column(String(150))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    item: Mapped[CatalogueItem] = relationship(lazy="joined")


class FamilyLink(Base):
    """A member of the community whom a member may give points to: recorded by staff, who
    know the family, so that gifts stay in the family rather than become a trade."""

    __tablename__ = "family_links"
    __table_args__ = (
        CheckConstraint("holder <> relative", name="ck_family_links_two_members"),
        Index("ix_family_links_relative", "relative"),
    )

    holder: Mapped[str] = mapped_column(String(100), primary_key=True)
    relative: Mapped[str] = mapped_column(String(100), primary_key=True)
    # How they are related, in the holder's words ("mother", "son").
    relation: Mapped[str] = mapped_column(String(50))
    recorded_by: Mapped[str | None] = mapped_column(String(150))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
