"""What every HTTP input schema refuses, whatever its fields."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError, fields

from shared.events import LocationSchema
from shared.schemas import NUL_MESSAGE, StrictSchema


class HomeSchema(StrictSchema):
    name = fields.Str()
    tags = fields.List(fields.Str())
    location = fields.Nested(LocationSchema)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Li\x00"},
        {"tags": ["ok", "\x00"]},
        {"location": {"community": "c", "building": "1", "unit": "2", "household": "\x00"}},
    ],
    ids=["a string", "a string in a list", "a string in a nested object"],
)
def test_a_nul_character_anywhere_in_a_field_is_refused_naming_the_field(body) -> None:
    with pytest.raises(ValidationError) as refused:
        HomeSchema().load(body)

    assert refused.value.messages == {next(iter(body)): [NUL_MESSAGE]}


def test_text_without_nul_loads_as_given() -> None:
    assert HomeSchema().load({"name": "Li Shufen", "tags": ["elderly"]}) == {
        "name": "Li Shufen",
        "tags": ["elderly"],
    }
