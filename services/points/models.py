"""Tables points owns: a double-entry ledger of accounts, transfers and their entries, and the
earning rates that turn confirmed hours into points."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.database import UtcDateTime
from shared.messaging import Messaging
from shared.timers import Timers


class Base(DeclarativeBase):
    pass


messaging = Messaging(Base.metadata)
timers = Timers(Base.metadata, messaging=messaging)

HOLDER = "holder"
ISSUANCE = "issuance"


class Account(Base):
    """Whoever can hold points; the issuance account is where earned points come from."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('holder', 'issuance')", name="ck_accounts_kind"),
        # Only the issuance account may go below zero: its debt is every point in circulation.
        CheckConstraint(
            "kind = 'issuance' OR balance >= 0", name="ck_accounts_holder_not_negative"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default=HOLDER)
    # Kept equal to the sum of the account's entries, in the same transaction as each entry.
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Transfer(Base):
    """One movement of points, keyed by the business fact that caused it (``earn:<request>``)."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_two_accounts"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    memo: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    debit_account: Mapped[Account] = relationship(foreign_keys=[debit_account_id], lazy="joined")
    credit_account: Mapped[Account] = relationship(foreign_keys=[credit_account_id], lazy="joined")


class Entry(Base):
    """One side of a transfer on one account: negative on the debit side, positive on the credit."""

    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ck_entries_amount_not_zero"),
        Index("ix_entries_account_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))

    transfer: Mapped[Transfer] = relationship(lazy="joined")


class EarningRate(Base):
    """How many points an hour of service in a category earns."""

    __tablename__ = "earning_rates"
    __table_args__ = (CheckConstraint("points_per_hour > 0", name="ck_earning_rates_positive"),)

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    points_per_hour: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
