"""A message contract: typed fields, read strictly where a message is made and tolerantly
where it is read, so the maker can add a field without a lock-step deploy of the readers."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError


class Contract:
    """Fields declared by a marshmallow schema; subclasses say what a violation is called."""

    schema: type[Schema]

    @cached_property
    def _strict(self) -> Schema:
        return self.schema(unknown=RAISE)

    @cached_property
    def _tolerant(self) -> Schema:
        return self.schema(unknown=EXCLUDE)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.schema().fields)

    def violation(self, messages: Any) -> Exception:
        raise NotImplementedError

    def checked(self, data: Mapping[str, Any], *, strict: bool) -> dict[str, Any]:
        """``data`` read against the fields (strictly: unknown ones refused) and dumped back to
        its JSON-ready form."""
        schema = self._strict if strict else self._tolerant
        try:
            dumped: dict[str, Any] = schema.dump(schema.load(dict(data)))
        except ValidationError as error:
            raise self.violation(error.messages) from error
        return dumped

    def loaded(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` read tolerantly into Python values (decimals, datetimes ...)."""
        try:
            loaded: dict[str, Any] = self._tolerant.load(dict(data))
        except ValidationError as error:
            raise self.violation(error.messages) from error
        return loaded
