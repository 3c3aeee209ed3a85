"""A period of whole days in a time zone, as statements, certificates and honour rolls are
asked for: from the first day's midnight to the midnight after the last day, there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import Invalid

# Ten years: what a statement, a certificate or a roll could sensibly cover.
MAX_DAYS = 3660
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
# An IANA zone name (``Asia/Shanghai``, ``UTC``); checked before it goes near the file system.
ZONE_NAME = r"^[A-Za-z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2}$"
_ZONE_NAME = re.compile(ZONE_NAME)


@dataclass(frozen=True)
class Period:
    """Days ``first`` to ``last``, both whole, in the time zone ``zone``."""

    first: date
    last: date
    zone: str

    @property
    def starts(self) -> datetime:
        """The first moment of the period, in UTC."""
        return _midnight(self.first, self.zone)

    @property
    def ends(self) -> datetime:
        """The first moment after the period, in UTC."""
        return _midnight(self.last + timedelta(days=1), self.zone)


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def period(*, first: date, last: date, zone: str = "UTC") -> Period:
    """The period of days ``first`` to ``last`` in ``zone``; Invalid when it is none."""
    for day, field in ((first, "from"), (last, "to")):
        if not FIRST_DAY <= day <= LAST_DAY:
            raise Invalid(f"A day is from {FIRST_DAY} to {LAST_DAY}", field=field)
    if last < first:
        raise Invalid(f"The period ends ({last}) before it starts ({first})", field="to")
    if (last - first).days >= MAX_DAYS:
        raise Invalid(f"A period is at most {MAX_DAYS} days", field="to")
    if not _ZONE_NAME.fullmatch(zone):
        raise Invalid(f"{zone!r} is not a time zone name such as Asia/Shanghai", field="tz")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a folder of the zone database (``Asia``), not a zone.
        raise Invalid(f"No time zone is named {zone!r}", field="tz") from None
    return Period(first=first, last=last, zone=zone)
