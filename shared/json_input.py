"""The one strict reader of JSON request bodies, and what ``install`` puts on every service's app.

The reader accepts a subset of JSON: no duplicated keys, no nesting past ``MAX_DEPTH``, no lone
surrogates or NUL characters in any string or key, no integer past ``MAX_DIGITS`` digits, no
NaN or Infinity, and no fraction that is absurdly large or small or that a binary float would
not carry exactly as written. For every body it accepts it returns what ``json.loads`` returns,
so any other reader of the same bytes (webargs among them) sees the same values.

The app reads a JSON body only through ``StrictRequest.get_data``, which refuses a body the
reader refuses; every parser of the body calls it, after authentication and before any view
code, so nothing refused reaches a domain function or the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from itertools import accumulate
from typing import Any, Literal, overload

import structlog
from flask import Flask, Request, Response
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import DataError, IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from shared.problems import problem
from shared.schemas import NUL_MESSAGE

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 32
# Integers and fractions alike; a 64-bit integer has 19 digits, money here has 10.
MAX_DIGITS = 30
# Numbers lie between 1e-30 and 1e30 in magnitude, or are zero.
MAX_EXPONENT = 30

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
SURROGATE_MESSAGE = "Must not contain a lone surrogate (\\ud800 to \\udfff): it is not text."


class JSONRefused(ValueError):
    """A request body the strict reader will not read; ``path`` names the value at fault."""

    def __init__(self, message: str, *, path: str | None = None, status: int = 422) -> None:
        super().__init__(message if path is None else f"{path}: {message}")
        self.message = message
        self.path = path
        self.status = status


class _Refusal:
    """What a parsing hook returns in place of a value it refuses; reported with its path."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.message = message
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Refusal:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return _Refusal("This key appears more than once in its object.", key=key)
            seen.add(key)
    return value


def _integer(text: str) -> int | _Refusal:
    if len(text.lstrip("-")) > MAX_DIGITS:
        return _Refusal(f"Must be an integer of at most {MAX_DIGITS} digits.")
    return int(text)


def _fraction(text: str) -> float | _Refusal:
    number = Decimal(text)
    if len(number.as_tuple().digits) > MAX_DIGITS or abs(number.adjusted()) > MAX_EXPONENT:
        return _Refusal(
            f"Must be a number of at most {MAX_DIGITS} digits, "
            f"between 1e-{MAX_EXPONENT} and 1e{MAX_EXPONENT} in size, or zero."
        )
    value = float(text)
    if Decimal(repr(value)) != number:
        # Every JSON reader that goes through a binary float would read another number.
        return _Refusal("Has more digits than a JSON number carries; send it as a string.")
    return value


def _constant(name: str) -> _Refusal:
    return _Refusal(f"{name} is not a JSON number.")


def _check_depth(text: str) -> None:
    """Refuse deep nesting before ``json.loads``, which recurses once per level."""
    structure = _STRING.sub("", text)
    depth = max(accumulate(_STEP[bracket] for bracket in _BRACKET.findall(structure)), default=0)
    if depth > MAX_DEPTH:
        raise JSONRefused(f"Arrays and objects must not nest more than {MAX_DEPTH} deep.")


def _text_fault(text: str, *, is_key: bool) -> str | None:
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    if is_key:
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        return f"A key of this object contains {what}."
    return NUL_MESSAGE if found.group() == "\x00" else SURROGATE_MESSAGE


def _path(parts: tuple[str | int, ...]) -> str | None:
    return ".".join(map(str, parts)) or None


class _Key(str):
    """A key of an object, told apart from a string value while walking."""


def _walk(value: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value and key in document order, with its path, without recursion."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        yield path, item
        if isinstance(item, dict):
            for key in item:
                yield (*path, key), _Key(key)
            stack.extend(((*path, key), child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(
                ((*path, index), child) for index, child in reversed(list(enumerate(item)))
            )


def _inspect(value: Any) -> None:
    for path, item in _walk(value):
        if isinstance(item, _Refusal):
            where = (*path, item.key) if item.key is not None else path
            raise JSONRefused(item.message, path=_path(where))
        if isinstance(item, str):
            is_key = isinstance(item, _Key)
            fault = _text_fault(item, is_key=is_key)
            if fault is not None:
                # A key cannot be printed in a path: name the object that holds it.
                raise JSONRefused(fault, path=_path(path[:-1] if is_key else path))


def read_json(data: bytes | str) -> Any:
    """The value of a JSON text, if the strict reader accepts it; else ``JSONRefused``."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JSONRefused(
                f"Not UTF-8: byte {error.start} cannot start or continue a character.", status=400
            ) from error
    else:
        text = data
    _check_depth(text)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_integer,
            parse_float=_fraction,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as error:
        raise JSONRefused(
            f"Not JSON: {error.msg} at line {error.lineno}, column {error.colno}.", status=400
        ) from error
    except RecursionError as error:  # only if the depth check miscounted: still never a 500
        raise JSONRefused(
            f"Arrays and objects must not nest more than {MAX_DEPTH} deep."
        ) from error
    _inspect(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, reading with the strict reader (``request.get_json`` uses it)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"the strict reader takes no options: {sorted(kwargs)}")
        return read_json(s)


class StrictRequest(Request):
    """A request whose JSON body can be read only if the strict reader accepts it."""

    _is_body_checked = False
    _refusal: JSONRefused | None = None
    # The body as the strict reader read it to check it: get_json's answer, not read again.
    _read: Any = None

    @overload
    def get_data(
        self,
        cache: bool = True,
        as_text: Literal[False] = False,
        parse_form_data: bool = False,
    ) -> bytes: ...

    @overload
    def get_data(
        self,
        cache: bool = True,
        as_text: Literal[True] = ...,
        parse_form_data: bool = False,
    ) -> str: ...

    def get_data(
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> bytes | str:
        data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        if len(data) > MAX_BODY_BYTES:
            # A body without a length (chunked) is read up to one byte past the limit: whole
            # if it fits, refused if it does not, never cut to the limit and read as if whole.
            raise RequestEntityTooLarge()
        if self.is_json and data:
            if not self._is_body_checked:
                self._is_body_checked = True
                try:
                    self._read = read_json(data)
                except JSONRefused as refusal:
                    self._refusal = refusal
            if self._refusal is not None:
                raise self._refusal
        return data.decode(errors="replace") if as_text else data

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._is_body_checked and self._refusal is None:
            # Read already (and the same for every caller, as Flask's cache would give it).
            return self._read
        return super().get_json(force=force, silent=silent, cache=cache)

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if isinstance(e, JSONRefused):
            raise e
        return super().on_json_loading_failed(e)


def _refused_body(refusal: JSONRefused) -> Response:
    if refusal.status == 400:
        return problem(400, "Malformed JSON", detail=refusal.message, code="malformed-json")
    where = refusal.path or "_schema"
    return problem(
        refusal.status,
        "Validation failed",
        detail=f"Invalid fields: {where}" if refusal.path else refusal.message,
        code="validation-error",
        field=refusal.path,
        errors={where: [refusal.message]},
    )


def _too_large(_: RequestEntityTooLarge) -> Response:
    return problem(
        413,
        "Request body too large",
        detail=f"A request body may hold at most {MAX_BODY_BYTES} bytes.",
        code="body-too-large",
    )


def _diagnosis(error: IntegrityError | DataError) -> dict[str, Any]:
    """What the driver says about the refusal: constraint, table and column, never values."""
    diag = getattr(error.orig, "diag", None)
    if diag is not None:  # PostgreSQL
        return {
            "sqlstate": getattr(error.orig, "sqlstate", None),
            "constraint": diag.constraint_name,
            "table": diag.table_name,
            "column": diag.column_name,
            "reason": diag.message_primary,
        }
    # SQLite names the constraint and its columns, e.g. "UNIQUE constraint failed: teams.name".
    return {"reason": str(error.orig).splitlines()[0] if error.orig else None}


def _is_duplicate(error: IntegrityError | DataError) -> bool:
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    return code in ("23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _database_refused(error: IntegrityError | DataError) -> Response:
    # The view's transaction has rolled back by now: the exception left db.transaction().
    log.warning("http.database_refused", error=type(error.orig).__name__, **_diagnosis(error))
    if _is_duplicate(error):
        return problem(
            409,
            "Conflicts with the current state",
            detail="Something with the same identity is already stored.",
            code="conflict",
        )
    return problem(
        422,
        "Invalid request",
        detail="The database refused a value it cannot store or that names nothing stored.",
        code="invalid",
    )


def install(app: Flask) -> None:
    """Read every JSON body of ``app`` strictly, bound its size, and answer refusals as problems."""
    app.json = StrictJSONProvider(app)
    app.request_class = StrictRequest
    # One byte past the limit, so that a body without a Content-Length that is too long can
    # be told from one that fits exactly (see StrictRequest.get_data).
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.register_error_handler(JSONRefused, _refused_body)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(IntegrityError, _database_refused)
    app.register_error_handler(DataError, _database_refused)
