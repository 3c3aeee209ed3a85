"""Tables dispatch owns: teams, volunteers, routing rules and assignments."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from shared.database import UtcDateTime
from shared.messaging import Messaging
from shared.timers import Timers


class Base(DeclarativeBase):
    pass


messaging = Messaging(Base.metadata)
timers = Timers(Base.metadata, messaging=messaging)


def folded(name: str) -> str:
    """A team's name as names are compared: case folded the Unicode way ("STRASSE" is
    "Straße", "ΟΜΆΔΑ" is "ομάδα") whatever the database and its locale would do, an accented
    letter the same however it is encoded."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


class Team(Base):
    """One of the red-vest volunteer teams (legal aid, mediation, household service ...)."""

    __tablename__ = "teams"
    __table_args__ = (Index("uq_teams_name_key", "name_key", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The name folded (``folded``), unique: two names differing only in case are one name. Set
    # with the name, here rather than by the database, whose lower() folds only ASCII on SQLite
    # and follows the locale on PostgreSQL (migration 0007).
    name_key: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    # An active member of the team who follows and steers its work. A plain id rather than a
    # foreign key (see migration 0005): naming a lead checks they are an active member.
    lead_volunteer_id: Mapped[str | None] = mapped_column(String(64))

    @validates("name")
    def _keyed(self, _: str, name: str) -> str:
        self.name_key = folded(name)
        return name


class Volunteer(Base):
    __tablename__ = "volunteers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    team: Mapped[Team | None] = relationship(foreign_keys=[team_id])

    @property
    def lead_volunteer_id(self) -> str | None:
        """Who leads the volunteer's team, if they have a team and it has a lead."""
        return None if self.team is None else self.team.lead_volunteer_id


class RoutingRule(Base):
    """Requests of ``category`` go to ``volunteer``; the matching rule of lowest precedence wins."""

    __tablename__ = "routing_rules"
    __table_args__ = (Index("ix_routing_rules_category", "category", "precedence"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(64))
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteers.id"))
    precedence: Mapped[int] = mapped_column(Integer, default=100)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    volunteer: Mapped[Volunteer] = relationship(lazy="joined")


class Assignment(Base):
    """A request handed to a volunteer: assigned, accepted, completed, then confirmed."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_status_assigned", "status", "assigned_at"),
        Index("ix_assignments_volunteer_status", "volunteer_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    category: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(String(200))
    resident_id: Mapped[str] = mapped_column(String(64))
    location: Mapped[dict[str, Any]] = mapped_column(JSON)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteers.id"))
    rule_id: Mapped[str | None] = mapped_column(ForeignKey("routing_rules.id"))
    status: Mapped[str] = mapped_column(String(20))
    hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    note: Mapped[str] = mapped_column(Text, default="")
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Who accepted and completed it, as addresses: staff acting for the volunteer show as staff.
    accepted_by: Mapped[str | None] = mapped_column(String(150))
    completed_by: Mapped[str | None] = mapped_column(String(150))
    # Who did the work, once it is reported done: ``[{"volunteer_id", "hours"}]``, the
    # assigned volunteer among them (alone, unless group work named others of their team).
    participants: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)

    volunteer: Mapped[Volunteer] = relationship(lazy="joined")

    @property
    def lead_volunteer_id(self) -> str | None:
        """Who leads the team of the volunteer it is handed to."""
        return self.volunteer.lead_volunteer_id
