"""No request body earns a 5xx or writes a row, whatever it holds.

Every operation that takes a JSON body, in every service's own OpenAPI document, gets a body
built from its request schema and then corrupted: bad strings (lone surrogates, NUL, strings
past their length), bad numbers (integers past any sane length, exponents far too large or
small, NaN and Infinity, non-ASCII digits, more decimal places than documented) and bad
structure (nesting thousands deep, a key given twice, a body past the size limit). Each must be
a 4xx problem naming the value at fault where there is one, with every table of the service
exactly as it was. The body as built, sent twice, passes the schema and meets what its first
sending stored: no answer to it is a 5xx either. A new endpoint, or a new field, is covered by
this file as it stands.

Staff credentials are sent, so a refusal is the body's and not the caller's: bodies are read
before a view looks at who is calling. Examples are few, seeded and stored nowhere.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from shared.auth import issue_token
from shared.json_input import MAX_BODY_BYTES, MAX_DEPTH, MAX_DIGITS, MAX_EXPONENT
from shared.problems import PROBLEM_BASE, PROBLEM_MIME
from shared.topology import SERVICES
from tests.support import openapi_path

HOSTILE = settings(
    max_examples=4,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        # The apps and credentials serve every example, on purpose.
        HealthCheck.function_scoped_fixture,
    ],
)
# Letters that need no escaping in JSON, to pad the corrupted strings with.
PADDING = st.text(alphabet="abcxyz -", max_size=6)
NON_ASCII_DIGITS = "\u0660\u0661\u0665\u06f1\u06f9\u0967\u096f\u0e51\uff11\uff19"

Path = tuple[str | int, ...]


def runtime_of(service: str) -> Any:
    return importlib.import_module(f"services.{service}.config").runtime()


APPS = {
    service: importlib.import_module(f"services.{service}.app").create_app() for service in SERVICES
}


def headers_of(role: str) -> dict[str, str]:
    # Every service checks tokens with the same secret; any runtime's settings will do.
    token = issue_token(
        runtime_of(SERVICES[0]).settings.auth_secret, subject="duty-officer", role=role
    )
    return {"Authorization": f"Bearer {token}"}


def caller_of(service: str, method: str, template: str) -> str:
    """Staff, unless the operation's policy admits only others (the admin's API keys)."""
    app = APPS[service]
    endpoint = next(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if openapi_path(rule.rule) == template and method.upper() in (rule.methods or ())
    )
    policy = importlib.import_module(f"services.{service}.policy").POLICY
    roles = policy.rule(f"{endpoint}.{method.lower()}").roles
    return "staff" if "staff" in roles else sorted(roles)[0]


# --- bodies built from the OpenAPI document ------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """A value of a built body: where it is and what its schema documents."""

    path: Path
    schema: dict[str, Any]

    @property
    def is_text(self) -> bool:
        return self.schema.get("type") == "string"

    @property
    def is_numeric(self) -> bool:
        return self.schema.get("type") in ("number", "integer")

    @property
    def places(self) -> int | None:
        """Decimal places a number may have, when its document says (``multipleOf``)."""
        step = self.schema.get("multipleOf")
        if self.schema.get("type") != "number" or not step or step >= 1:
            return None
        return round(-math.log10(step))


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    template: str
    url: str
    role: str
    body: Any
    leaves: tuple[Leaf, ...]
    objects: tuple[tuple[Path, tuple[str, ...]], ...]

    def __str__(self) -> str:
        return f"{self.service} {self.method.upper()} {self.template}"


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        else:
            schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


_SAMPLE_TEXT = ("knife_sharpening", "a", "1", "2026-11-26T09:00:00+00:00")


def sample_text(schema: dict[str, Any]) -> str:
    """A string its schema accepts: an enum's first value, or a sample fitting its pattern."""
    if schema.get("enum"):
        return str(schema["enum"][0])
    if schema.get("format") == "date-time":
        return _SAMPLE_TEXT[-1]
    pattern = schema.get("pattern")
    shortest, longest = schema.get("minLength", 0), schema.get("maxLength", 1000)
    fitting = [
        text
        for text in _SAMPLE_TEXT
        if (pattern is None or re.search(pattern, text)) and shortest <= len(text) <= longest
    ]
    return fitting[0] if fitting else "a" * max(shortest, 1)


def build(
    spec: dict[str, Any],
    schema: dict[str, Any],
    path: Path,
    leaves: list[Leaf],
    objects: list[tuple[Path, tuple[str, ...]]],
) -> Any:
    """A valid-looking value for ``schema``, recording its leaves and objects as it goes."""
    schema = resolve(spec, schema)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object":
        properties = {
            name: child
            for name, child in schema.get("properties", {}).items()
            if not resolve(spec, child).get("readOnly")
        }
        found = (leaves, objects)
        value = {
            name: build(spec, child, (*path, name), *found) for name, child in properties.items()
        }
        extra = schema.get("additionalProperties")
        if not value and isinstance(extra, dict):
            value = {"key": build(spec, extra or {"type": "string"}, (*path, "key"), *found)}
        objects.append((path, tuple(value)))
        return value
    if kind == "array":
        return [build(spec, schema.get("items", {}), (*path, 0), leaves, objects)]
    leaves.append(Leaf(path, schema))
    if kind == "string":
        return sample_text(schema)
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 10)
        return 1 if low <= 1 <= high else int(high)
    if kind == "boolean":
        return False
    return "a"


def operations() -> list[Operation]:
    found = []
    for service, app in APPS.items():
        spec = app.test_client().get("/openapi.json").json
        for template, by_method in spec["paths"].items():
            shared_parameters = by_method.get("parameters", [])
            for method, operation in by_method.items():
                if method == "parameters":
                    continue
                content = operation.get("requestBody", {}).get("content", {})
                if "application/json" not in content:
                    continue
                url = template
                for parameter in [*shared_parameters, *operation.get("parameters", [])]:
                    if parameter["in"] == "path":
                        value = sample_text(parameter.get("schema", {}))
                        url = url.replace("{" + parameter["name"] + "}", value)
                leaves: list[Leaf] = []
                objects: list[tuple[Path, tuple[str, ...]]] = []
                body = build(spec, content["application/json"]["schema"], (), leaves, objects)
                role = caller_of(service, method, template)
                found.append(
                    Operation(
                        service, method, template, url, role, body, tuple(leaves), tuple(objects)
                    )
                )
    return found


# --- corruptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A corrupted body, and the refusal it must earn: its status and the path it names."""

    text: str
    status: int
    path: Path | None


@dataclass(frozen=True)
class Change:
    """How a body is corrupted: ``raw`` JSON text in place of the value ``at``, or as a key of
    the object ``key_in``; or the key ``twice`` given twice."""

    raw: str = ""
    at: Path | None = None
    key_in: Path | None = None
    twice: Path | None = None


def encode(value: Any, change: Change, here: Path = ()) -> str:
    """``value`` as JSON text, with ``change`` made to it."""
    if here == change.at:
        return change.raw
    if isinstance(value, dict):
        members = [
            f"{json.dumps(key)}: {encode(item, change, (*here, key))}"
            for key, item in value.items()
        ]
        if change.twice is not None and change.twice[:-1] == here:
            key = change.twice[-1]
            members.append(f"{json.dumps(key)}: {json.dumps(value[key])}")
        if change.key_in == here:
            members.append(f"{change.raw}: 1")
        return "{" + ", ".join(members) + "}"
    if isinstance(value, list):
        items = (encode(item, change, (*here, index)) for index, item in enumerate(value))
        return "[" + ", ".join(items) + "]"
    return json.dumps(value)


def _replacing(op: Operation, leaf: Leaf, text: str) -> Hostile:
    """``text`` in place of ``leaf``'s value: refused, naming that value."""
    return Hostile(encode(op.body, Change(text, at=leaf.path)), 422, leaf.path)


def _into(
    op: Operation, leaves: Sequence[Leaf], texts: Callable[[Leaf], st.SearchStrategy[str]]
) -> st.SearchStrategy[Hostile]:
    """One of ``texts(leaf)`` in place of the value of one of ``leaves``."""
    return st.sampled_from(leaves).flatmap(
        lambda leaf: texts(leaf).map(lambda text: _replacing(op, leaf, text))
    )


def _string_holding(escape: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, bad, b: f'"{a}{bad}{b}"', PADDING, escape, PADDING)


def _as_value_or_key(op: Operation, bad: st.SearchStrategy[str]) -> st.SearchStrategy[Hostile]:
    """``bad`` (a JSON string) as a string of the body, or as a key of any of its objects."""
    # The strict reader names the object holding a bad key: the key itself is not printable.
    as_key = st.builds(
        lambda obj, text: Hostile(encode(op.body, Change(text, key_in=obj)), 422, obj or None),
        st.sampled_from([path for path, _ in op.objects]),
        bad,
    )
    texts = [leaf for leaf in op.leaves if leaf.is_text] or list(op.leaves)
    return st.one_of(_into(op, texts, lambda _: bad), as_key)


def lone_surrogates(op: Operation) -> st.SearchStrategy[Hostile]:
    escape = st.integers(0xD800, 0xDFFF).map(lambda point: f"\\u{point:04x}")
    return _as_value_or_key(op, _string_holding(escape))


def nul_characters(op: Operation) -> st.SearchStrategy[Hostile]:
    return _as_value_or_key(op, _string_holding(st.just("\\u0000")))


def strings_past_their_length(op: Operation) -> st.SearchStrategy[Hostile]:
    def too_long(leaf: Leaf) -> st.SearchStrategy[str]:
        shortest = leaf.schema.get("maxLength", 200) + 1
        return st.integers(shortest, 100_000).map(lambda size: json.dumps("x" * size))

    return _into(op, [leaf for leaf in op.leaves if leaf.is_text], too_long)


def huge_integers(op: Operation) -> st.SearchStrategy[Hostile]:
    # Up to 6000 digits: past Python's own limit on int() (4300 digits), which would raise.
    literal = st.builds(
        lambda sign, first, size: sign + first + "7" * (size - 1),
        st.sampled_from(["", "-"]),
        st.sampled_from("123456789"),
        st.integers(MAX_DIGITS + 1, 6000),
    )
    return _into(op, op.leaves, lambda _: literal)


def _with_exponent(signs: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda mantissa, e, sign, size: f"{mantissa}{e}{sign}{size}",
        st.sampled_from(["1", "9.5", "-2", "0"]),
        st.sampled_from(["e", "E"]),
        st.sampled_from(signs),
        st.integers(MAX_EXPONENT + 1, 999_999_999),
    )


def huge_exponents(op: Operation) -> st.SearchStrategy[Hostile]:
    return _into(op, op.leaves, lambda _: _with_exponent(["", "+"]))


def tiny_exponents(op: Operation) -> st.SearchStrategy[Hostile]:
    return _into(op, op.leaves, lambda _: _with_exponent(["-"]))


def not_numbers(op: Operation) -> st.SearchStrategy[Hostile]:
    constants = st.sampled_from(["NaN", "Infinity", "-Infinity"])
    as_literal = _into(op, op.leaves, lambda _: constants)
    numbers = [leaf for leaf in op.leaves if leaf.is_numeric]
    if not numbers:
        return as_literal
    return st.one_of(as_literal, _into(op, numbers, lambda _: constants.map(json.dumps)))


def non_ascii_digits(op: Operation) -> st.SearchStrategy[Hostile]:
    digits = st.text(alphabet=NON_ASCII_DIGITS, min_size=1, max_size=4).map(json.dumps)
    return _into(op, [leaf for leaf in op.leaves if leaf.is_numeric], lambda _: digits)


def too_many_places(op: Operation) -> st.SearchStrategy[Hostile]:
    def written(leaf: Leaf) -> st.SearchStrategy[str]:
        places = leaf.places or 0
        low = math.floor(leaf.schema.get("minimum", 0))
        high = max(low, math.ceil(leaf.schema.get("maximum", low + 2)) - 1)
        # Within the range, so the places are the only fault; as a number or as a string.
        return st.builds(
            lambda whole, zeros, last, quoted: (json.dumps if quoted else str)(
                f"{whole}.{'0' * zeros}{last}"
            ),
            st.integers(low, high),
            st.integers(places, places + 5),
            st.sampled_from("123456789"),
            st.booleans(),
        )

    return _into(op, [leaf for leaf in op.leaves if leaf.places is not None], written)


def deep_nesting(op: Operation) -> st.SearchStrategy[Hostile]:
    nested = st.builds(
        lambda brackets, depth: brackets[0] * depth + "1" + brackets[1] * depth,
        st.sampled_from([("[", "]"), ('{"a": ', "}")]),
        st.integers(MAX_DEPTH, 50_000),
    )
    # The depth is the body's, not one value's: the refusal names no field.
    return st.builds(
        lambda leaf, text: Hostile(encode(op.body, Change(text, at=leaf.path)), 422, None),
        st.sampled_from(op.leaves),
        nested,
    )


def duplicated_keys(op: Operation) -> st.SearchStrategy[Hostile]:
    keys = [(*path, key) for path, names in op.objects for key in names]
    return st.sampled_from(keys).map(
        lambda twice: Hostile(encode(op.body, Change(twice=twice)), 422, twice)
    )


def bodies_past_the_limit(op: Operation) -> st.SearchStrategy[Hostile]:
    return st.builds(
        lambda leaf, size: Hostile(
            encode(op.body, Change(json.dumps("x" * size), at=leaf.path)), 413, None
        ),
        st.sampled_from(op.leaves),
        st.integers(MAX_BODY_BYTES + 1, 2 * MAX_BODY_BYTES),
    )


Corruption = Callable[[Operation], st.SearchStrategy[Hostile]]
# Each corruption, and whether an operation's body has what it needs.
CORRUPTIONS: dict[Corruption, Callable[[Operation], bool]] = {
    lone_surrogates: lambda op: bool(op.leaves),
    nul_characters: lambda op: bool(op.leaves),
    strings_past_their_length: lambda op: any(leaf.is_text for leaf in op.leaves),
    huge_integers: lambda op: bool(op.leaves),
    huge_exponents: lambda op: bool(op.leaves),
    tiny_exponents: lambda op: bool(op.leaves),
    not_numbers: lambda op: bool(op.leaves),
    non_ascii_digits: lambda op: any(leaf.is_numeric for leaf in op.leaves),
    too_many_places: lambda op: any(leaf.places is not None for leaf in op.leaves),
    deep_nesting: lambda op: bool(op.leaves),
    duplicated_keys: lambda op: any(keys for _, keys in op.objects),
    bodies_past_the_limit: lambda op: bool(op.leaves),
}
OPERATIONS = operations()
CASES = [
    pytest.param(op, corruption, id=f"{op}: {corruption.__name__}")
    for op in OPERATIONS
    for corruption, applies in CORRUPTIONS.items()
    if applies(op)
]


# --- the checks ----------------------------------------------------------------------------


def row_counts(service: str) -> dict[str, int]:
    runtime = runtime_of(service)
    tables = runtime.metadata.sorted_tables
    counts = [select(func.count()).select_from(table).scalar_subquery() for table in tables]
    with runtime.db.read() as session:
        row = session.execute(select(*counts)).one()
    return {table.name: count for table, count in zip(tables, row, strict=True)}


def send(operation: Operation, text: str) -> Any:
    """``text`` as the body of ``operation``, from staff (or whom else it admits)."""
    return (
        APPS[operation.service]
        .test_client()
        .open(
            operation.url,
            method=operation.method.upper(),
            data=text.encode(),
            content_type="application/json",
            headers=headers_of(operation.role),
        )
    )


def names(problem: dict[str, Any], path: Path) -> bool:
    """Whether ``problem`` names the value at ``path``: as its field, or among its errors."""
    if problem.get("field") == ".".join(map(str, path)):
        return True
    errors: Any = problem.get("errors", {})
    for part in path:
        if not isinstance(errors, dict) or str(part) not in errors:
            return False
        errors = errors[str(part)]
    return True


def test_the_operations_corrupted_come_from_every_service_and_have_values() -> None:
    assert {op.service for op in OPERATIONS} == set(SERVICES)
    assert all(op.leaves for op in OPERATIONS)


@pytest.mark.parametrize(("operation", "corruption"), CASES)
@HOSTILE
@given(data=st.data())
def test_a_hostile_body_is_refused_as_a_problem_and_writes_nothing(
    operation: Operation, corruption: Corruption, data: st.DataObject
) -> None:
    hostile = data.draw(corruption(operation), label="hostile")
    before = row_counts(operation.service)

    response = send(operation, hostile.text)

    problem = response.get_json(force=True, silent=True) or {}
    assert response.status_code == hostile.status, (response.status_code, problem)
    assert response.mimetype == PROBLEM_MIME
    # Refused once the request is under way (correlated, authenticated), not before.
    assert problem.get("correlation_id"), problem
    if hostile.path is None:
        assert problem.get("field") is None, problem
    else:
        assert names(problem, hostile.path), (hostile.path, problem)
    assert row_counts(operation.service) == before


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
def test_each_body_as_built_passes_the_reader_and_the_schema_and_twice_is_no_5xx(
    operation: Operation,
) -> None:
    # So the refusals above are the corruptions' own, not the built body's.
    first = send(operation, encode(operation.body, Change()))

    assert first.status_code not in (400, 413), first.get_json()
    assert (first.get_json() or {}).get("type") != PROBLEM_BASE + "validation-error"
    # The same body again passes the schema and meets what the first stored (a unique name,
    # a key): the database's refusal, if any, must be a problem too.
    for response in (first, send(operation, encode(operation.body, Change()))):
        assert response.status_code < 500, response.get_json()
        if response.status_code >= 400:
            assert response.mimetype == PROBLEM_MIME
