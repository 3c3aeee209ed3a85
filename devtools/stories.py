"""``make stories``: the stories of the domain that are built, walked through the public APIs.

Each story is a small function of the running system's credentials (``var/demo-credentials.json``,
as ``make run`` writes it) that raises :class:`StoryFailed` with the reason when the system does
not do what the story says. The ten stories are all listed; those not built yet say so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from devtools.thread import KnifeSharpeningThread, ThreadFailed

Credentials = Mapping[str, Any]


class StoryFailed(AssertionError):
    pass


@dataclass(frozen=True)
class Story:
    number: int
    title: str
    walk: Callable[[Credentials], None] | None = None

    @property
    def is_built(self) -> bool:
        return self.walk is not None


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise StoryFailed(reason)


def knife_sharpening(credentials: Credentials) -> None:
    """Routed to the volunteer who does it, who earns points for the hours once confirmed."""
    thread = KnifeSharpeningThread(credentials, say=lambda _: None)
    try:
        thread.walk()
        transfer = thread.call(
            "GET", "points", f"/v1/transfers/earn:{thread.request_id}", who="staff"
        )
        expected = (thread.hours * thread.rate()).quantize(Decimal("0.01"))
    except ThreadFailed as failure:
        raise StoryFailed(str(failure)) from None
    earner = f"volunteer:{credentials['volunteer']['id']}"
    _expect(
        transfer["credit"] == earner and Decimal(transfer["amount"]) == expected,
        f"the request earned {transfer['amount']} points for {transfer['credit']}, "
        f"expected {expected} for {earner}",
    )


class HotlineSystem:
    """Another system posting to intake with its API key, reading whole answers."""

    def __init__(self, credentials: Credentials) -> None:
        self.url = credentials["urls"]["intake"]
        self.headers = {"X-API-Key": credentials["intake_api_key"]}
        self.http = requests.Session()

    def post(
        self, path: str, body: Mapping[str, Any], *, key: str | None = None
    ) -> requests.Response:
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        return self.http.post(self.url + path, json=body, headers=headers, timeout=10)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params, headers=self.headers, timeout=10)


def _answered(response: requests.Response, status: int, what: str) -> Any:
    _expect(
        response.status_code == status,
        f"{what} answered {response.status_code}, expected {status}: {response.text[:300]}",
    )
    return response.json()


def hotline_posts_twice(credentials: Credentials) -> None:
    """The same Idempotency-Key and body replay the first answer; one request exists, not two."""
    hotline = HotlineSystem(credentials)
    home = credentials["resident"]["location"]
    # A caller of their own, so that listing their requests shows only what this story posted.
    caller = _answered(
        hotline.post(
            "/v1/residents",
            {"name": f"Hotline caller {uuid.uuid4().hex[:6]}", "location": home},
        ),
        201,
        "registering the caller",
    )
    reference = f"hotline-{uuid.uuid4().hex[:12]}"
    body = {
        "category": "haircut",
        "summary": "A haircut at home, asked for through the city hotline",
        "resident_id": caller["id"],
        "channel": "hotline",
        "external_ref": reference,
    }
    key = uuid.uuid4().hex
    first = hotline.post("/v1/requests", body, key=key)
    created = _answered(first, 201, "the first POST")
    _expect("Idempotent-Replayed" not in first.headers, "the first POST was answered as a replay")
    again = hotline.post("/v1/requests", body, key=key)
    replayed = _answered(again, 201, "the POST after the time-out")
    _expect(
        again.headers.get("Idempotent-Replayed") == "true",
        f"the second POST has Idempotent-Replayed {again.headers.get('Idempotent-Replayed')!r}",
    )
    _expect(
        replayed["id"] == created["id"],
        f"the second POST created request {replayed['id']} besides {created['id']}",
    )
    _expect(replayed == created, "the second POST's answer differs from the first's")
    listed = _answered(
        hotline.get("/v1/requests", resident_id=caller["id"], page_size=100),
        200,
        "listing the caller's requests",
    )
    found = [r["id"] for r in listed if r["external_ref"] == reference]
    _expect(found == [created["id"]], f"requests with external_ref {reference}: {found}")
    refused = hotline.post("/v1/requests", {**body, "summary": "Something else"}, key=key)
    problem = _answered(refused, 422, "the same key with a different body")
    _expect(
        refused.headers.get("Content-Type", "").startswith("application/problem+json")
        and bool(problem.get("detail")),
        f"the refusal is not a problem+json with a detail: {refused.text[:300]}",
    )


STORIES = (
    Story(1, "lunch delivered every day to a senior living alone"),
    Story(2, "a midnight power cut reaches the electrician, the backup, then the duty officer"),
    Story(3, "knife sharpening", knife_sharpening),
    Story(4, "a small business asks the partner law firm about labour contracts"),
    Story(5, "free piano class: limited seats, a fifteen-year-old refused"),
    Story(6, "two neighbours quarrel over a leaking pipe: mediation"),
    Story(7, "points redeemed for a haircut or rice and oil from the catalogue"),
    Story(8, "a city hotline posts, times out and posts again: one request", hotline_posts_twice),
    Story(9, "the staff console lists overdue open requests in building 3, most urgent first"),
    Story(10, "the parking-fee question through the four steps, every household told"),
)


def run_stories(
    credentials: Credentials,
    *,
    stories: tuple[Story, ...] = STORIES,
    say: Callable[[str], None] = print,
) -> int:
    """Walk every built story, one line each; 0 only when every built story is ok."""
    failed = 0
    for story in stories:
        outcome = "not built"
        if story.walk is not None:
            try:
                story.walk(credentials)
                outcome = "ok"
            except StoryFailed as failure:
                outcome = f"FAIL {failure}"
            except requests.RequestException as error:
                outcome = f"FAIL cannot reach the services ({error})"
            failed += outcome != "ok"
        say(f"story {story.number} {story.title}: {outcome}")
    return 1 if failed else 0
