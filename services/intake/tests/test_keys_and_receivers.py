"""API keys' rate limits and scopes checked whole at issue; a receiver on port 0 refused; a
replay's span told the right way round."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.intake import clients, destinations, webhooks
from services.intake.config import runtime
from services.intake.tests.builders import HOTLINE
from shared.auth import parse_rate_limit
from shared.clock import utcnow
from shared.errors import Invalid

LOCAL = destinations.destinations_for("test")


def issue(**given):
    with runtime().db.transaction() as session:
        client, _ = clients.create_api_client(session, name="hotline", **given)
        return client


class TestRateLimits:
    @pytest.mark.parametrize(
        "limit",
        [
            "1/0 second",
            "10000001/second",
            "10/second;100/minute",
            "10/second, 100/minute",
            "10 per 99999999999 year",
            "10/year",
            "10/31 days",
            "10/",
            "/minute",
            "-1/minute",
            " 10/minute",
        ],
    )
    def test_a_limit_not_applied_as_written_is_refused_naming_what_is_accepted(self, limit):
        with pytest.raises(Invalid, match="like '600/minute'") as refused:
            issue(rate_limit=limit)
        assert refused.value.extra["field"] == "rate_limit"

    @pytest.mark.parametrize(
        ("limit", "amount", "seconds"),
        [
            ("600/minute", 600, 60),
            ("20 per second", 20, 1),
            ("1000/5 minutes", 1000, 300),
            ("1000000/30 days", 1_000_000, 30 * 86400),
        ],
    )
    def test_a_limit_is_kept_as_the_limiter_applies_it(self, limit, amount, seconds):
        assert issue(rate_limit=limit).rate_limit == limit
        parsed = parse_rate_limit(limit)
        assert (parsed.amount, parsed.get_expiry()) == (amount, seconds)

    def test_over_http_the_refusal_is_a_422(self, client):
        from services.intake.tests.test_api import bearer

        response = client.post(
            "/v1/api-keys",
            json={"name": "hotline", "rate_limit": "10/second;100/minute"},
            headers=bearer("key-keeper", "admin"),
        )
        assert (response.status_code, response.json["field"]) == (422, "rate_limit")


class TestScopes:
    def test_a_scope_named_twice_is_refused(self):
        with pytest.raises(Invalid, match="once") as refused:
            issue(scopes=["requests:read", "requests:read"])
        assert refused.value.extra["field"] == "scopes"


class TestReceivers:
    @pytest.mark.parametrize(
        "url", ["https://hooks.example:0/in", "http://127.0.0.1:0/in", "https://[::1]:0/in"]
    )
    def test_port_0_is_refused(self, url):
        with pytest.raises(Invalid, match="port 0"):
            destinations.check_receiver(url, LOCAL)


class TestReplaySpan:
    def test_a_span_ending_before_it_begins_says_until_must_be_after_since(self):
        now = utcnow()
        with runtime().db.transaction() as session, pytest.raises(Invalid) as refused:
            webhooks.replay_deliveries(
                session,
                subscription_id="0" * 32,
                by=HOTLINE,
                since=now,
                until=now - timedelta(hours=1),
            )
        assert refused.value.detail.startswith("until must be after since")
