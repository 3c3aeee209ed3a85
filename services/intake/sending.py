"""Sending one signed webhook delivery over HTTP, within timeouts and a cap on the answer."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.intake.destinations import (
    Destinations,
    IPAddress,
    Target,
    check_url,
    resolve,
)
from shared.clock import utcnow
from shared.errors import Invalid

CONNECT_TIMEOUT_S = 5.0
# The whole of one attempt: connecting, sending and reading the answer.
TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 1000
USER_AGENT = "Redvest-Webhooks/1"
# Receivers check ``Redvest-Signature: t=<unix time>,v1=<hex>[,v1=<hex>]``: HMAC-SHA256 keyed
# with the subscription's secret over ``<t>.<body>``; while a rotated secret's overlap lasts,
# both secrets sign.
SIGNATURE_HEADER = "Redvest-Signature"


@dataclass(frozen=True)
class Claim:
    """A delivery a worker took to send: all it needs to, without the database."""

    delivery_id: int
    attempt: int
    claimed_at: datetime
    subscription_id: str
    url: str
    event_id: str
    event_type: str
    body: bytes
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """What came of one attempt: the receiver's answer, or what went wrong."""

    latency_ms: int
    status_code: int | None = None
    error: str | None = None
    excerpt: str = ""

    @property
    def is_delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _digest(secret: str, signed: bytes) -> str:
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature(body: bytes, *, timestamp: int, keys: Sequence[str]) -> str:
    """The signature header's value: the time, and an HMAC-SHA256 of ``<time>.<body>`` with
    each key."""
    signed = f"{timestamp}.".encode() + body
    return ",".join([f"t={timestamp}", *(f"v1={_digest(key, signed)}" for key in keys)])


def verify_signature(
    header: str,
    body: bytes,
    *,
    secret: str,
    now: datetime,
    tolerance: timedelta = timedelta(minutes=5),
) -> bool:
    """What a receiver checks: ``header`` signs ``body`` with ``secret``, at a time within
    ``tolerance`` of ``now`` (an old delivery replayed by someone else is refused)."""
    parts = [part.partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in parts if name == "t"]
    if len(stamps) != 1 or not re.fullmatch(r"[0-9]{1,12}", stamps[0]):
        return False
    if abs(now.timestamp() - int(stamps[0])) > tolerance.total_seconds():
        return False
    expected = _digest(secret, f"{stamps[0]}.".encode() + body)
    return any(name == "v1" and hmac.compare_digest(value, expected) for name, _, value in parts)


class _Connection(http.client.HTTPConnection):
    """A connection to an address checked beforehand, whatever the name resolves to by now."""

    def __init__(self, target: Target, peer: IPAddress, *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.peer = str(peer)

    def connect(self) -> None:
        self.sock = socket.create_connection((self.peer, self.port), self.timeout)


class _TlsConnection(http.client.HTTPSConnection):
    """As ``_Connection``, over TLS, checking the certificate against the URL's host."""

    def __init__(
        self, target: Target, peer: IPAddress, *, timeout: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=tls)
        self.peer = str(peer)
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.peer, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "Timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error}"
    if isinstance(error, ConnectionRefusedError):
        return "Connection refused"
    return f"{type(error).__name__}: {error}"


def post(
    claim: Claim,
    *,
    destinations: Destinations,
    timeout_s: float = TIMEOUT_S,
    tls: ssl.SSLContext | None = None,
) -> Outcome:
    """POST ``claim``, signed, to an address its receiver's name resolves to and that may be
    reached; what came of it, never an exception."""
    started = time.monotonic()
    deadline = started + timeout_s

    def outcome(**found: Any) -> Outcome:
        return Outcome(latency_ms=int((time.monotonic() - started) * 1000), **found)

    try:
        target = check_url(claim.url, destinations)
        peers = resolve(target, destinations)
    except Invalid as refused:
        return outcome(error=f"Refused: {refused.detail}")
    except (OSError, UnicodeError, ValueError) as error:
        return outcome(error=f"Cannot resolve the receiver's host: {error}")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Connection": "close",
        "Redvest-Event-Id": claim.event_id,
        "Redvest-Event-Type": claim.event_type,
        "Redvest-Delivery-Id": str(claim.delivery_id),
        "Redvest-Delivery-Attempt": str(claim.attempt),
        "Redvest-Webhook-Id": claim.subscription_id,
        SIGNATURE_HEADER: signature(
            claim.body, timestamp=int(utcnow().timestamp()), keys=claim.keys
        ),
    }
    failure: BaseException | None = None
    for peer in peers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            context = tls or ssl.create_default_context()
            connection = _TlsConnection(
                target, peer, timeout=min(CONNECT_TIMEOUT_S, remaining), tls=context
            )
        else:
            connection = _Connection(target, peer, timeout=min(CONNECT_TIMEOUT_S, remaining))
        try:
            connection.connect()
        except OSError as error:
            failure = error
            connection.close()
            continue  # the next address, if the name has several
        try:
            return _exchange(connection, target, claim.body, headers, deadline, outcome)
        except (OSError, http.client.HTTPException) as error:
            return outcome(error=_describe(error))
        finally:
            connection.close()
    return outcome(error=_describe(failure) if failure else "Timed out")


def _exchange(
    connection: http.client.HTTPConnection,
    target: Target,
    body: bytes,
    headers: Mapping[str, str],
    deadline: float,
    outcome: Any,
) -> Outcome:
    sock = connection.sock
    if sock is None:
        raise ConnectionError("not connected")

    def budget() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    sock.settimeout(budget())
    connection.request("POST", target.path, body=body, headers=dict(headers))
    sock.settimeout(budget())
    response = connection.getresponse()
    received, size = [], 0
    try:
        # At most MAX_RESPONSE_BYTES, and never past the deadline however slowly they come.
        while size < MAX_RESPONSE_BYTES:
            sock.settimeout(budget())
            chunk = response.read1(min(16 * 1024, MAX_RESPONSE_BYTES - size))
            if not chunk:
                break
            received.append(chunk)
            size += len(chunk)
    finally:
        response.close()
    excerpt = b"".join(received).decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    error = None
    if 300 <= response.status < 400:
        error = f"HTTP {response.status}: redirects are not followed"
    result: Outcome = outcome(status_code=response.status, error=error, excerpt=excerpt)
    return result
