"""The service catalogue: categories kept by staff, their deadlines, questions and notices."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.intake import catalogue, requests
from services.intake.commands import demo_categories
from services.intake.config import runtime
from services.intake.models import ServiceRequest
from services.intake.tests.builders import HOTLINE, a_category, a_resident, post, request_body
from shared.errors import Conflict, Invalid

NAMES = {"en": "Lunch delivered", "zh-CN": "送餐"}
DAYS = {
    "code": "days",
    "labels": {"en": "On which days", "zh-CN": "哪几天"},
    "type": "multi_choice",
    "required": True,
    "order": 2,
    "options": [
        {"value": "mon", "labels": {"en": "Monday", "zh-CN": "周一"}},
        {"value": "tue", "labels": {"en": "Tuesday", "zh-CN": "周二"}},
    ],
}
START = {
    "code": "start",
    "labels": {"en": "From when", "zh-CN": "开始时间"},
    "type": "datetime",
    "order": 1,
}
GAS_NOTICE = {
    "text": {"en": "Leave the flat and call the emergency number.", "zh-CN": "请离开并报警。"},
    "blocks_submission": True,
    "emergency_number": "119",
}


def lunch(session, **fields):
    return catalogue.add_category(
        session,
        code="lunch_delivery",
        names=NAMES,
        group="elderly_care",
        keywords=["lunch", "送餐", " "],
        default_priority="high",
        deadlines={"high": {"acknowledge_minutes": 10, "resolve_minutes": 120}},
        questions=[DAYS, START],
        **fields,
    )


class TestKeepingTheCatalogue:
    def test_a_category_keeps_both_names_its_group_keywords_and_deadlines_per_priority(
        self, session
    ):
        category = lunch(session)
        assert (category.name, category.name_zh, category.group) == (
            "Lunch delivered",
            "送餐",
            "elderly_care",
        )
        assert category.keywords == ["lunch", "送餐"]
        assert catalogue.deadlines_of(category, "high") == (10, 120)
        # Priorities it does not set keep the house defaults.
        assert catalogue.deadlines_of(category, "urgent") == (10, 240)

    def test_questions_are_kept_in_the_order_they_are_asked(self, session):
        assert [q["code"] for q in lunch(session).questions] == ["start", "days"]

    def test_a_second_category_with_the_same_code_is_a_conflict(self, session):
        lunch(session)
        with pytest.raises(Conflict, match="already exists"):
            lunch(session)

    @pytest.mark.parametrize(
        ("question", "refusal"),
        [
            ({**DAYS, "options": []}, "needs its options"),
            ({**START, "options": DAYS["options"]}, "takes no options"),
            ({**DAYS, "options": DAYS["options"] * 2}, "offers an option twice"),
        ],
    )
    def test_a_question_that_cannot_be_answered_is_refused(self, session, question, refusal):
        with pytest.raises(Invalid, match=refusal):
            catalogue.add_category(session, code="x", names=NAMES, questions=[question])

    def test_the_same_question_asked_twice_is_refused(self, session):
        with pytest.raises(Invalid, match="asked twice"):
            catalogue.add_category(session, code="x", names=NAMES, questions=[START, START])

    def test_a_deadline_to_acknowledge_after_the_one_to_resolve_is_refused(self, session):
        late = {"normal": {"acknowledge_minutes": 60, "resolve_minutes": 30}}
        with pytest.raises(Invalid, match="later than the one to resolve"):
            catalogue.add_category(session, code="x", names=NAMES, deadlines=late)

    def test_a_deactivated_category_leaves_the_list_and_refuses_new_requests(self, session):
        lunch(session)
        catalogue.update_category(session, code="lunch_delivery", is_active=False)
        assert catalogue.list_categories(session) == []
        shown = catalogue.list_categories(
            session, where=catalogue.CategoryFilter(include_inactive=True)
        )
        assert [c.code for c in shown] == ["lunch_delivery"]
        with pytest.raises(Exception, match="No active service category"):
            requests.submit_request(
                session,
                submitted_by=HOTLINE,
                category="lunch_delivery",
                summary="Lunch",
                resident_id=a_resident(session).id,
            )

    def test_the_list_filters_by_group_sensitivity_and_text_in_either_language(self, session):
        lunch(session)
        a_category(session, "mediation", group="mediation", sensitivity="mediation")
        where = catalogue.CategoryFilter
        assert [c.code for c in catalogue.list_categories(session, where=where(text="送餐"))] == [
            "lunch_delivery"
        ]
        assert [
            c.code for c in catalogue.list_categories(session, where=where(group="mediation"))
        ] == ["mediation"]
        private = catalogue.list_categories(session, where=where(sensitivity="mediation"))
        assert [c.code for c in private] == ["mediation"]


class TestAnswers:
    questions = catalogue._checked_questions([DAYS, START])

    def test_answers_of_the_right_types_are_kept_as_given(self):
        answers = catalogue.check_answers(
            self.questions, {"days": ["mon"], "start": "2026-12-01T11:30:00+08:00"}
        )
        assert answers == {"days": ["mon"], "start": "2026-12-01T11:30:00+08:00"}

    @pytest.mark.parametrize(
        ("answers", "code", "reason"),
        [
            ({}, "days", "is required"),
            ({"days": []}, "days", "at least one option"),
            ({"days": ["sun"]}, "days", "some of"),
            ({"days": ["mon", "mon"]}, "days", "twice"),
            ({"days": ["mon"], "start": "tomorrow"}, "start", "ISO 8601"),
            ({"days": ["mon"], "start": "2026-12-01T11:30:00"}, "start", "offset"),
            ({"days": ["mon"], "colour": "red"}, "colour", "no such question"),
        ],
    )
    def test_a_wrong_answer_is_refused_naming_its_question(self, answers, code, reason):
        with pytest.raises(Invalid, match=reason) as refused:
            catalogue.check_answers(self.questions, answers)
        assert refused.value.extra["field"] == f"answers.{code}"

    @pytest.mark.parametrize(
        ("kind", "value"), [("number", "3"), ("number", True), ("string", 3), ("text", "  ")]
    )
    def test_a_value_of_another_type_is_refused(self, kind, value):
        question = catalogue._checked_questions(
            [{"code": "q", "labels": NAMES, "type": kind, "required": True}]
        )
        with pytest.raises(Invalid, match="must be"):
            catalogue.check_answers(question, {"q": value})

    def test_answers_are_stored_with_the_request(self, session):
        lunch(session)
        request = requests.submit_request(
            session,
            submitted_by=HOTLINE,
            category="lunch_delivery",
            summary="Lunch every weekday",
            resident_id=a_resident(session).id,
            answers={"days": ["mon", "tue"]},
        )
        assert request.answers == {"days": ["mon", "tue"]}
        assert request.priority == "high"
        assert request.acknowledge_by == request.created_at + timedelta(minutes=10)


class TestNotices:
    def test_a_blocking_notice_refuses_the_request_naming_the_notice_and_queues_nothing(
        self, client, api_key, resident_id
    ):
        with runtime().db.transaction() as session:
            catalogue.add_category(session, code="gas_leak", names=NAMES, notice=GAS_NOTICE)
        response = post(client, api_key, request_body(resident_id, category="gas_leak"))
        assert response.status_code == 409
        assert response.json["type"].endswith("/submission-blocked")
        assert "Call 119 now" in response.json["detail"]
        assert response.json["notice"]["emergency_number"] == "119"
        with runtime().db.read() as session:
            assert session.scalar(select(func.count()).select_from(ServiceRequest)) == 0
            outbox = runtime().messaging.outbox
            assert session.scalar(select(func.count()).select_from(outbox)) == 0

    def test_a_notice_that_does_not_block_is_only_shown(self, client, api_key, resident_id):
        with runtime().db.transaction() as session:
            notice = {**GAS_NOTICE, "blocks_submission": False}
            catalogue.add_category(session, code="gas_leak", names=NAMES, notice=notice)
        assert (
            post(client, api_key, request_body(resident_id, category="gas_leak")).status_code == 201
        )
        shown = client.get("/v1/categories/gas_leak", headers={"X-API-Key": api_key}).json
        assert shown["notice"]["text"]["en"].startswith("Leave the flat")

    def test_an_empty_notice_removes_the_notice(self, client, api_key):
        with runtime().db.transaction() as session:
            catalogue.add_category(session, code="gas_leak", names=NAMES, notice=GAS_NOTICE)
        response = client.patch(
            "/v1/categories/gas_leak", json={"notice": {}}, headers={"X-API-Key": api_key}
        )
        assert response.json["notice"] is None


class TestOverHttp:
    def test_staff_create_update_and_deactivate_a_category(self, client, api_key):
        headers = {"X-API-Key": api_key}
        body = {
            "code": "lunch_delivery",
            "names": NAMES,
            "group": "elderly_care",
            "questions": [DAYS],
            "deadlines": {"high": {"acknowledge_minutes": 10, "resolve_minutes": 120}},
        }
        created = client.post("/v1/categories", json=body, headers=headers)
        assert created.status_code == 201
        assert created.json["names"] == NAMES
        assert created.json["deadlines"]["high"] == {
            "acknowledge_minutes": 10,
            "resolve_minutes": 120,
        }
        changed = client.patch(
            "/v1/categories/lunch_delivery",
            json={"keywords": ["meal"], "is_active": False},
            headers=headers,
        )
        assert (changed.json["keywords"], changed.json["is_active"]) == (["meal"], False)
        assert client.get("/v1/categories", headers=headers).json == []
        listed = client.get(
            "/v1/categories?include_inactive=true&group=elderly_care", headers=headers
        )
        assert [c["code"] for c in listed.json] == ["lunch_delivery"]

    def test_a_wrong_answer_over_http_is_a_422_naming_the_question(
        self, client, api_key, resident_id
    ):
        with runtime().db.transaction() as session:
            lunch(session)
        response = post(
            client,
            api_key,
            request_body(resident_id, category="lunch_delivery", answers={"days": ["sun"]}),
        )
        assert response.status_code == 422
        assert response.json["field"] == "answers.days"
        assert response.json["errors"]["answers"]["days"]


class TestTheDemoCatalogue:
    def test_it_names_at_least_twenty_categories_all_valid_and_every_code_in_use(self):
        codes = {entry["code"] for entry in demo_categories()}
        assert len(codes) >= 20
        # Every category the seeds, stories and tests post, route or price.
        for code in (
            "knife_sharpening",
            "lunch_delivery",
            "electrical_repair",
            "haircut",
            "legal_consultation",
            "piano_lessons",
            "mediation",
        ):
            assert code in codes
        assert {"gas_leak", "plumbing_repair", "bank_services", "rehabilitation"} <= codes

    def test_every_group_is_served_and_health_legal_and_mediation_are_private(self):
        entries = demo_categories()
        assert {entry["group"] for entry in entries} == set(catalogue.GROUPS)
        for entry in entries:
            if entry["code"] in ("legal_consultation", "mediation", "health_checkup"):
                assert entry["sensitivity"] != "none", entry["code"]

    def test_the_gas_leak_blocks_submission_and_the_existing_flows_ask_nothing_required(self):
        entries = {entry["code"]: entry for entry in demo_categories()}
        assert entries["gas_leak"]["notice"]["blocks_submission"] is True
        for code in ("knife_sharpening", "haircut", "electrical_repair"):
            assert not any(q.get("required") for q in entries[code].get("questions", []))
