"""Fields whose rules are contracts between services, written once."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any, cast

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


# Characters that reorder or hide text around them: a name holding one reads differently from
# what it is (Trojan Source), so text that people read refuses them.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# What prose may hold beyond printable text: line breaks and tabs.
PROSE_CONTROLS = frozenset("\n\r\t")


def _refuse_unreadable(text: str, *, allowed: frozenset[str]) -> None:
    for character in text:
        if character in allowed:
            continue
        if character in BIDI_CONTROLS:
            raise ValidationError(
                f"Must not contain the bidirectional control U+{ord(character):04X}."
            )
        if unicodedata.category(character) in ("Cc", "Cs", "Zl", "Zp"):
            raise ValidationError(f"Must not contain the control character U+{ord(character):04X}.")


class Line(fields.Str):
    """One line of text that people read (a name, a summary, a phone, a reason): no line
    breaks, control characters or bidirectional controls, and not blank when required to hold
    at least one character."""

    def __init__(self, *, most: int, least: int = 1, **kwargs: Any) -> None:
        extra = kwargs.pop("validate", None) or []
        extra = [extra] if callable(extra) else list(extra)
        super().__init__(validate=[validate.Length(min=least, max=most), *extra], **kwargs)
        self.least = least

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        _refuse_unreadable(text, allowed=frozenset())
        if self.least and not text.strip():
            raise ValidationError("Must not be blank.")
        return text


class Prose(Line):
    """Text of several lines (details, notes, descriptions): line breaks and tabs allowed,
    other control characters and bidirectional controls refused; empty unless ``least``."""

    def __init__(self, *, most: int, least: int = 0, **kwargs: Any) -> None:
        super().__init__(most=most, least=least, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = fields.Str._deserialize(self, value, attr, data, **kwargs)
        _refuse_unreadable(text, allowed=PROSE_CONTROLS)
        if self.least and not text.strip():
            raise ValidationError("Must not be blank.")
        return text


class Instant(fields.AwareDateTime):
    """A timezone-aware ISO 8601 moment that exists in UTC: ``9999-12-31T23:59:59-14:00``
    is past the last representable UTC moment, so it is refused rather than overflowing
    where it is stored or compared."""

    default_error_messages = {
        "range": "Must fall between 0001-01-01 and 9999-12-31 once converted to UTC.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment.astimezone(UTC)
        except OverflowError as error:
            raise self.make_error("range") from error
        return moment


class Flag(fields.Boolean):
    """A boolean: JSON true or false, or in a query string one of true, false, 1 and 0;
    "yes", "on" and the like are refused rather than guessed at."""

    truthy = {True, "true", "1"}
    falsy = {False, "false", "0"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, int) and not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class WholeNumber(fields.Integer):
    """An integer: a JSON integer (never a float, a boolean or a string); with ``text``, as a
    query string gives it, ASCII digits with an optional minus sign, and no spaces, other
    scripts' digits, signs or underscores."""

    _written = re.compile(r"-?[0-9]{1,18}")

    def __init__(self, *, text: bool = False, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)
        self.text = text

    def _validated(self, value: Any) -> int:
        if self.text and isinstance(value, str):
            if not self._written.fullmatch(value):
                raise self.make_error("invalid", input=value)
            return int(value)
        return super()._validated(value)


class FullMatch(validate.Regexp):
    """``validate.Regexp`` matching the whole value: its ``re.match`` lets ``$`` match before a
    final newline, so ``"abc\\n"`` would pass ``^[a-z]+$``. Documented with the same pattern."""

    def __call__(self, value: Any) -> Any:
        pattern = cast("re.Pattern[str]", self.regex)
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value
