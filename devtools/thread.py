"""Story 3 of the domain, through the public APIs: a knife-sharpening request, end to end.

Used by ``make demo``, the end-to-end tests and the benchmark, so all three walk the same path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import requests

T = TypeVar("T")


class ThreadFailed(AssertionError):
    pass


class KnifeSharpeningThread:
    """One request walked from submission to points credited, with a step log."""

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        say: Callable[[str], None] = print,
        timeout: float = 60.0,
        hours: str = "1.5",
    ) -> None:
        self.urls = credentials["urls"]
        self.credentials = credentials
        self.say = say
        self.timeout = timeout
        self.hours = Decimal(hours)
        self.http = requests.Session()
        self.request_id = ""
        self.assignment_id = ""

    # --- HTTP -------------------------------------------------------------------------------
    def _headers(self, who: str) -> dict[str, str]:
        if who == "system":
            return {"X-API-Key": self.credentials["intake_api_key"]}
        token = {
            "staff": self.credentials["staff_token"],
            "volunteer": self.credentials["volunteer"]["token"],
            "resident": self.credentials["resident"]["token"],
        }[who]
        return {"Authorization": f"Bearer {token}"}

    def call(
        self, method: str, service: str, path: str, *, who: str, expect: int = 200, **kwargs: Any
    ) -> Any:
        headers = {**self._headers(who), **kwargs.pop("headers", {})}
        response = self.http.request(
            method, self.urls[service] + path, headers=headers, timeout=10, **kwargs
        )
        if response.status_code != expect:
            raise ThreadFailed(
                f"{method} {service}{path} answered {response.status_code}, "
                f"expected {expect}: {response.text[:500]}"
            )
        return response.json() if response.content else None

    def wait_for(self, what: str, check: Callable[[], T | None]) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise ThreadFailed(f"timed out after {self.timeout:.0f}s waiting for {what}")
            time.sleep(0.05)

    def request_status(self) -> str:
        status: str = self.call("GET", "intake", f"/v1/requests/{self.request_id}", who="system")[
            "status"
        ]
        return status

    def wait_for_status(self, status: str) -> None:
        self.wait_for(f"request {status}", lambda: self.request_status() == status)

    # --- the story ----------------------------------------------------------------------------
    def balance(self) -> Decimal:
        holder = f"volunteer:{self.credentials['volunteer']['id']}"
        response = self.http.get(
            f"{self.urls['points']}/v1/accounts/{holder}",
            headers=self._headers("volunteer"),
            timeout=10,
        )
        if response.status_code == 404:
            return Decimal(0)
        if response.status_code != 200:
            raise ThreadFailed(f"points answered {response.status_code}: {response.text[:300]}")
        return Decimal(response.json()["balance"])

    def rate(self) -> Decimal:
        rates = self.call("GET", "points", "/v1/rates", who="staff")
        for rate in rates:
            if rate["category"] == "knife_sharpening":
                return Decimal(str(rate["points_per_hour"]))
        raise ThreadFailed("points has no rate for knife_sharpening")

    def submit(self) -> None:
        resident = self.credentials["resident"]
        created = self.call(
            "POST",
            "intake",
            "/v1/requests",
            who="system",
            expect=201,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={
                "category": "knife_sharpening",
                "summary": "Two kitchen knives and scissors",
                "resident_id": resident["id"],
                "location": resident["location"],
                "channel": "hotline",
            },
        )
        self.request_id = created["id"]
        self.say(
            f"1. intake: request {self.request_id} submitted for building "
            f"{resident['location']['building']}, unit {resident['location']['unit']}, "
            f"household {resident['location']['household']}"
        )

    def assigned(self) -> None:
        self.wait_for_status("assigned")
        assignments = self.call("GET", "dispatch", "/v1/assignments", who="volunteer")
        mine = [a for a in assignments if a["request_id"] == self.request_id]
        if not mine:
            raise ThreadFailed("the volunteer does not see the assignment")
        self.assignment_id = mine[0]["id"]
        self.say(
            f"2. dispatch: routed to {self.credentials['volunteer']['name']} "
            f"(assignment {self.assignment_id}); intake shows 'assigned'"
        )

    def accept(self) -> None:
        self.call(
            "POST", "dispatch", f"/v1/assignments/{self.assignment_id}/acceptance", who="volunteer"
        )
        self.wait_for_status("accepted")
        self.say("3. volunteer accepted; intake shows 'accepted'")

    def complete(self) -> None:
        self.call(
            "POST",
            "dispatch",
            f"/v1/assignments/{self.assignment_id}/completion",
            who="volunteer",
            json={"hours": str(self.hours), "note": "Sharpened"},
        )
        self.wait_for_status("completed")
        self.say(f"4. volunteer completed it in {self.hours} hour(s); intake shows 'completed'")

    def confirm(self) -> None:
        self.call("POST", "intake", f"/v1/requests/{self.request_id}/confirmation", who="resident")
        self.say("5. resident confirmed the service")

    def credited(self, before: Decimal, expected: Decimal) -> None:
        after = self.wait_for(
            "points credited", lambda: (b := self.balance()) >= before + expected and b
        )
        self.say(f"6. points: volunteer credited {expected} points; balance {before} -> {after}")

    def transfer_credited(self) -> None:
        """Wait for the points transfer this request earned (safe with many threads at once)."""

        def credited() -> bool:
            response = self.http.get(
                f"{self.urls['points']}/v1/transfers/earn:{self.request_id}",
                headers=self._headers("staff"),
                timeout=10,
            )
            return response.status_code == 200

        self.wait_for("the points transfer", credited)

    def inbox(self, recipient: str, who: str, template: str) -> bool:
        messages = self.call(
            "GET", "notify", f"/v1/inbox/{recipient}", who=who, params={"page_size": 100}
        )
        return any(
            m["template"] == template and m.get("data", {}).get("request_id") == self.request_id
            for m in messages
        )

    def notified(self) -> None:
        volunteer = f"volunteer:{self.credentials['volunteer']['id']}"
        resident = f"resident:{self.credentials['resident']['id']}"
        for recipient, who, template in (
            (volunteer, "volunteer", "assignment.created"),
            (resident, "resident", "request.accepted"),
            (resident, "resident", "request.completed"),
            (volunteer, "volunteer", "points.credited"),
        ):
            self.wait_for(
                f"{template} in {recipient}'s inbox", partial(self.inbox, recipient, who, template)
            )
            self.say(f"7. notify: '{template}' is in {recipient}'s inbox")

    def walk(self) -> None:
        before, rate = self.balance(), self.rate()
        self.submit()
        self.assigned()
        self.accept()
        self.complete()
        self.confirm()
        self.credited(before, (self.hours * rate).quantize(Decimal("0.01")))
        self.notified()
