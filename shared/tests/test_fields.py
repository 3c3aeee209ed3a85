"""The shared fields refuse what a careless client or an attacker sends, with a clear message."""

from __future__ import annotations

import pytest
from marshmallow import Schema, ValidationError, fields

from shared.fields import Flag, FullMatch, Instant, Line, Prose, WholeNumber


class Input(Schema):
    name = Line(most=10)
    optional = Line(most=10, least=0)
    details = Prose(most=50)
    at = Instant()
    flag = Flag()
    count = WholeNumber(text=True)
    body_count = WholeNumber()


def refusal(body: dict) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        Input().load(body)
    ((_, messages),) = refused.value.messages.items()
    return messages


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "   "}, "Must not be blank."),
        ({"name": ""}, "Must not be blank."),
        ({"name": "Li\u202eShufen"[:10]}, "Must not contain the bidirectional control U+202E."),
        ({"name": "Li\nShufen"}, "Must not contain the control character U+000A."),
        ({"name": "Li\u2028"}, "Must not contain the control character U+2028."),
        ({"details": "ring\x07"}, "Must not contain the control character U+0007."),
        ({"details": "\u2066x\u2069"}, "Must not contain the bidirectional control U+2066."),
        ({"at": "9999-12-31T23:59:59-14:00"}, Instant.default_error_messages["range"]),
        ({"at": "0001-01-01T00:00:00+01:00"}, Instant.default_error_messages["range"]),
        ({"at": "2026-11-28T10:00:00"}, "Not a valid aware datetime."),
        ({"flag": "yes"}, "Not a valid boolean."),
        ({"flag": 1}, "Not a valid boolean."),
        ({"count": " 5"}, "Not a valid integer."),
        ({"count": "\u0665"}, "Not a valid integer."),
        ({"count": "1_000"}, "Not a valid integer."),
        ({"count": 5.0}, "Not a valid integer."),
        ({"count": True}, "Not a valid integer."),
        ({"count": "9" * 19}, "Not a valid integer."),
        ({"body_count": "5"}, "Not a valid integer."),
    ],
)
def test_unreadable_or_ambiguous_input_is_refused(body: dict, message: str) -> None:
    assert refusal(body) == [message]


def test_readable_input_loads_as_written() -> None:
    loaded = Input().load(
        {
            "name": "李淑芬 Li",
            "optional": "",
            "details": "Line one\n\tLine two",
            "at": "9999-12-31T23:59:59+00:00",
            "flag": "false",
            "count": "-12",
        }
    )

    assert loaded["name"] == "李淑芬 Li"
    assert loaded["optional"] == ""
    assert loaded["details"] == "Line one\n\tLine two"
    assert loaded["at"].year == 9999
    assert loaded["flag"] is False
    assert loaded["count"] == -12
    assert Input().load({"flag": True, "count": 7}) == {"flag": True, "count": 7}


@pytest.mark.parametrize("code", ["haircut\n", "haircut\r\n", "\nhaircut", "Haircut", 5])
def test_a_pattern_matches_the_whole_value_final_newline_included(code: object) -> None:
    class Coded(Schema):
        code = fields.Str(validate=FullMatch(r"^[a-z]+$"))

    with pytest.raises(ValidationError) as refused:
        Coded().load({"code": code})

    assert "code" in refused.value.messages


def test_a_pattern_takes_a_value_it_matches_whole() -> None:
    assert FullMatch(r"^[a-z]+$")("haircut") == "haircut"
