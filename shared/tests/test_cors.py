"""Browser consoles: web pages of the origins in CORS_ORIGINS may call a service's API, pages of
any other origin get no CORS headers; and the settings refuse origins that could never match,
or any origin at all in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from flask import Flask
from flask.views import MethodView
from sqlalchemy import MetaData

from shared.database import Database
from shared.messaging import Messaging
from shared.openapi import Blueprint
from shared.service_app import WebService, create_service_app
from shared.settings import Settings, SettingsError
from shared.tests.test_settings import PRODUCTION

CONSOLE = "https://console.example.org"
LOCAL_CONSOLE = "http://localhost:5173"
STRANGER = "https://stranger.example.net"


def an_app(tmp_path: Path, cors_origins: str | None) -> Iterator[Flask]:
    env = {"REDVEST_ENV": "test", "REDVEST_VAR_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    if cors_origins is not None:
        env["CORS_ORIGINS"] = cors_origins
    settings = Settings.from_env("notify", env)
    db = Database(settings.database_url)
    service = WebService(
        name="notify",
        settings=settings,
        db=db,
        messaging=Messaging(MetaData()),
        broker=StubBroker(),
    )
    blp = Blueprint("things", __name__, url_prefix="/v1")

    @blp.route("/things")
    class Things(MethodView):
        @blp.response(200)
        def get(self) -> Any:
            """List things"""
            return []

        @blp.response(201)
        def post(self) -> Any:
            """Add a thing"""
            return {}

    yield create_service_app(service, title="things", description="", blueprints=[blp])
    db.dispose()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield from an_app(tmp_path, f"{CONSOLE}, {LOCAL_CONSOLE}")


@pytest.fixture
def app_without_cors(tmp_path: Path) -> Iterator[Flask]:
    yield from an_app(tmp_path, None)


def preflight(app: Flask, origin: str, method: str = "POST", headers: str = "") -> Any:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return app.test_client().options("/v1/things", headers=asked)


def listed(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


# A configured origin


def test_a_preflight_from_a_configured_origin_is_allowed_what_a_console_sends(app: Flask) -> None:
    answer = preflight(
        app,
        CONSOLE,
        "PATCH",
        "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-API-Key",
    )

    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == CONSOLE
    assert {"get", "post", "patch", "delete"} <= listed(
        answer.headers["Access-Control-Allow-Methods"]
    )
    assert listed(answer.headers["Access-Control-Allow-Headers"]) == {
        "authorization",
        "content-type",
        "if-match",
        "if-none-match",
        "idempotency-key",
        "x-api-key",
    }
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in answer.headers


def test_a_preflight_needs_no_credentials(app: Flask) -> None:
    assert preflight(app, LOCAL_CONSOLE, "GET", "Authorization").status_code == 204


def test_options_names_the_methods_allowed_with_no_content(app: Flask) -> None:
    answer = app.test_client().options("/v1/things")

    assert answer.status_code == 204
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert "Content-Type" not in answer.headers
    assert answer.get_data() == b""


def test_a_header_a_console_has_no_use_for_is_not_allowed(app: Flask) -> None:
    answer = preflight(app, CONSOLE, "POST", "Authorization, X-Debug-Impersonate")

    assert listed(answer.headers["Access-Control-Allow-Headers"]) == {"authorization"}


def test_an_answer_to_a_configured_origin_lets_its_page_read_the_headers_consoles_need(
    app: Flask,
) -> None:
    answer = app.test_client().get("/v1/things", headers={"Origin": CONSOLE})

    assert answer.headers["Access-Control-Allow-Origin"] == CONSOLE
    assert {
        "etag",
        "location",
        "x-pagination",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    } <= listed(answer.headers["Access-Control-Expose-Headers"])
    assert "Origin" in answer.headers.get_all("Vary")


def test_a_problem_answered_before_any_view_is_readable_by_the_console_too(app: Flask) -> None:
    answer = app.test_client().get(
        "/v1/things", headers={"Origin": CONSOLE, "Authorization": "Bearer not-a-token"}
    )

    assert answer.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] == CONSOLE


# Any other origin


@pytest.mark.parametrize(
    "origin",
    [
        STRANGER,
        "http://console.example.org",  # the right host over the wrong scheme
        "https://console.example.org:8443",  # or on another port
        "https://console.example.org.stranger.example.net",
        "null",
    ],
)
def test_any_other_origin_gets_no_cors_headers(app: Flask, origin: str) -> None:
    answers = [
        preflight(app, origin, "POST", "Authorization"),
        app.test_client().get("/v1/things", headers={"Origin": origin}),
    ]

    for answer in answers:
        assert not [name for name, _ in answer.headers if name.startswith("Access-Control-")]


def test_without_configured_origins_no_answer_carries_cors_headers(
    app_without_cors: Flask,
) -> None:
    answers = [
        preflight(app_without_cors, CONSOLE, "POST", "Authorization"),
        app_without_cors.test_client().get("/v1/things", headers={"Origin": CONSOLE}),
    ]

    for answer in answers:
        assert not [name for name, _ in answer.headers if name.startswith("Access-Control-")]


# The setting


def test_configured_origins_are_a_clean_list_in_lower_case() -> None:
    settings = Settings.from_env("intake", {"CORS_ORIGINS": " HTTPS://Console.Example.org , ,"})

    assert settings.cors_origins == ("https://console.example.org",)
    assert Settings.from_env("intake", {}).cors_origins == ()


def test_production_takes_the_origins_of_its_consoles() -> None:
    env = {**PRODUCTION, "CORS_ORIGINS": f"{CONSOLE},https://10.0.0.8:8443"}

    assert Settings.from_env("intake", env).cors_origins == (CONSOLE, "https://10.0.0.8:8443")


def test_production_refuses_any_origin_at_all() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env("intake", {**PRODUCTION, "CORS_ORIGINS": f"{CONSOLE}, *"})

    assert "CORS_ORIGINS" in str(refused.value)
    assert "'*'" in str(refused.value)


def test_outside_production_any_origin_may_be_allowed() -> None:
    assert Settings.from_env("intake", {"CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(
    "origin",
    [
        "console.example.org",
        "https://console.example.org/",
        "https://console.example.org/app",
        "ftp://console.example.org",
        "https://*.example.org",
        "https://console.example.org:port",
        "https://user@console.example.org",
        "https://[::1]:3000",
    ],
)
@pytest.mark.parametrize("environment", [PRODUCTION, {"REDVEST_ENV": "development"}])
def test_an_origin_that_no_browser_sends_is_refused_naming_it(
    origin: str, environment: dict[str, str]
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env("intake", {**environment, "CORS_ORIGINS": f"{CONSOLE},{origin}"})

    assert "CORS_ORIGINS" in str(refused.value)
    assert repr(origin) in str(refused.value)
