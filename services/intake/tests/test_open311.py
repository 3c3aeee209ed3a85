"""intake's Open311 GeoReport v2 face, read by a GeoReport client and posted to as the
specification says, in JSON and in XML.

The reads go through ``georeport`` (PyPI), a client of the specification's reads, against the
app served on a port of 127.0.0.1. It posts nothing and knows neither discovery nor tokens nor
error bodies: those are sent with ``requests`` and read with ``json`` and the standard
library's ElementTree.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

import pytest
import requests as http
from georeport import GeoReport
from sqlalchemy import func, select
from werkzeug.serving import make_server

from services.intake import directory, georeport, requests
from services.intake.app import create_app
from services.intake.config import runtime
from services.intake.models import Resident, ServiceRequest
from services.intake.tests.builders import (
    DUTY_OFFICER,
    HOTLINE,
    a_category,
    a_request,
    a_resident,
    walk_to_completed,
)
from shared.auth import issue_token
from shared.clock import advance, freeze
from shared.errors import Invalid
from shared.json_input import MAX_BODY_BYTES

FORMATS = ("json", "xml")
MIMES = {"json": "application/json", "xml": "text/xml"}
COMMUNITY = "changshan-garden"
KNIFE_QUESTIONS = [
    {
        "code": "items",
        "labels": {"en": "How many knives and scissors", "zh-CN": "几把刀剪"},
        "type": "number",
        "order": 5,
    },
    {
        "code": "kinds",
        "labels": {"en": "What needs sharpening", "zh-CN": "磨什么"},
        "type": "multi_choice",
        "required": True,
        "order": 9,
        "options": [
            {"value": "knife", "labels": {"en": "Kitchen knives", "zh-CN": "菜刀"}},
            {"value": "scissors", "labels": {"en": "Scissors", "zh-CN": "剪刀"}},
        ],
    },
]


@pytest.fixture
def endpoint() -> Iterator[str]:
    """intake's app served on a free port of 127.0.0.1: the Open311 endpoint's URL."""
    server = make_server("127.0.0.1", 0, create_app())
    # A short poll: shutting the server down waits for its next one.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/open311/v2"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def household() -> int:
    """The catalogue (two public services, a private one, a withdrawn one) and a household
    of the grid, 3-2-501: its node id."""
    with runtime().db.transaction() as session:
        a_category(
            session,
            "knife_sharpening",
            name="Knife and scissor sharpening",
            group="household_repair",
            description="A volunteer sharpens knives and scissors at the door.",
            keywords=["knife", "scissors"],
            questions=KNIFE_QUESTIONS,
            notice={"text": {"en": "Wrap the blades.", "zh-CN": "请包好刀刃。"}},
        )
        a_category(session, "haircut", name="Haircut at home", group="elderly_care")
        a_category(session, "mediation", name="Dispute mediation", sensitivity="mediation")
        a_category(session, "piano_lessons", name="Piano lessons", is_active=False)
        node = directory.add_household(
            session, community=COMMUNITY, building="3", unit="2", number="501"
        )
        return node.id


@pytest.fixture
def api_key() -> str:
    with runtime().db.transaction() as session:
        _, key = directory.create_api_client(session, name="city-hotline")
    return key


def client(endpoint: str, format: str) -> GeoReport:
    return GeoReport(endpoint, output_format=format)


def in_full(endpoint: str, format: str, request_id: str, api_key: str) -> dict[str, Any]:
    """A request as a system with a key reads it: all of it (anyone else reads less, and the
    client library sends no key on reads)."""
    response = http.get(
        f"{endpoint}/requests/{request_id}.{format}", params={"api_key": api_key}, timeout=10
    )
    assert response.status_code == 200, response.text
    ((record),) = read(response)
    return record


def listed(value: Any) -> list[Any]:
    """A repeated element as xmltodict reads it (one alone is not a list), or a JSON list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text(value: Any) -> str | None:
    """A value as the XML carries it, so that both formats compare alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


def read(response: http.Response) -> list[dict[str, str | None]]:
    """A list the server answered (service_requests, errors) in either format, each item's
    values as the XML carries them."""
    if response.headers["Content-Type"].startswith("text/xml"):
        root = ElementTree.fromstring(response.content)
        return [{child.tag: child.text for child in item} for item in root]
    return [{name: text(value) for name, value in item.items()} for item in response.json()]


def post(endpoint: str, format: str, form: dict[str, Any], **headers: str) -> http.Response:
    return http.post(f"{endpoint}/requests.{format}", data=form, headers=headers, timeout=10)


def get(endpoint: str, path: str, **params: str) -> http.Response:
    return http.get(f"{endpoint}/{path}", params=params, timeout=10)


def v1(request_id: str, key: str) -> dict[str, Any]:
    """The request as /v1 shows it to a system."""
    app = create_app().test_client()
    shown: dict[str, Any] = app.get(f"/v1/requests/{request_id}", headers={"X-API-Key": key}).json
    return shown


def stored_requests() -> int:
    with runtime().db.read() as session:
        return session.scalar(select(func.count()).select_from(ServiceRequest)) or 0


class TestDiscovery:
    @pytest.mark.parametrize("format", FORMATS)
    def test_discovery_names_the_endpoint_its_formats_and_how_to_get_a_key(
        self, endpoint, household, format
    ):
        response = get(endpoint, f"discovery.{format}")

        assert response.status_code == 200
        if format == "json":
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            found = response.json()
            (entry,) = found["endpoints"]
            formats = entry["formats"]
        else:
            assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
            assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
            root = ElementTree.fromstring(response.content)
            found = {child.tag: child.text for child in root}
            (node,) = root.find("endpoints")
            entry = {child.tag: child.text for child in node}
            formats = [item.text for item in node.find("formats")]
        assert entry["specification"] == "http://wiki.open311.org/GeoReport_v2"
        assert entry["url"] == endpoint
        assert entry["type"] == "test"
        assert formats == ["text/xml", "application/json"]
        assert "API key" in found["key_service"]
        assert found["contact"]
        # The catalogue changed when it was seeded: a client refreshes what it kept.
        assert datetime.fromisoformat(found["changeset"]).tzinfo is not None
        assert entry["changeset"] == found["changeset"]


class TestServices:
    @pytest.mark.parametrize("format", FORMATS)
    def test_the_services_are_the_active_public_ones_never_a_private_one(
        self, endpoint, household, format
    ):
        services = listed(client(endpoint, format).get_service_list())

        by_code = {service["service_code"]: service for service in services}
        assert sorted(by_code) == ["haircut", "knife_sharpening"]
        knives = by_code["knife_sharpening"]
        assert knives["service_name"] == "Knife and scissor sharpening"
        assert knives["description"] == "A volunteer sharpens knives and scissors at the door."
        assert knives["group"] == "household_repair"
        assert knives["keywords"] == "knife, scissors"
        assert text(knives["type"]) == "realtime"
        assert text(knives["metadata"]) == "true"
        assert text(by_code["haircut"]["metadata"]) == "false"

    @pytest.mark.parametrize("format", FORMATS)
    def test_a_definition_turns_the_typed_questions_into_attributes_in_their_order(
        self, endpoint, household, format
    ):
        definition = client(endpoint, format).get_service_definition("knife_sharpening")

        assert definition["service_code"] == "knife_sharpening"
        attributes = definition["attributes"]
        if format == "xml":
            attributes = listed(attributes["attribute"])
        items, kinds = attributes
        assert (items["code"], items["datatype"], text(items["required"])) == (
            "items",
            "number",
            "false",
        )
        assert (kinds["code"], kinds["datatype"], text(kinds["required"])) == (
            "kinds",
            "multivaluelist",
            "true",
        )
        assert [text(items["order"]), text(kinds["order"])] == ["1", "2"]
        assert text(kinds["variable"]) == "true"
        assert kinds["description"] == "What needs sharpening"
        values = kinds["values"] if format == "json" else listed(kinds["values"]["value"])
        assert values == [
            {"key": "knife", "name": "Kitchen knives"},
            {"key": "scissors", "name": "Scissors"},
        ]
        assert "attribute[code][]" in kinds["datatype_description"]

    @pytest.mark.parametrize("format", FORMATS)
    @pytest.mark.parametrize("code", ["mediation", "piano_lessons", "teleportation"])
    def test_a_private_withdrawn_or_unknown_service_has_no_definition(
        self, endpoint, household, format, code
    ):
        with pytest.raises(http.HTTPError) as refused:
            client(endpoint, format).get_service_definition(code)

        response = refused.value.response
        assert response.status_code == 404
        assert read(response) == [{"code": "404", "description": f"No service {code!r}"}]


class TestPosting:
    @pytest.mark.parametrize("format", FORMATS)
    def test_a_service_code_and_an_address_are_enough_and_the_address_finds_its_household(
        self, endpoint, household, api_key, format
    ):
        form = {
            "api_key": api_key,
            "service_code": "knife_sharpening",
            "address_string": "3栋2单元501",
            "attribute[kinds][]": ["knife", "scissors"],
        }

        response = post(endpoint, format, form)

        assert response.status_code == 201
        ((answer),) = read(response)
        request_id = answer["service_request_id"]
        assert answer["service_notice"] == "Wrap the blades."
        assert answer["account_id"] is None
        assert response.headers["Location"].endswith(f"/open311/v2/requests/{request_id}.{format}")
        record = in_full(endpoint, format, request_id, api_key)
        assert record["service_code"] == "knife_sharpening"
        assert record["address"] == f"Building 3, Unit 2, Household 501, {COMMUNITY}"
        assert text(record["address_id"]) == str(household)
        assert record["lat"] is None
        assert record["status"] == "open"
        shown = v1(request_id, api_key)
        assert shown["location"]["household"] == "501"
        assert shown["address"] == "3栋2单元501"
        assert shown["answers"] == {"kinds": ["knife", "scissors"]}
        assert shown["summary"] == "Knife and scissor sharpening"

    def test_an_address_the_grid_does_not_know_is_kept_as_typed_for_staff(
        self, endpoint, household, api_key
    ):
        form = {
            "api_key": api_key,
            "service_code": "haircut",
            "address_string": "The bench by the east gate",
            "description": "Mr Wang would like a haircut\nHe uses a wheelchair.",
        }

        (answer,) = read(post(endpoint, "xml", form))

        record = in_full(endpoint, "xml", answer["service_request_id"], api_key)
        assert record["address"] == "The bench by the east gate"
        assert record["address_id"] is None
        assert record["description"] == "Mr Wang would like a haircut\nHe uses a wheelchair."
        shown = v1(answer["service_request_id"], api_key)
        assert shown["location"] is None
        assert shown["summary"] == "Mr Wang would like a haircut"
        assert "kept as typed for staff to place" in shown["timeline"][0]["note"]

    @pytest.mark.parametrize("format", FORMATS)
    def test_coordinates_alone_are_kept_as_given(self, endpoint, household, api_key, format):
        form = {
            "api_key": api_key,
            "service_code": "haircut",
            "lat": "43.8868000",
            "long": "125.3245",
        }

        (answer,) = read(post(endpoint, format, form))

        record = in_full(endpoint, format, answer["service_request_id"], api_key)
        assert (text(record["lat"]), text(record["long"])) == ("43.8868", "125.3245")
        assert record["address"] is None
        assert v1(answer["service_request_id"], api_key)["address"] == "geo:43.8868000,125.3245"

    def test_an_address_id_places_the_request_at_that_household(self, endpoint, household, api_key):
        form = {"api_key": api_key, "service_code": "haircut", "address_id": str(household)}

        (answer,) = read(post(endpoint, "json", form))

        record = in_full(endpoint, "json", answer["service_request_id"], api_key)
        assert text(record["address_id"]) == str(household)
        assert v1(answer["service_request_id"], api_key)["location"] == {
            "community": COMMUNITY,
            "building": "3",
            "unit": "2",
            "household": "501",
        }

    def test_the_person_fields_are_optional_and_what_intake_has_no_field_for_stays_internal(
        self, endpoint, household, api_key
    ):
        form = {
            "api_key": api_key,
            "service_code": "haircut",
            "address_string": "3-2-501",
            "lat": "43.88",
            "long": "125.32",
            "first_name": "Shufen",
            "last_name": "Li",
            "phone": "13800000000",
            "email": "li@example.org",
            "device_id": "tt222111",
            "account_id": "hotline-7",
            "media_url": "https://photos.example.org/door.jpg",
        }

        (answer,) = read(post(endpoint, "json", form))

        assert answer["account_id"] == "hotline-7"
        shown = v1(answer["service_request_id"], api_key)
        assert shown["reporter"] == {"name": "Shufen Li", "phone": "13800000000"}
        assert shown["attachments"][0]["url"] == "https://photos.example.org/door.jpg"
        note = shown["timeline"][-1]
        assert note["public"] is False
        assert note["note"] == (
            "Sent through Open311 with no field of its own here: e-mail li@example.org; "
            "device tt222111; account hotline-7; coordinates geo:43.88,125.32"
        )
        record = in_full(endpoint, "json", answer["service_request_id"], api_key)
        assert record["media_url"] == "https://photos.example.org/door.jpg"
        assert "li@example.org" not in json.dumps(record)

    def test_answers_to_the_questions_arrive_in_their_types(self, endpoint, household, api_key):
        form = {
            "api_key": api_key,
            "service_code": "knife_sharpening",
            "address_string": "3-2-501",
            "attribute[items]": "4",
            "attribute[kinds][]": "knife",
        }

        (answer,) = read(post(endpoint, "json", form))

        shown = v1(answer["service_request_id"], api_key)
        assert shown["answers"] == {"items": 4, "kinds": ["knife"]}

    @pytest.mark.parametrize("format", FORMATS)
    @pytest.mark.parametrize(
        ("credentials", "said"),
        [({}, "Missing api_key"), ({"api_key": "rv_wrong"}, "Invalid api_key")],
    )
    def test_a_missing_or_wrong_api_key_is_a_403_in_the_format_asked_for(
        self, endpoint, household, format, credentials, said
    ):
        form = {"service_code": "haircut", "address_string": "3-2-501", **credentials}

        response = post(endpoint, format, form)

        assert response.status_code == 403
        ((error),) = read(response)
        assert error["code"] == "403"
        assert error["description"].startswith(said)
        assert stored_requests() == 0

    def test_a_staff_consoles_key_may_post_and_so_may_v1s_header_but_not_a_persons_token(
        self, endpoint, household
    ):
        with runtime().db.transaction() as session:
            _, console = directory.create_api_client(session, name="console", role="staff")
        form = {"service_code": "haircut", "address_string": "3-2-501"}
        secret = runtime().settings.auth_secret
        token = issue_token(secret, subject="duty-officer", role="staff")

        by_console = post(endpoint, "json", {**form, "api_key": console})
        by_header = post(endpoint, "json", form, **{"X-API-Key": console})
        by_token = post(endpoint, "json", form, Authorization=f"Bearer {token}")

        assert (by_console.status_code, by_header.status_code) == (201, 201)
        assert by_token.status_code == 403
        assert read(by_token)[0]["description"].startswith("Missing api_key")
        assert stored_requests() == 2

    @pytest.mark.parametrize("format", FORMATS)
    @pytest.mark.parametrize(
        ("form", "said"),
        [
            ({"address_string": "3-2-501"}, "service_code: Missing data for required field."),
            ({"service_code": "haircut"}, "Give where the service is needed"),
            ({"service_code": "haircut", "lat": "43.88"}, "lat: Give lat and long together."),
            ({"service_code": "haircut", "lat": "91", "long": "1"}, "lat: Must be greater"),
            ({"service_code": "haircut", "address_id": "999999"}, "address_id '999999' names"),
            (
                {"service_code": "knife_sharpening", "address_string": "3-2-501"},
                "Answer to 'kinds': is required",
            ),
            (
                {
                    "service_code": "knife_sharpening",
                    "address_string": "3-2-501",
                    "attribute[kinds][]": "knife",
                    "attribute[items]": "many",
                },
                "attribute[items] must be a number",
            ),
            (
                {"service_code": "haircut", "address_string": "3-2-501", "colour": "red"},
                "colour: Unknown field.",
            ),
            (
                {"service_code": "haircut", "address_string": "x", "media_url": "ftp://x"},
                "Not an http or https URL",
            ),
        ],
    )
    def test_a_form_the_service_cannot_take_is_a_400_saying_why_and_changes_nothing(
        self, endpoint, household, api_key, format, form, said
    ):
        response = post(endpoint, format, {"api_key": api_key, **form})

        assert response.status_code == 400
        (error,) = read(response)
        assert error["code"] == "400"
        assert said in error["description"]
        assert stored_requests() == 0

    def test_a_body_past_the_size_limit_is_a_400_in_the_format_asked_for(
        self, endpoint, household, api_key
    ):
        form = {
            "api_key": api_key,
            "service_code": "haircut",
            "address_string": "3-2-501",
            "description": "x" * (MAX_BODY_BYTES + 1),
        }

        response = post(endpoint, "xml", form)

        assert response.status_code == 400
        assert read(response)[0]["code"] == "400"
        assert stored_requests() == 0

    @pytest.mark.parametrize("code", ["mediation", "piano_lessons", "teleportation"])
    def test_a_private_withdrawn_or_unknown_service_takes_no_request(
        self, endpoint, household, api_key, code
    ):
        form = {"api_key": api_key, "service_code": code, "address_string": "3-2-501"}

        response = post(endpoint, "xml", form)

        assert response.status_code == 404
        assert read(response) == [{"code": "404", "description": f"No service {code!r}"}]
        assert stored_requests() == 0

    def test_a_notice_that_blocks_submission_is_a_400_telling_what_to_do(
        self, endpoint, household, api_key
    ):
        with runtime().db.transaction() as session:
            notice = {
                "text": {"en": "Leave the building.", "zh-CN": "请离开楼栋。"},
                "blocks_submission": True,
                "emergency_number": "119",
            }
            a_category(session, "gas_leak", name="Gas leak", notice=notice)
        form = {"api_key": api_key, "service_code": "gas_leak", "address_string": "3-2-501"}

        response = post(endpoint, "json", form)

        assert response.status_code == 400
        assert read(response)[0]["description"] == (
            "Leave the building. Call 119 now. Nothing has been queued."
        )
        assert stored_requests() == 0

    @pytest.mark.parametrize("format", FORMATS)
    def test_the_same_idempotency_key_posted_twice_yields_one_request(
        self, endpoint, household, api_key, format
    ):
        form = {"api_key": api_key, "service_code": "haircut", "address_string": "3-2-501"}

        first = post(endpoint, format, form, **{"Idempotency-Key": "hotline-778"})
        again = post(endpoint, format, form, **{"Idempotency-Key": "hotline-778"})
        other = post(
            endpoint, format, {**form, "description": "Short"}, **{"Idempotency-Key": "hotline-778"}
        )

        assert (first.status_code, again.status_code) == (201, 201)
        assert read(again) == read(first)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == first.headers["Location"]
        assert other.status_code == 400
        assert "different body" in read(other)[0]["description"]
        assert stored_requests() == 1


def a_placed_request(session: Any, **fields: Any) -> ServiceRequest:
    """A request for the resident of 3-2-501, by default for knives to be sharpened."""
    if fields.get("category", "knife_sharpening") == "knife_sharpening":
        fields.setdefault("answers", {"kinds": ["knife"]})
    return a_request(session, resident=the_resident(session), **fields)


def the_resident(session: Any) -> Resident:
    """The resident of 3-2-501, registered on first use."""
    found = session.scalars(select(Resident)).first()
    return found or a_resident(session, community=COMMUNITY)


class TestReading:
    @pytest.mark.parametrize("format", FORMATS)
    def test_status_is_open_or_closed_with_the_finer_state_in_the_notes(
        self, endpoint, household, format
    ):
        with runtime().db.transaction() as session:
            waiting = a_placed_request(session, category="haircut").id
            done = a_placed_request(session)
            walk_to_completed(session, done)
            by_partner = a_placed_request(session, category="haircut").id
            requests.record_assignment(
                session,
                request_id=by_partner,
                assignment_id="a9",
                assignee=requests.Assignee(type="partner", id="p1", name="Tiger Law Firm"),
                at=datetime.now(UTC),
            )
            merged = a_placed_request(session, category="haircut").id
            requests.merge_request(session, request_id=merged, into=waiting, merged_by=DUTY_OFFICER)
        reader = client(endpoint, format)

        records = {
            record["service_request_id"]: record for record in listed(reader.get_service_requests())
        }

        assert records[waiting]["status"] == "open"
        assert records[waiting]["status_notes"] == "submitted: received, not yet taken up"
        assert records[waiting]["agency_responsible"] is None
        assert records[done.id]["status"] == "closed"
        assert records[done.id]["status_notes"].startswith("completed: the work is done")
        assert records[done.id]["agency_responsible"] == georeport.VOLUNTEERS
        assert records[by_partner]["status_notes"] == "assigned: handed to whoever will do it"
        assert records[by_partner]["agency_responsible"] == "Tiger Law Firm"
        assert records[merged]["status"] == "closed"
        assert records[merged]["status_notes"] == (
            f"closed: merged into request {waiting}, which carries it"
        )

    @pytest.mark.parametrize("format", FORMATS)
    def test_datetimes_carry_their_offset_and_the_expected_one_is_the_deadline(
        self, endpoint, household, format, api_key
    ):
        with runtime().db.transaction() as session:
            made = a_placed_request(session)
            created, resolve_by = made.created_at, made.resolve_by

        record = in_full(endpoint, format, made.id, api_key)

        assert record["requested_datetime"] == created.isoformat(timespec="seconds")
        assert record["requested_datetime"].endswith("+00:00")
        assert record["updated_datetime"] == record["requested_datetime"]
        assert record["expected_datetime"] == resolve_by.isoformat(timespec="seconds")
        assert record["service_name"] == "Knife and scissor sharpening"
        assert record["description"] == "Two kitchen knives"
        assert record["service_notice"] == "Wrap the blades."

    @pytest.mark.parametrize("format", FORMATS)
    def test_private_requests_never_appear_by_list_by_id_or_alone(
        self, endpoint, household, format
    ):
        with runtime().db.transaction() as session:
            public = a_placed_request(session).id
            private = a_placed_request(session, category="mediation").id
        reader = client(endpoint, format)

        everything = listed(reader.get_service_requests())
        named = listed(reader.get_service_requests(service_request_id=f"{public},{private}"))
        by_code = get(endpoint, f"requests.{format}", service_code="mediation")
        with pytest.raises(http.HTTPError) as alone:
            reader.get_service_request(private)
        with pytest.raises(http.HTTPError) as missing:
            reader.get_service_request("nothing")

        assert [record["service_request_id"] for record in everything] == [public]
        assert [record["service_request_id"] for record in named] == [public]
        assert read(by_code) == []
        assert alone.value.response.status_code == missing.value.response.status_code == 404
        assert read(alone.value.response)[0]["description"] == f"No request {private}"
        assert read(missing.value.response)[0]["description"] == "No request nothing"

    @pytest.mark.parametrize("format", FORMATS)
    def test_the_list_filters_by_status_and_service_code(self, endpoint, household, format):
        with runtime().db.transaction() as session:
            knives = a_placed_request(session).id
            haircut = a_placed_request(session, category="haircut")
            walk_to_completed(session, haircut)
        reader = client(endpoint, format)

        def ids(**filters: str) -> list[str]:
            found = listed(reader.get_service_requests(**filters))
            return [record["service_request_id"] for record in found]

        assert ids(status="open") == [knives]
        assert ids(status="closed") == [haircut.id]
        assert ids(status="open,closed") == [haircut.id, knives]
        assert ids(service_code="haircut") == [haircut.id]
        assert ids(service_code="haircut,knife_sharpening", status="open") == [knives]

    @pytest.mark.parametrize("format", FORMATS)
    def test_the_list_covers_the_last_90_days_unless_another_span_is_given(
        self, endpoint, household, format
    ):
        now = datetime.now(UTC)
        with runtime().db.transaction() as session:
            with freeze(now - timedelta(days=100)):
                old = a_placed_request(session).id
            recent = a_placed_request(session).id
        reader = client(endpoint, format)
        then = (now - timedelta(days=120)).isoformat()
        later = (now - timedelta(days=60)).isoformat()

        by_default = listed(reader.get_service_requests())
        in_span = listed(reader.get_service_requests(start_date=then, end_date=later))
        from_start = listed(reader.get_service_requests(start_date=then))
        named = listed(reader.get_service_requests(service_request_id=old, start_date=later))

        assert [record["service_request_id"] for record in by_default] == [recent]
        assert [record["service_request_id"] for record in in_span] == [old]
        assert [record["service_request_id"] for record in from_start] == [old]
        # The ids asked for override every other argument, as the specification says.
        assert [record["service_request_id"] for record in named] == [old]

    @pytest.mark.parametrize("format", FORMATS)
    @pytest.mark.parametrize(
        ("params", "said"),
        [
            (
                {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
                "start_date to end_date spans more than 90 days",
            ),
            (
                {"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"},
                "end_date is before start_date",
            ),
            ({"start_date": "2026-01-01T00:00:00"}, "start_date: Not a valid aware datetime."),
            ({"status": "pending"}, "status: One or more of the choices you made"),
            ({"colour": "red"}, "colour: Unknown field."),
        ],
    )
    def test_a_search_that_cannot_be_answered_is_a_400_saying_why(
        self, endpoint, household, format, params, said
    ):
        response = get(endpoint, f"requests.{format}", **params)

        assert response.status_code == 400
        assert said in read(response)[0]["description"]

    def test_a_list_holds_at_most_1000_requests_the_newest_first(self, endpoint, household):
        made = []
        with runtime().db.transaction() as session, freeze(datetime.now(UTC) - timedelta(days=1)):
            resident = the_resident(session)
            for _ in range(1001):
                advance(timedelta(seconds=1))
                made.append(a_request(session, resident=resident, category="haircut").id)

        found = client(endpoint, "json").get_service_requests()

        assert len(found) == 1000
        assert made[0] not in {record["service_request_id"] for record in found}

    def test_an_empty_parameter_counts_as_not_given(self, endpoint, household):
        with runtime().db.transaction() as session:
            made = a_placed_request(session).id

        response = get(endpoint, "requests.json", status="", service_code="", jurisdiction_id="")

        assert [record["service_request_id"] for record in response.json()] == [made]


class TestTokensAndFormats:
    @pytest.mark.parametrize("format", FORMATS)
    def test_no_token_resolves_as_every_service_answers_with_its_id_at_once(
        self, endpoint, household, format
    ):
        response = get(endpoint, f"tokens/12345.{format}")

        assert response.status_code == 404
        (error,) = read(response)
        assert error["code"] == "404"
        assert error["description"].startswith("No token '12345'")

    def test_a_format_other_than_json_or_xml_is_a_404(self, endpoint, household):
        response = get(endpoint, "services.csv")

        assert response.status_code == 404
        assert response.json() == [
            {"code": 404, "description": "No format 'csv' here: ask for .json or .xml"}
        ]

    @pytest.mark.parametrize("format", FORMATS)
    @pytest.mark.parametrize("path", ["nothing", "services/haircut/more", "requests/1234/notes"])
    def test_a_path_no_view_serves_is_the_specifications_404_in_the_format_asked_for(
        self, endpoint, household, format, path
    ):
        response = get(endpoint, f"{path}.{format}")

        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith(MIMES[format])
        assert read(response) == [
            {
                "code": "404",
                "description": f"Nothing at /open311/v2/{path}.{format}: see discovery.json",
            }
        ]

    def test_the_bare_endpoint_is_a_404_in_json_as_the_specification_says(self, endpoint):
        response = http.get(endpoint, timeout=10)

        assert response.status_code == 404
        assert response.json() == [
            {"code": 404, "description": "Nothing at /open311/v2: see discovery.json"}
        ]

    @pytest.mark.parametrize("format", FORMATS)
    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("DELETE", "requests", "GET, HEAD, OPTIONS, POST"),
            ("PUT", "services", "GET, HEAD, OPTIONS"),
            ("POST", "requests/1234", "GET, HEAD, OPTIONS"),
        ],
    )
    def test_a_method_the_path_does_not_take_is_a_405_naming_those_it_does(
        self, endpoint, household, api_key, format, method, path, allowed
    ):
        response = http.request(
            method, f"{endpoint}/{path}.{format}", data={"api_key": api_key}, timeout=10
        )

        assert response.status_code == 405
        assert response.headers["Allow"] == allowed
        assert response.headers["Content-Type"].startswith(MIMES[format])
        assert read(response) == [
            {"code": "405", "description": f"{method} is not allowed here: use {allowed}"}
        ]
        assert stored_requests() == 0

    def test_a_path_outside_the_endpoint_keeps_v1s_problem(self, endpoint):
        response = http.get(
            endpoint.replace("/open311/v2", "/open311/v3/services.json"), timeout=10
        )

        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"

    def test_a_wrong_api_key_on_a_read_is_a_403_as_on_a_post(self, endpoint, household):
        response = get(endpoint, "services.xml", api_key="rv_wrong")

        assert response.status_code == 403
        assert read(response)[0]["description"].startswith("Invalid api_key")

    def test_text_xml_cannot_carry_is_replaced_and_the_answer_stays_xml(
        self, endpoint, household, api_key
    ):
        with runtime().db.transaction() as session:
            made = a_placed_request(session, details="Bell\x07 rings twice").id

        record = in_full(endpoint, "xml", made, api_key)

        assert record["description"] == "Bell\ufffd rings twice"


class TestWhatAnyoneReads:
    """Without a key the neighbourhood learns the service, its state and the building, never who
    asked for what at which door."""

    @pytest.mark.parametrize("format", FORMATS)
    def test_a_read_without_a_key_names_the_building_and_the_service_only(
        self, endpoint, household, api_key, format
    ):
        with runtime().db.transaction() as session:
            made = a_placed_request(session, details="Lunch for Mrs Wang, who lives alone").id

        record = client(endpoint, format).get_service_request(made)
        keyed = in_full(endpoint, format, made, api_key)

        assert record["address"] == f"Building 3, {COMMUNITY}"
        assert record.get("address_id") is None
        assert record["description"] == record["service_name"]
        assert "Mrs Wang" not in str(record)
        assert keyed["address"] == f"Building 3, Unit 2, Household 501, {COMMUNITY}"
        assert keyed["description"] == "Lunch for Mrs Wang, who lives alone"


class TestTheSpan:
    """The window of a read, as the domain computes it."""

    def test_without_dates_it_is_the_last_90_days(self):
        now = datetime(2026, 11, 26, tzinfo=UTC)
        with freeze(now):
            assert georeport.window(None, None) == (now - timedelta(days=90), now)

    def test_one_end_given_makes_a_90_day_span_from_it(self):
        start = datetime(2026, 1, 1, tzinfo=UTC)
        assert georeport.window(start, None) == (start, start + timedelta(days=90))
        assert georeport.window(None, start) == (start - timedelta(days=90), start)

    def test_a_span_of_more_than_90_days_is_refused(self):
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(Invalid, match="spans more than 90 days"):
            georeport.window(start, start + timedelta(days=90, seconds=1))


class TestPostedInTheDomain:
    def test_coordinates_sent_with_an_address_are_kept_in_the_internal_note(self, household):
        with runtime().db.transaction() as session:
            record = georeport.submit_report(
                session,
                submitted_by=HOTLINE,
                service_code="haircut",
                where=georeport.Whereabouts(
                    lat=Decimal("43.88"), long=Decimal("125.32"), address_id=str(household)
                ),
            )
            notes = [entry.note for entry in record.request.timeline if not entry.is_public]

        assert record.address_id == household
        assert (record.lat, record.long) == (None, None)
        assert notes == [
            "Sent through Open311 with no field of its own here: coordinates geo:43.88,125.32"
        ]
