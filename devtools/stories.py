"""``make stories``: the stories of the domain that are built, walked through the public APIs.

Each story is a small function of the running system's credentials (``var/demo-credentials.json``,
as ``make run`` writes it) that raises :class:`StoryFailed` with the reason when the system does
not do what the story says. The ten stories are all listed; those not built yet say so.
"""

from __future__ import annotations

import json
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


def overdue_in_building_3(credentials: Credentials) -> None:
    """Open requests past their category's deadline, in building 3, most urgent first; those
    elsewhere or not yet due are left out."""
    hotline = HotlineSystem(credentials)
    residents = credentials["seeded"]["intake"]["residents"]
    community = credentials["resident"]["location"]["community"]
    # A category of the story's own whose deadlines are at once: its requests are overdue the
    # moment they exist, so the story waits for no clock.
    drill = f"overdue_drill_{uuid.uuid4().hex[:6]}"
    at_once = {"acknowledge_minutes": 0, "resolve_minutes": 0}
    staff = {"Authorization": f"Bearer {credentials['staff_token']}"}
    made = hotline.http.post(
        hotline.url + "/v1/categories",
        json={
            "code": drill,
            "names": {"en": "Overdue drill", "zh-CN": "超时演练"},
            "group": "community_matters",
            "deadlines": {p: at_once for p in ("low", "normal", "high", "urgent")},
        },
        headers=staff,
        timeout=10,
    )
    _answered(made, 201, "staff adding a category due at once")

    def post(category: str, household: str, priority: str) -> dict[str, Any]:
        body = {
            "category": category,
            "summary": f"{priority} matter at {household}",
            "resident_id": residents[household],
            "priority": priority,
        }
        return _answered(hotline.post("/v1/requests", body), 201, f"posting the {priority} one")

    low = post(drill, "3-2-502", "low")
    urgent = post(drill, "3-2-501", "urgent")
    high = post(drill, "3-2-502", "high")
    elsewhere = post(drill, "5-1-101", "urgent")
    not_due = post("knife_sharpening", "3-2-501", "urgent")
    listing = hotline.http.get(
        hotline.url + "/v1/requests",
        params={
            "community": community,
            "building": "3",
            "open": "true",
            "overdue": "true",
            "sort": "urgency",
            "created_after": low["created_at"],
            "page_size": 100,
        },
        headers=staff,
        timeout=10,
    )
    listed = _answered(listing, 200, "the console's list of overdue requests in building 3")
    names = {
        low["id"]: "low",
        urgent["id"]: "urgent",
        high["id"]: "high",
        elsewhere["id"]: "building 5",
        not_due["id"]: "not due",
    }
    order = [names.get(r["id"], r["id"]) for r in listed]
    _expect(order == ["urgent", "high", "low"], f"listed {order}, expected urgent, high, low")
    _expect(
        all(r["is_overdue"] and r["location"]["building"] == "3" for r in listed),
        "a listed request is not overdue or not in building 3",
    )
    paging = json.loads(listing.headers.get("X-Pagination", "{}"))
    _expect(
        paging.get("total") == 3 and paging.get("next_cursor") is None,
        f"X-Pagination says {paging}, expected a total of 3 and no next page",
    )


def redeeming_points(credentials: Credentials) -> None:
    """A volunteer redeems points for a haircut at home; with too few points for rice, or oil
    out of stock, or a second haircut past the limit, nothing changes and the reason is plain."""
    url = credentials["urls"]["points"]
    staff = {"Authorization": f"Bearer {credentials['staff_token']}"}
    volunteer = {"Authorization": f"Bearer {credentials['volunteer']['token']}"}
    holder = f"volunteer:{credentials['volunteer']['id']}"
    run = uuid.uuid4().hex[:8]
    http = requests.Session()

    def call(method: str, path: str, who: dict[str, str], status: int, what: str, **kw: Any) -> Any:
        response = http.request(method, url + path, headers=who, timeout=10, **kw)
        _expect(
            response.status_code == status,
            f"{what} answered {response.status_code}, expected {status}: {response.text[:300]}",
        )
        if status >= 400:
            _expect(
                response.headers.get("Content-Type", "").startswith("application/problem+json")
                and bool(response.json().get("detail")),
                f"{what}: the refusal is not a problem+json with a detail: {response.text[:300]}",
            )
        return response.json()

    # Items of this walk's own, so that a walk never meets another's stock or limit.
    items = {
        "haircut": {
            "name": "Haircut at home",
            "kind": "service",
            "price": "8.00",
            "limit_per_person": 1,
            "limit_period_days": 30,
        },
        "rice": {"name": "Rice, 5 kg", "kind": "goods", "price": "1000000.00", "stock": 5},
        "oil": {"name": "Cooking oil, 1 l", "kind": "goods", "price": "1.00", "stock": 0},
    }
    for name, body in items.items():
        call(
            "PUT",
            f"/v1/catalogue/story7-{name}-{run}",
            staff,
            200,
            f"putting the {name}",
            json=body,
        )
    call(
        "POST",
        "/v1/transfers",
        staff,
        201,
        "funding the volunteer",
        json={
            "id": f"adjust:story7-{run}",
            "kind": "adjust",
            "debit": "bank:issuance",
            "credit": holder,
            "amount": "8.00",
            "reason": "Hours kept on paper (story 7)",
        },
    )
    before = call("GET", f"/v1/accounts/{holder}", volunteer, 200, "the volunteer's account")

    haircut = call(
        "POST",
        "/v1/redemptions",
        volunteer,
        201,
        "redeeming the haircut",
        json={"id": f"story7-haircut-{run}", "item_id": f"story7-haircut-{run}", "holder": holder},
    )
    _expect(haircut["status"] == "reserved", f"the haircut is {haircut['status']}, not reserved")
    held = call("GET", f"/v1/accounts/{holder}", volunteer, 200, "the account once reserved")
    _expect(
        Decimal(held["available"]) == Decimal(before["available"]) - 8,
        f"8 points not held: available {before['available']} -> {held['available']}",
    )
    handed = call(
        "POST", f"/v1/redemptions/story7-haircut-{run}/fulfilment", staff, 200, "the handover"
    )
    _expect(handed["status"] == "fulfilled", f"the haircut is {handed['status']} after handover")
    paid = call("GET", f"/v1/accounts/{holder}", volunteer, 200, "the account once paid")
    _expect(
        Decimal(paid["balance"]) == Decimal(before["balance"]) - 8,
        f"8 points not paid: balance {before['balance']} -> {paid['balance']}",
    )

    refusals = (
        ("rice", "exceeds-available", "too few points for the rice"),
        ("oil", "out-of-stock", "oil out of stock"),
        ("haircut", "exceeds-limit", "a second haircut within 30 days"),
    )
    for name, problem, what in refusals:
        redemption = f"story7-{name}-{run}-again"
        refused = call(
            "POST",
            "/v1/redemptions",
            volunteer,
            409,
            what,
            json={"id": redemption, "item_id": f"story7-{name}-{run}", "holder": holder},
        )
        _expect(refused["type"].endswith(f"/{problem}"), f"{what}: refused as {refused['type']}")
        call("GET", f"/v1/redemptions/{redemption}", staff, 404, f"{what}: the redemption")
    after = call("GET", f"/v1/accounts/{holder}", volunteer, 200, "the account after refusals")
    _expect(
        (after["balance"], after["available"]) == (paid["balance"], paid["available"]),
        f"the refusals changed the account: {paid} -> {after}",
    )
    for name, body in items.items():
        item = call("GET", f"/v1/catalogue/story7-{name}-{run}", staff, 200, f"the {name}")
        _expect(item["stock"] == body.get("stock"), f"the {name}'s stock is {item['stock']}")


STORIES = (
    Story(1, "lunch delivered every day to a senior living alone"),
    Story(2, "a midnight power cut reaches the electrician, the backup, then the duty officer"),
    Story(3, "knife sharpening", knife_sharpening),
    Story(4, "a small business asks the partner law firm about labour contracts"),
    Story(5, "free piano class: limited seats, a fifteen-year-old refused"),
    Story(6, "two neighbours quarrel over a leaking pipe: mediation"),
    Story(7, "points redeemed for a haircut or rice and oil from the catalogue", redeeming_points),
    Story(8, "a city hotline posts, times out and posts again: one request", hotline_posts_twice),
    Story(
        9,
        "the staff console lists overdue open requests in building 3, most urgent first",
        overdue_in_building_3,
    ),
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
