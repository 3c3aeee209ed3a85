"""Schema pieces every service's HTTP API uses."""

from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, pre_load

NUL_MESSAGE = "Must not contain NUL characters."


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


class StrictSchema(Schema):
    """Input from the public edge: an unknown field is an error, not silently dropped."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_nul_characters(self, data: Any, **_: Any) -> Any:
        # PostgreSQL cannot store or even compare text holding NUL: refuse it as invalid input.
        # JSON bodies never get here with one (shared.json_input refuses them, with the path);
        # query strings and other input do.
        if isinstance(data, Mapping):
            errors = {str(name): [NUL_MESSAGE] for name, value in data.items() if _has_nul(value)}
            if errors:
                raise ValidationError(errors)
        return data
