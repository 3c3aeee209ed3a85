"""The service catalogue: what residents may ask for, how soon it is due, and what is asked of
them when they do."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.intake.models import Category
from shared.clock import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.events import PRIORITIES

GROUPS = (
    "household_repair",
    "elderly_care",
    "health",
    "legal",
    "mediation",
    "safety",
    "partner_services",
    "community_matters",
)
# A private category's requests are read only by those of the matching role.
SENSITIVITIES = ("none", "health", "legal", "mediation")
QUESTION_TYPES = ("string", "number", "datetime", "text", "single_choice", "multi_choice")
CHOICES = ("single_choice", "multi_choice")
LANGUAGES = ("zh-CN", "en")
# Minutes to acknowledge (someone took it on) and to resolve (the work is done), by priority,
# for a category that does not set its own.
DEFAULT_DEADLINES: dict[str, dict[str, int]] = {
    "urgent": {"acknowledge_minutes": 10, "resolve_minutes": 4 * 60},
    "high": {"acknowledge_minutes": 30, "resolve_minutes": 24 * 60},
    "normal": {"acknowledge_minutes": 4 * 60, "resolve_minutes": 3 * 24 * 60},
    "low": {"acknowledge_minutes": 24 * 60, "resolve_minutes": 7 * 24 * 60},
}
# How long an answer of each free-text type may be.
ANSWER_LENGTH = {"string": 200, "text": 5000}
# A number question asks for a count or an age: a whole number from 0 to this.
MAX_NUMBER_ANSWER = 1_000_000
DEMO_CATALOGUE = Path(__file__).parent / "data" / "catalogue.json"


class SubmissionBlocked(Conflict):
    """The category's notice forbids queueing a request: the resident must act on it now."""

    code = "submission-blocked"
    title = "This request cannot be queued"


def no_category(code: str) -> NotFound:
    return NotFound(f"No service category {code!r} in the catalogue", field="category")


def deadlines_of(category: Category | Mapping[str, Any], priority: str) -> tuple[int, int]:
    """Minutes to acknowledge and to resolve a request of ``priority`` in the category."""
    stored = category.deadlines if isinstance(category, Category) else category["deadlines"]
    for_priority = (stored or {}).get(priority) or DEFAULT_DEADLINES[priority]
    return int(for_priority["acknowledge_minutes"]), int(for_priority["resolve_minutes"])


def _complete_deadlines(given: Mapping[str, Mapping[str, int]] | None) -> dict[str, Any]:
    deadlines = {priority: dict(minutes) for priority, minutes in DEFAULT_DEADLINES.items()}
    for priority, minutes in (given or {}).items():
        deadlines[priority] = dict(minutes)
    for priority, minutes in deadlines.items():
        if minutes["acknowledge_minutes"] > minutes["resolve_minutes"]:
            raise Invalid(
                f"The {priority} deadline to acknowledge ({minutes['acknowledge_minutes']} min) "
                f"is later than the one to resolve ({minutes['resolve_minutes']} min)",
                field=f"deadlines.{priority}",
            )
    return deadlines


def _checked_questions(questions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The questions in the order they are asked, each choice question with its options."""
    seen: set[str] = set()
    checked = []
    for index, question in enumerate(questions):
        code = question["code"]
        if code in seen:
            raise Invalid(f"Question {code!r} is asked twice", field=f"questions.{index}.code")
        seen.add(code)
        options = [dict(option) for option in question.get("options") or ()]
        is_choice = question["type"] in CHOICES
        if is_choice and not options:
            raise Invalid(
                f"Question {code!r} ({question['type']}) needs its options",
                field=f"questions.{index}.options",
            )
        if not is_choice and options:
            raise Invalid(
                f"Question {code!r} ({question['type']}) takes no options",
                field=f"questions.{index}.options",
            )
        values = [option["value"] for option in options]
        if len(set(values)) != len(values):
            raise Invalid(
                f"Question {code!r} offers an option twice", field=f"questions.{index}.options"
            )
        checked.append(
            {
                "code": code,
                "labels": dict(question["labels"]),
                "type": question["type"],
                "required": bool(question.get("required", False)),
                "order": int(question.get("order", index)),
                "options": options,
            }
        )
    return sorted(checked, key=lambda question: (question["order"], question["code"]))


def _with_fields(category: Category, fields: Mapping[str, Any]) -> None:
    names = fields.get("names")
    if names is not None:
        category.name = names["en"]
        category.name_zh = names["zh-CN"]
    for simple in ("description", "group", "sensitivity", "default_priority", "is_active"):
        if simple in fields:
            setattr(category, simple, fields[simple])
    if "keywords" in fields:
        category.keywords = sorted({keyword.strip() for keyword in fields["keywords"]} - {""})
    if "deadlines" in fields:
        category.deadlines = _complete_deadlines(fields["deadlines"])
    if "questions" in fields:
        category.questions = _checked_questions(fields["questions"])
    if "notice" in fields:
        notice = fields["notice"] or {}
        category.notice = dict(notice) if notice.get("text") else None
    if category.default_priority not in PRIORITIES:
        raise Invalid(f"Unknown priority {category.default_priority!r}", field="default_priority")
    category.updated_at = utcnow()


def add_category(
    session: Session, *, code: str, names: Mapping[str, str], **fields: Any
) -> Category:
    """Add a category to the catalogue, active at once."""
    if session.get(Category, code) is not None:
        raise Conflict(f"Category {code} already exists", field="code")
    category = Category(
        code=code,
        name="",
        name_zh="",
        description="",
        group="community_matters",
        keywords=[],
        default_priority="normal",
        deadlines=_complete_deadlines(None),
        sensitivity="none",
        questions=[],
        notice=None,
        is_active=True,
    )
    _with_fields(category, {"names": names, **fields})
    try:
        # Two staff adding the same code at once meet here; the savepoint keeps the caller's
        # transaction usable.
        with session.begin_nested():
            session.add(category)
    except IntegrityError:
        raise Conflict(f"Category {code} already exists", field="code") from None
    return category


def get_category(session: Session, code: str, *, for_update: bool = False) -> Category:
    category = session.get(Category, code, with_for_update=for_update or None)
    if category is None:
        raise no_category(code)
    return category


def update_category(session: Session, *, code: str, **fields: Any) -> Category:
    """Change what is given of a category; ``is_active=False`` withdraws it from new requests."""
    category = get_category(session, code, for_update=True)
    _with_fields(category, fields)
    session.flush()
    return category


@dataclass(frozen=True)
class CategoryFilter:
    group: str | None = None
    sensitivity: str | None = None
    # Matches a code, either name or a keyword, in part and in any case.
    text: str | None = None
    include_inactive: bool = False


def list_categories(session: Session, *, where: CategoryFilter | None = None) -> list[Category]:
    """The catalogue by group and code, active categories only unless asked."""
    where = where or CategoryFilter()
    query = select(Category).order_by(Category.group, Category.code)
    if not where.include_inactive:
        query = query.where(Category.is_active.is_(True))
    if where.group is not None:
        query = query.where(Category.group == where.group)
    if where.sensitivity is not None:
        query = query.where(Category.sensitivity == where.sensitivity)
    categories = list(session.scalars(query))
    if where.text:
        # The catalogue is small: keywords live in a JSON list, matched here alike on both
        # databases.
        needle = where.text.casefold()
        categories = [
            category
            for category in categories
            if any(
                needle in text.casefold()
                for text in (category.code, category.name, category.name_zh, *category.keywords)
            )
        ]
    return categories


def check_submission(category: Mapping[str, Any]) -> None:
    """Refuse a request in a category whose notice blocks submission, saying what to do."""
    notice = category.get("notice")
    if not notice or not notice.get("blocks_submission"):
        return
    number = notice.get("emergency_number")
    raise SubmissionBlocked(
        notice["text"]["en"]
        + (f" Call {number} now." if number else "")
        + " Nothing has been queued.",
        field="category",
        notice=notice,
    )


def _bad_answer(code: str, message: str) -> Invalid:
    return Invalid(
        f"Answer to {code!r}: {message}",
        field=f"answers.{code}",
        errors={"answers": {code: [message]}},
    )


def _whole_number(code: str, value: Any) -> int:
    """A number question's answer: a whole number from 0 to MAX_NUMBER_ANSWER (2.0 is 2)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _bad_answer(code, "must be a number")
    if not (0 <= value <= MAX_NUMBER_ANSWER) or value != int(value):
        raise _bad_answer(code, f"must be a whole number from 0 to {MAX_NUMBER_ANSWER:,}")
    return int(value)


def _answer(question: Mapping[str, Any], value: Any) -> Any:
    """``value`` as stored for ``question``, or the reason it does not answer it."""
    kind, code = question["type"], question["code"]
    if kind in ANSWER_LENGTH:
        if not isinstance(value, str) or not value.strip():
            raise _bad_answer(code, "must be text")
        if len(value) > ANSWER_LENGTH[kind]:
            raise _bad_answer(code, f"must be at most {ANSWER_LENGTH[kind]} characters")
        return value
    if kind == "number":
        return _whole_number(code, value)
    if kind == "datetime":
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise _bad_answer(code, "must be a date and time with its offset, as ISO 8601")
        return moment.isoformat()
    offered = [option["value"] for option in question["options"]]
    if kind == "single_choice":
        if value not in offered:
            raise _bad_answer(code, f"must be one of {offered}")
        return value
    if not isinstance(value, list) or any(item not in offered for item in value):
        raise _bad_answer(code, f"must be a list of some of {offered}")
    if len(set(value)) != len(value):
        raise _bad_answer(code, "names an option twice")
    if question["required"] and not value:
        raise _bad_answer(code, "must name at least one option")
    return value


def check_answers(
    questions: Iterable[Mapping[str, Any]], answers: Mapping[str, Any]
) -> dict[str, Any]:
    """The answers to a category's questions, checked: every required one answered, each of
    its type, none to a question not asked."""
    asked = {question["code"]: question for question in questions}
    for code in answers:
        if code not in asked:
            raise _bad_answer(code, "no such question in this category")
    checked = {}
    for code, question in asked.items():
        value = answers.get(code)
        if value is None:
            if question["required"]:
                raise _bad_answer(code, "is required")
            continue
        checked[code] = _answer(question, value)
    return checked


def catalogue_entries(path: Path = DEMO_CATALOGUE) -> list[dict[str, Any]]:
    """The categories a catalogue file lists, as written."""
    entries: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["categories"]
    return entries
