"""What the strict JSON reader refuses, and what it lets through, on an app of its own."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    event,
    func,
    insert,
    select,
)
from structlog.testing import capture_logs

from shared import json_input
from shared.database import Database
from shared.fields import StrictDecimal, hours_field
from shared.json_input import MAX_BODY_BYTES, MAX_DEPTH, MAX_DIGITS, install
from shared.openapi import Blueprint, ProblemApi
from shared.schemas import NUL_MESSAGE, StrictSchema

PROBLEM = "application/problem+json"

metadata = MetaData()
visits = Table(
    "visits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
)


class VisitSchema(StrictSchema):
    name = fields.Str()
    tags = fields.List(fields.Str())
    home = fields.Dict(keys=fields.Str())
    count = fields.Int()
    ratio = fields.Float()
    hours = hours_field(as_string=False)


class HoursSchema(Schema):
    hours = hours_field()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A SQLite database of this module's own; the refusals are the driver's, for real."""
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('json-input')}/visits.db")

    @event.listens_for(db.engine, "connect")
    def _short_strings(connection: Any, _: Any) -> None:
        # SQLite stores strings of any length; past this limit it refuses them (a DataError).
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)

    metadata.create_all(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def visitors(database: Database) -> Iterator[Database]:
    yield database
    with database.transaction() as session:
        session.execute(delete(visits))


@pytest.fixture
def app(database: Database) -> Flask:
    app = Flask(__name__)
    install(app)
    app.config.update(
        API_TITLE="test",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    reached: list[Any] = []
    app.extensions["reached"] = reached
    blp = Blueprint("visits", __name__)

    @blp.route("/visits")
    class Visits(MethodView):
        @blp.arguments(VisitSchema)
        @blp.response(200, VisitSchema)
        def post(self, data: dict[str, Any]) -> Any:
            """Record a visit"""
            reached.append(data)
            return data

    @blp.route("/visitors")
    class Visitors(MethodView):
        @blp.arguments(VisitSchema)
        @blp.response(201, VisitSchema)
        def post(self, data: dict[str, Any]) -> Any:
            """Register a visitor by name"""
            reached.append(data)
            with database.transaction() as session:
                session.execute(insert(visits).values(name=data["name"]))
            return data

    api = ProblemApi(app)
    api.register_blueprint(blp)

    @app.post("/raw")
    def raw() -> Any:
        body = request.get_json()
        reached.append(body)
        return {"kind": type(body).__name__}

    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, text: str | bytes, path: str = "/visits") -> Any:
    return client.post(path, data=text, content_type="application/json")


def post_chunked(client: FlaskClient, body: Any) -> Any:
    """POST ``body`` as a server reading a chunked request hands it on: a stream, no length."""
    return client.post(
        "/visits",
        input_stream=io.BytesIO(json.dumps(body).encode()),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def assert_refused(response: Any, app: Flask, *, status: int = 422, field: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert response.json.get("field") == field
    assert app.extensions["reached"] == []


class TestRefusedBodies:
    def test_a_key_given_twice_in_a_nested_object_is_refused_naming_it(self, client, app):
        response = post(client, '{"home": {"city": "Oslo", "city": "Rome"}}')

        assert_refused(response, app, field="home.city")

    def test_a_key_given_twice_at_the_top_is_refused_naming_it(self, client, app):
        assert_refused(post(client, '{"name": "a", "name": "b"}'), app, field="name")

    def test_nesting_past_the_limit_is_refused(self, client, app):
        deep: dict[str, Any] = {"home": {}}
        node = deep["home"]
        for _ in range(MAX_DEPTH):
            node["x"] = {}
            node = node["x"]

        assert_refused(post(client, json.dumps(deep)), app)

    def test_nesting_thousands_deep_is_refused_without_a_recursion_error(self, client, app):
        response = post(client, '{"tags": ' + "[" * 100_000 + "]" * 100_000 + "}")

        assert_refused(response, app)
        assert str(MAX_DEPTH) in response.json["detail"]

    def test_brackets_inside_strings_do_not_count_as_nesting(self, client, app):
        response = post(client, json.dumps({"name": "[" * 1000 + '"{' * 100}))

        assert response.status_code == 200
        assert response.json["name"] == "[" * 1000 + '"{' * 100

    @pytest.mark.parametrize(
        ("text", "field"),
        [
            ('{"name": "Li\\ud800"}', "name"),
            ('{"tags": ["ok", "\\udfff"]}', "tags.1"),
            ('{"home": {"\\ud83d": "a"}}', "home"),
        ],
        ids=["a string", "a string in a list", "a key"],
    )
    def test_a_lone_surrogate_anywhere_is_refused(self, client, app, text, field):
        assert_refused(post(client, text), app, field=field)

    @pytest.mark.parametrize(
        ("text", "field"),
        [
            ('{"home": {"city": "Os\\u0000lo"}}', "home.city"),
            ('{"home": {"ci\\u0000ty": "Oslo"}}', "home"),
        ],
        ids=["a nested value", "a key"],
    )
    def test_a_nul_character_anywhere_is_refused(self, client, app, text, field):
        response = post(client, text)

        assert_refused(response, app, field=field)
        if field == "home.city":
            assert response.json["errors"] == {"home.city": [NUL_MESSAGE]}

    @pytest.mark.parametrize("digits", [MAX_DIGITS + 1, 5000], ids=["past the limit", "past int"])
    def test_an_integer_with_too_many_digits_is_refused(self, client, app, digits):
        # 5000 digits is past Python's own limit on int(), which would answer 500.
        assert_refused(post(client, '{"count": ' + "9" * digits + "}"), app, field="count")

    @pytest.mark.parametrize("number", ["1e999999999", "1e-999999999", "0e999999999", "1e31"])
    def test_a_number_of_absurd_size_is_refused(self, client, app, number):
        assert_refused(post(client, '{"ratio": ' + number + "}"), app, field="ratio")

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_nan_and_infinity_are_refused(self, client, app, constant):
        assert_refused(post(client, '{"ratio": ' + constant + "}"), app, field="ratio")

    def test_a_number_more_precise_than_a_float_is_refused(self, client, app):
        # Read through a float, this would be 1.0: the client meant something else.
        assert_refused(post(client, '{"hours": 1.0000000000000001}'), app, field="hours")

    def test_a_body_past_the_size_limit_is_a_413_problem(self, client, app):
        body = json.dumps({"name": "x" * MAX_BODY_BYTES})

        assert_refused(post(client, body), app, status=413)

    @pytest.mark.parametrize("extra", [1, 2, 100_000])
    def test_a_body_without_a_length_past_the_limit_is_a_413_not_cut_short(
        self, client, app, extra
    ):
        name = "x" * (MAX_BODY_BYTES - len('{"name": ""}') + extra)
        response = post_chunked(client, {"name": name})

        assert_refused(response, app, status=413)

    def test_a_body_without_a_length_exactly_at_the_limit_is_read_whole(self, client, app):
        name = "x" * (MAX_BODY_BYTES - len('{"name": ""}'))
        response = post_chunked(client, {"name": name})

        assert response.status_code == 200
        assert len(response.json["name"]) == len(name)

    @pytest.mark.parametrize(
        "text", ['{"name": "a"', b'{"name": "\xff"}', "{'name': 'a'}"], ids=str
    )
    def test_text_that_is_not_json_is_a_400_problem(self, client, app, text):
        assert_refused(post(client, text), app, status=400)

    def test_a_view_reading_the_body_itself_reads_it_strictly(self, client, app):
        assert_refused(post(client, '{"a": 1, "a": 2}', path="/raw"), app, field="a")


class TestAcceptedBodies:
    def test_a_valid_body_reaches_the_view_as_json_would_read_it(self, client, app):
        body = {
            "name": "Li Shufen ✓",
            "tags": ["elderly", "[not nested]"],
            "home": {"city": "Oslo", "floor": 3, "depth": [[[[1]]]]},
            "count": 10**29,
            "ratio": 0.1,
            "hours": "1.5",
        }

        response = post(client, json.dumps(body))

        assert response.status_code == 200, response.json
        assert app.extensions["reached"] == [{**body, "hours": Decimal("1.50")}]

    def test_a_surrogate_pair_is_one_character_and_is_read(self, client, app):
        response = post(client, '{"name": "Li \\ud83d\\ude00"}')

        assert response.status_code == 200, response.json
        assert app.extensions["reached"] == [{"name": "Li \U0001f600"}]

    def test_get_json_answers_with_the_strict_reader(self, client, app):
        response = post(client, '{"ratio": 2.5}', path="/raw")

        assert response.json == {"kind": "dict"}
        assert app.extensions["reached"] == [{"ratio": 2.5}]

    def test_a_body_is_read_once_however_often_it_is_asked_for(self, app, monkeypatch):
        reads = []
        monkeypatch.setattr(json_input, "read_json", lambda data: reads.append(data) or {"a": 1})
        with app.test_request_context("/raw", method="POST", json={"a": 1}):
            request.get_data()
            assert request.get_json() == {"a": 1}
            assert request.get_json() is request.get_json()
        assert len(reads) == 1


class TestDatabaseRefusals:
    def test_a_duplicate_the_database_refuses_is_a_409_problem_and_nothing_is_written(
        self, client, app, visitors
    ):
        assert post(client, '{"name": "Ada"}', path="/visitors").status_code == 201

        with capture_logs() as logs:
            response = post(client, '{"name": "Ada"}', path="/visitors")

        assert response.status_code == 409
        assert response.mimetype == PROBLEM
        assert "INSERT" not in response.get_data(as_text=True)
        (logged,) = [entry for entry in logs if entry["event"] == "http.database_refused"]
        assert logged["reason"] == "UNIQUE constraint failed: visits.name"
        with visitors.read() as session:
            assert session.scalar(select(func.count()).select_from(visits)) == 1

    def test_a_value_the_database_cannot_store_is_a_422_problem(self, client, app, visitors):
        response = post(client, json.dumps({"name": "x" * 2000}), path="/visitors")

        assert response.status_code == 422
        assert response.mimetype == PROBLEM
        assert "visits" not in response.get_data(as_text=True)
        with visitors.read() as session:
            assert session.scalar(select(func.count()).select_from(visits)) == 0


class TestStrictDecimal:
    @pytest.mark.parametrize(
        ("given", "read"),
        [
            ("1.5", Decimal("1.50")),
            ("24", Decimal("24.00")),
            ("0.01", Decimal("0.01")),
            ("24.00", Decimal("24.00")),
            (3, Decimal("3.00")),
            (1.25, Decimal("1.25")),
            (24.0, Decimal("24.00")),
            (Decimal("1.500"), Decimal("1.50")),
        ],
    )
    def test_hours_within_range_and_places_are_read_exactly(self, given, read):
        assert HoursSchema().load({"hours": given}) == {"hours": read}

    @pytest.mark.parametrize(
        "given",
        [
            "24.004",
            "0.015",
            "1_0",
            "\u0661\u0660",  # Arabic-Indic digits
            " 1",
            "1 ",
            "1\n",
            "1e1",
            "1E-2",
            "NaN",
            "Infinity",
            "+1",
            "-1",
            ".5",
            "1.",
            "24.000",
            24.004,
            0.015,
            float("nan"),
            float("inf"),
            -0.0,
            "0",
            0,
            "24.01",
            25,
            True,
            "",
            [],
        ],
        ids=repr,
    )
    def test_hours_written_otherwise_are_refused_never_rounded(self, given):
        with pytest.raises(ValidationError) as refused:
            HoursSchema().load({"hours": given})

        assert list(refused.value.messages) == ["hours"]

    def test_negatives_are_read_where_the_range_allows_them(self):
        class BalanceSchema(Schema):
            delta = StrictDecimal(places=2, minimum=Decimal(-100), maximum=Decimal(100))

        assert BalanceSchema().load({"delta": "-1.5"}) == {"delta": Decimal("-1.50")}
        with pytest.raises(ValidationError):
            BalanceSchema().load({"delta": "-100.01"})

    def test_hours_dump_as_a_string_with_two_places(self):
        assert HoursSchema().dump({"hours": Decimal("2")}) == {"hours": "2.00"}

    def test_a_strict_decimal_is_documented_as_a_number_with_its_bounds_and_places(self, client):
        schema = client.get("/openapi.json").json["components"]["schemas"]["Visit"]

        hours = schema["properties"]["hours"]
        assert hours["type"] == "number"
        assert (hours["minimum"], hours["exclusiveMinimum"], hours["maximum"]) == (0, True, 24)
        assert hours["multipleOf"] == 0.01

    def test_a_strict_decimal_read_as_a_string_is_documented_with_its_pattern(self):
        app = Flask(__name__)
        app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
        api = ProblemApi(app)
        api.spec.components.schema("Hours", schema=HoursSchema)

        hours = api.spec.to_dict()["components"]["schemas"]["Hours"]["properties"]["hours"]
        assert hours["type"] == "string"
        assert hours["pattern"] == r"^[0-9]{1,30}(\.[0-9]{1,2})?$"
