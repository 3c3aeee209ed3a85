"""Fields whose rules are contracts between services, written once."""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext
from typing import Any

from marshmallow import ValidationError, fields, validate

HOURS_MAX = Decimal(24)
HOURS_PLACES = 2
# The longest integer part a decimal may be written with, whatever its range.
MAX_INTEGER_DIGITS = 30


def _places(number: Decimal) -> int:
    """How many decimal places ``number``'s value needs (trailing zeros need none)."""
    _, digits, exponent = number.as_tuple()
    if not any(digits) or not isinstance(exponent, int):
        return 0
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + zeros))


class StrictDecimal(fields.Decimal):
    """A decimal read exactly, never rounded or reinterpreted, within a range it documents.

    A JSON string must be ASCII digits, then optionally a point and 1 to ``places`` digits:
    no spaces, exponent, underscore, ``+`` or other digits, and ``-`` only when the range
    allows negatives. A JSON number (or a ``Decimal`` from code) must have a value with at
    most ``places`` places; its trailing zeros carry no meaning. NaN and Infinity are refused.
    Documented as a number with its bounds and ``multipleOf``, or, with ``as_string``, as a
    string with a pattern.
    """

    default_error_messages = {
        "written": "Must be written with ASCII digits and at most {places} decimal places, "
        'like "{example}".',
        "places": "Must have at most {places} decimal places.",
        "negative": "Must not be negative.",
    }

    def __init__(
        self,
        *,
        places: int,
        minimum: Decimal,
        maximum: Decimal,
        min_inclusive: bool = True,
        max_inclusive: bool = True,
        as_string: bool = False,
        **kwargs: Any,
    ) -> None:
        bounds = validate.Range(
            min=minimum, max=maximum, min_inclusive=min_inclusive, max_inclusive=max_inclusive
        )
        extra = kwargs.pop("validate", None) or []
        extra = [extra] if callable(extra) else list(extra)
        self.is_signed_allowed = minimum < 0
        sign = "-?" if self.is_signed_allowed else ""
        self.pattern = rf"^{sign}[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,{places}}})?$"
        # The converter documents the type and the bounds; these say how many places.
        places_doc = {"pattern": self.pattern} if as_string else {"multipleOf": 10.0**-places}
        kwargs["metadata"] = {**places_doc, **kwargs.get("metadata", {})}
        super().__init__(places=places, as_string=as_string, validate=[bounds, *extra], **kwargs)
        self.bounds = bounds
        self.max_places = places
        self._written = re.compile(self.pattern)

    def _refuse(self, key: str) -> ValidationError:
        example = "1." + "5" * self.max_places if self.max_places else "1"
        return self.make_error(key, places=self.max_places, example=example)

    def _read(self, value: Any) -> Decimal:
        if value is True or value is False:
            raise self.make_error("invalid")
        if isinstance(value, str):
            if value.startswith("-") and not self.is_signed_allowed:
                raise self._refuse("negative")
            if not self._written.fullmatch(value):
                raise self._refuse("written")
            return Decimal(value)
        if isinstance(value, int):
            return Decimal(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.make_error("special")
            # The shortest text that reads back as this float: what the client wrote.
            return Decimal(repr(value))
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise self.make_error("special")
            return value
        raise self.make_error("invalid")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        number = self._read(value)
        if number.is_signed() and not self.is_signed_allowed:
            raise self._refuse("negative")
        if _places(number) > self.max_places:
            raise self._refuse("places")
        # Checked before padding to the places, which is the only change made to the value.
        self.bounds(number)
        with localcontext() as context:
            context.prec = max(context.prec, number.adjusted() + 1 + self.max_places)
            return number.quantize(Decimal(1).scaleb(-self.max_places))


def hours_field(**kwargs: Any) -> StrictDecimal:
    """Hours of service, more than 0 and at most 24, with 2 places at most; a string when dumped."""
    kwargs.setdefault("as_string", True)
    return StrictDecimal(
        places=HOURS_PLACES,
        minimum=Decimal(0),
        min_inclusive=False,
        maximum=HOURS_MAX,
        **kwargs,
    )
