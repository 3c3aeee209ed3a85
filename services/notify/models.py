"""Tables notify owns."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.messaging import Messaging


class Base(DeclarativeBase):
    pass


messaging = Messaging(Base.metadata)
