"""Who is calling over HTTP: the credentials of a request, read once, and the 401/403 answers;
and each use of an API key, whichever door it comes through: its scopes, its rate, its last use.

An API key is limited to so many calls a window (``API_KEY_RATE_LIMIT``, or the key's own
limit), counted per key in the broker's Redis when the broker is Redis, so that every process of
the service shares one count; with RabbitMQ each process counts on its own. Beyond it the
caller gets 429 with ``Retry-After``. People's bearer tokens are not limited here.

A key allowed many calls a window is counted a lease at a time: a process takes the next few
numbers of the window's count in one Redis call and hands them out itself until they run out or
the window ends. Numbers are never handed out twice, so no more calls than the limit pass; a
lease cut short by the window's end lets a few fewer pass, and ``RateLimit-Remaining`` counts
the numbers other processes hold as used.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis
import structlog
from flask import Response, g, has_request_context, request
from limits.storage import MemoryStorage, RedisStorage, Storage
from werkzeug.exceptions import TooManyRequests

from shared.auth import (
    AuthenticationError,
    CachedKeyLookup,
    KeyHolder,
    Principal,
    parse_rate_limit,
    verify_token,
)

log = structlog.get_logger(__name__)

# A key's last use is written at most this often, by each process.
NOTE_USE_EVERY_S = 60.0
# Redis answers within this or the call is counted in the process instead.
RATE_STORAGE_TIMEOUT_S = 0.5
# A lease is this share of a key's limit (at most MAX_LEASE numbers); a limit too small for a
# lease of MIN_LEASE is counted one call at a time, exactly.
LEASE_SHARE = 100
MIN_LEASE, MAX_LEASE = 4, 20


def lease_size(amount: int) -> int:
    """How many numbers of the count a process takes at once for a limit of ``amount``."""
    size = min(MAX_LEASE, amount // LEASE_SHARE)
    return size if size >= MIN_LEASE else 1


# Takes a lease in one step: the count moved, the window opened if it was not, and the time
# left of the window that count belongs to (two calls could see the next window's).
_LEASE_SCRIPT = """
local count = redis.call("incrby", KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {count, redis.call("pttl", KEYS[1])}
"""


@dataclass
class _Lease:
    """Numbers of a window's count a process took and hands out: ``next`` to ``last``."""

    next: int
    last: int
    window_ends_at: float  # time.monotonic()


class ApiKeyLookup(Protocol):
    """Who holds a key presented to the current request (None: nobody, or revoked)."""

    def __call__(self, key: str) -> Principal | None: ...

    def forget(self, key_hash: str) -> None:
        """Look the key of ``key_hash`` up afresh at its next use (it was revoked here)."""


class AuthProblem(Exception):
    """The caller is unknown (401) or may not do this (403)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail

    @property
    def code(self) -> str:
        return "unauthenticated" if self.status == 401 else "forbidden"


def current_principal() -> Principal | None:
    return getattr(g, "principal", None)


def require(*roles: str) -> Principal:
    """The authenticated caller, who must hold one of ``roles``; else 401 or 403."""
    principal = current_principal()
    if principal is None:
        raise AuthProblem(
            401, "Authentication required", "Send an API key (X-API-Key) or a bearer token."
        )
    if roles and principal.role not in roles:
        raise AuthProblem(
            403,
            "Forbidden",
            f"Role {principal.role!r} may not do this; needs one of {list(roles)}.",
        )
    return principal


def authenticate(*, secret: str, service: str, api_key_lookup: ApiKeyLookup | None) -> None:
    """Read the request's credentials into ``g.principal``; AuthProblem if they are bad."""
    g.principal = None
    key = request.headers.get("X-API-Key")
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "apikey" and credentials:
        key = credentials.strip()
    if key:
        principal = api_key_lookup(key) if api_key_lookup else None
        if principal is None:
            raise AuthProblem(401, "Authentication failed", "Unknown or revoked API key.")
        g.principal = principal
    elif scheme.lower() == "bearer" and credentials:
        try:
            g.principal = verify_token(secret, credentials.strip(), service=service)
        except AuthenticationError as error:
            raise AuthProblem(401, "Authentication failed", str(error)) from error


class RateLimited(TooManyRequests):
    """An API key made more calls than its limit allows in the current window."""

    def __init__(self, limit: str, retry_after_s: int, headers: dict[str, str]) -> None:
        super().__init__(
            f"This API key may make {limit} calls; try again in {retry_after_s} s.",
            retry_after=retry_after_s,
        )
        self.retry_after_s = retry_after_s
        self.limit_headers = {**headers, "Retry-After": str(retry_after_s)}


class KeyRates:
    """How many calls each API key has left: a fixed window per key, its counter in Redis
    (one count for all the service's processes) or, for any other broker, in this process."""

    def __init__(self, broker_url: str, *, default: str, prefix: str) -> None:
        parse_rate_limit(default)
        self.default = default
        self.is_shared = broker_url.startswith(("redis://", "rediss://"))
        self._storage: Storage = (
            RedisStorage(
                broker_url,
                key_prefix=prefix,
                socket_timeout=RATE_STORAGE_TIMEOUT_S,
                socket_connect_timeout=RATE_STORAGE_TIMEOUT_S,
            )
            if self.is_shared
            else MemoryStorage()
        )
        self._fallback: MemoryStorage | None = None
        # The leases of each key: threads that found none left may each take one at once, and
        # every number taken is handed out before the window ends or is lost with it.
        self._leases: dict[str, list[_Lease]] = {}
        self._lock = threading.Lock()
        self._lease_script: Any = None

    def _leased(self, key: str) -> int | None:
        """The next number of this process's leases on ``key``'s count, if one has any left."""
        now = time.monotonic()
        with self._lock:
            leases = self._leases.get(key, [])
            leases[:] = [lease for lease in leases if lease.next <= lease.last]
            for lease in leases:
                if now < lease.window_ends_at:
                    lease.next += 1
                    return lease.next - 1
            leases.clear()  # all of a window that has ended
            return None

    def _lease(self, key: str, expiry: int, size: int) -> int:
        """Take ``size`` numbers of the count at once; the first, the rest kept for later."""
        storage = cast(RedisStorage, self._storage)
        if self._lease_script is None:
            client = cast(redis.Redis, storage.get_connection())
            self._lease_script = client.register_script(_LEASE_SCRIPT)
        # Read before Redis is asked: the window ends no sooner than this says.
        asked_at = time.monotonic()
        last, remaining_ms = self._lease_script(
            keys=[storage.prefixed_key(key)], args=[expiry, size]
        )
        window_ends_at = asked_at + max(0, int(remaining_ms)) / 1000
        first = int(last) - size + 1
        if size > 1:
            with self._lock:
                self._leases.setdefault(key, []).append(
                    _Lease(first + 1, int(last), window_ends_at)
                )
        return first

    def _count(self, key: str, expiry: int, amount: int) -> tuple[Storage, int]:
        """The number of this call in the key's window: counted in Redis, or leased."""
        size = lease_size(amount) if self.is_shared else 1
        if size > 1 and (number := self._leased(key)) is not None:
            return self._storage, number
        try:
            if size > 1:
                return self._storage, self._lease(key, expiry, size)
            return self._storage, self._storage.incr(key, expiry)
        except self._storage.base_exceptions as error:
            # The door stays open when Redis does not answer: the count goes on in the process.
            log.warning("rate_limit.storage_unavailable", error=str(error))
            if self._fallback is None:
                self._fallback = MemoryStorage()
            return self._fallback, self._fallback.incr(key, expiry)

    def hit(self, holder: KeyHolder) -> dict[str, str]:
        """Count one call of ``holder``'s key; its rate-limit headers, or RateLimited."""
        limit_text = holder.rate_limit or self.default
        limit = parse_rate_limit(limit_text)
        key = limit.key_for(holder.key_hash)
        storage, count = self._count(key, limit.get_expiry(), limit.amount)
        headers = {
            "RateLimit-Limit": str(limit.amount),
            "RateLimit-Remaining": str(max(0, limit.amount - count)),
        }
        if count <= limit.amount:
            return headers
        try:
            reset_at = storage.get_expiry(key)
        except storage.base_exceptions:
            reset_at = time.time() + limit.get_expiry()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        headers["RateLimit-Reset"] = str(retry_after)
        raise RateLimited(limit_text, retry_after, headers)


class ApiKeys:
    """Each use of an API key: who holds it (remembered a while), whether its rate allows one
    more call and its scopes cover the operation; its last use is noted once a minute at most.

    Both doors of a service ask it: the ``X-API-Key`` header and, at intake, Open311's
    ``api_key``. ``scope_of`` names the scope the current request's operation needs (None: any
    key may call it); ``note_use`` writes a key's last use down.
    """

    def __init__(
        self,
        holders: CachedKeyLookup[KeyHolder],
        *,
        rates: KeyRates,
        scope_of: Callable[[], str | None],
        note_use: Callable[[KeyHolder], None],
    ) -> None:
        self._holders = holders
        self._rates = rates
        self._scope_of = scope_of
        self._note_use = note_use
        self._noted: dict[str, float] = {}
        self._lock = threading.Lock()

    def forget(self, key_hash: str) -> None:
        self._holders.forget(key_hash)

    def __call__(self, key: str) -> Principal | None:
        holder = self._holders(key)
        if holder is None:
            return None
        if has_request_context():
            try:
                g.rate_limit_headers = self._rates.hit(holder)
            except RateLimited as limited:
                g.rate_limit_headers = limited.limit_headers
                raise
            check_scope(holder, self._scope_of())
            self._note(holder)
        return holder.principal

    def _note(self, holder: KeyHolder) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._noted.get(holder.key_hash)
            if last is not None and now - last < NOTE_USE_EVERY_S:
                return
            self._noted[holder.key_hash] = now
        self._note_use(holder)


def check_scope(holder: KeyHolder, scope: str | None) -> None:
    """403 unless the key holds ``scope`` (None: any key will do)."""
    if scope is not None and scope not in holder.scopes:
        raise AuthProblem(
            403,
            "Forbidden",
            f"This API key lacks the scope {scope!r}, which this operation needs; it holds "
            f"{sorted(holder.scopes)}. An admin can issue a key with that scope.",
        )


def add_rate_limit_headers(response: Response) -> Response:
    """An API key's caller learns its limit and what is left of it (and when to retry)."""
    for name, value in g.get("rate_limit_headers", {}).items():
        response.headers[name] = value
    return response
