"""How shared/openapi.py describes and guards every service's API, on an app of its own.

Two of these behaviours rest on flask-smorest internals (see shared/openapi.py): these tests are
what tells an upgrade of flask-smorest that broke them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from shared.openapi import Blueprint, ProblemApi, refuse_unread_input
from shared.paging import MAX_PAGE
from shared.problems import PROBLEM_MIME


class PriceSchema(Schema):
    amount = fields.Decimal(as_string=True)


class PriceQuerySchema(Schema):
    currency = fields.Str()
    tags = fields.List(fields.Str())


class PriceUpdateSchema(Schema):
    amount = fields.Decimal(
        places=2, validate=validate.Range(min=0, min_inclusive=False, max=Decimal("24.00"))
    )


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        API_TITLE="test",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    blp = Blueprint("prices", __name__, url_prefix="/v1")

    @blp.route("/prices")
    class Prices(MethodView):
        @blp.arguments(PriceUpdateSchema)
        @blp.response(200, PriceSchema)
        def put(self, data: dict[str, Any]) -> Any:
            """Set the price"""
            return data

        @blp.arguments(PriceQuerySchema, location="query")
        @blp.response(200, PriceSchema(many=True))
        @blp.paginate()
        def get(self, query: dict[str, Any], pagination_parameters: Any) -> Any:
            """List prices"""
            pagination_parameters.item_count = 0
            return []

    @blp.route("/prices/latest")
    def latest() -> Any:
        return {"amount": "1.00"}

    api = ProblemApi(app)
    api.register_blueprint(blp)
    refuse_unread_input(app)
    return app


def test_decimals_sent_as_strings_are_documented_as_strings(app: Flask) -> None:
    schemas = app.test_client().get("/openapi.json").json["components"]["schemas"]

    assert schemas["Price"]["properties"]["amount"] == {"type": "string", "format": "decimal"}


def test_decimal_bounds_are_documented_as_numbers_with_their_exclusiveness(app: Flask) -> None:
    schemas = app.test_client().get("/openapi.json").json["components"]["schemas"]

    amount = schemas["PriceUpdate"]["properties"]["amount"]
    assert (amount["minimum"], amount["exclusiveMinimum"], amount["maximum"]) == (0, True, 24)
    assert "exclusiveMaximum" not in amount


def test_a_page_past_the_last_possible_one_is_a_documented_422(app: Flask) -> None:
    client = app.test_client()
    parameters = client.get("/openapi.json").json["paths"]["/v1/prices"]["get"]["parameters"]

    # page x page size would overflow a 64-bit OFFSET: a 500 on SQLite and PostgreSQL alike.
    response = client.get("/v1/prices?page=922337203685477582")

    assert response.status_code == 422
    assert response.json["errors"] == {"page": [f"Must be less than or equal to {MAX_PAGE}."]}
    page = next(parameter for parameter in parameters if parameter["name"] == "page")
    assert page["schema"]["maximum"] == MAX_PAGE


def test_every_error_response_is_documented_as_problem_json(app: Flask) -> None:
    responses = app.test_client().get("/openapi.json").json["components"]["responses"]

    errors = {name: response for name, response in responses.items() if "content" in response}
    assert {"UNPROCESSABLE_ENTITY", "DEFAULT_ERROR"} <= set(errors)
    for name, response in errors.items():
        assert list(response["content"]) == [PROBLEM_MIME], name
        assert response["content"][PROBLEM_MIME]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }, name


def test_an_unknown_route_is_answered_as_a_problem(app: Flask) -> None:
    response = app.test_client().get("/v1/nowhere")

    assert response.status_code == 404
    assert response.mimetype == PROBLEM_MIME
    assert response.json["status"] == 404


def test_query_parameters_the_operation_reads_are_accepted(app: Flask) -> None:
    response = app.test_client().get("/v1/prices?currency=CNY&tags=a&tags=b&page=1&page_size=5")

    assert response.status_code == 200


def test_an_unknown_query_parameter_is_refused_by_name(app: Flask) -> None:
    response = app.test_client().get("/v1/prices?curency=CNY&page=1")

    assert response.status_code == 422
    assert response.mimetype == PROBLEM_MIME
    assert list(response.json["errors"]) == ["curency"]
    assert "currency" in response.json["errors"]["curency"][0]


def test_a_single_valued_query_parameter_given_twice_is_refused(app: Flask) -> None:
    response = app.test_client().get("/v1/prices?currency=CNY&currency=EUR")

    assert response.status_code == 422
    assert response.json["errors"] == {"currency": ["Given more than once: give it once."]}


def test_an_operation_that_declares_no_query_is_not_checked(app: Flask) -> None:
    assert app.test_client().get("/v1/prices/latest?cache=no").status_code == 200


def test_a_body_of_another_media_type_is_refused_as_unsupported(app: Flask) -> None:
    response = app.test_client().put("/v1/prices", data="amount=2", content_type="text/plain")

    assert response.status_code == 415
    assert response.mimetype == PROBLEM_MIME
    assert response.json["detail"] == "The body must be application/json, not text/plain."


def test_a_json_body_is_read_whatever_its_charset_parameter(app: Flask) -> None:
    response = app.test_client().put(
        "/v1/prices", data='{"amount": 2}', content_type="application/json; charset=utf-8"
    )

    assert response.status_code == 200
    assert response.json == {"amount": "2.00"}


@pytest.mark.parametrize("page", [" 2", "\u0662", "2.0", "1_0"])
def test_a_page_number_is_ascii_digits_only(app: Flask, page: str) -> None:
    response = app.test_client().get("/v1/prices", query_string={"page": page})

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["page"]
