"""The web servers' gunicorn worker: gthread's, taking a new connection while it has a free
thread, and otherwise only once its queue has kept it from doing so for a while
(deploy/gunicorn.conf.py's ``worker_class``).

gthread's worker takes every connection that reaches it, up to ``worker_connections`` (1,000 by
default), whether or not its threads are busy, and keeps each kept-alive connection to itself.
Every worker waits on the one listening socket and the first to reach ``accept()`` wins, so a
burst of keep-alive connections mostly lands on one process, which then serves them on one core
while the others idle. A small ``worker_connections`` spreads them, but idle kept-alive
connections then fill a worker's slots and new connections wait up to the keep-alive for one.

Here a worker with every thread taken (handling a request, or waiting for a new connection's
first bytes) leaves new connections to the others, or to the kernel's queue when every thread of
every worker is busy. Connections kept alive and idle, and those waiting for their first bytes in
the poller, take no thread and do not count. When the worker's own kept-alive clients keep its
queue full, so that each freed thread goes straight to one of them, it takes a new connection
after twice its threads' worth of such requests: a new client (a health probe, say) waits a few
requests, not for the load to end. ``worker_connections`` still caps them all.

A request gunicorn refuses before the app sees it (a request line or headers too long, a
malformed request) is answered as every other error is, as application/problem+json, not as
gunicorn's HTML page (``write_problem``).

An answer that leaves more of the request's body unread than gunicorn drains before it reuses
the connection (a 413, or a refusal made before a large body was read) says ``Connection:
close``, since gunicorn closes the connection after it; otherwise the client, told keep-alive,
sends its next request into a closed socket (``ClosingUnreadBodies``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from gunicorn import util
from gunicorn.http.body import LengthReader
from gunicorn.workers.gthread import ThreadWorker

from shared.problems import PROBLEM_BASE, PROBLEM_MIME

# What a person reads about each refusal; gunicorn's own message may quote the request back.
_DETAILS = {
    400: "The request is not valid HTTP/1.1.",
    403: "The request is forbidden here.",
    414: "The request line is longer than this server reads: shorten the URL.",
    417: "The request's Expect header asks for what this server does not do.",
    431: "The request's header fields are more or longer than this server reads.",
    500: "The server failed to handle the request; it has been logged.",
    501: "The request's transfer coding is not one this server reads.",
}


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` (the answer to a request it refuses or fails), written
    as a problem; like gunicorn's own, it closes the connection."""
    body = json.dumps(
        {
            "type": PROBLEM_BASE + reason.lower().replace(" ", "-"),
            "title": reason,
            "status": status_int,
            "detail": _DETAILS.get(status_int, reason + "."),
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_MIME}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn's worker writes these answers through the module function: there is no other hook.
util.write_error = write_problem


# The most of a body the app left unread that gunicorn reads away before it serves the
# connection's next request (``gunicorn.http.parser._DRAIN_MAX_BYTES``); past it, it closes.
DRAINED_AT_MOST = 64 * 1024


def _leaves_too_much_unread(status: str, environ: dict[str, Any]) -> bool:
    if status.startswith("413"):
        return True  # too large to read at all: whatever is left is more than is drained
    reader = getattr(environ.get("wsgi.input"), "reader", None)
    return isinstance(reader, LengthReader) and reader.length > DRAINED_AT_MOST


class ClosingUnreadBodies:
    """The app, whose answers say ``Connection: close`` when the connection will close after
    them because too much of the request's body is left unread (see the module).

    gunicorn hands the app its response's own ``start_response``: the response it is bound to
    is told to close before its headers are written."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
            if force_close is not None and _leaves_too_much_unread(status, environ):
                force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class FreeThreadWorker(ThreadWorker):
    """gthread's worker, accepting while one of its threads is free (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Counted here rather than read from gthread's ``nr_conns``, which a connection closed
        # twice (an app failing after its headers were sent) decrements twice.
        self._in_pool = 0  # connections handed to the threads, not yet finished
        self._passed_over = 0  # threads freed and taken at once by a queued request since
        self._configured_connections = 0
        super().__init__(*args, **kwargs)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi: Callable[..., Iterable[bytes]] = ClosingUnreadBodies(self.wsgi)

    def enqueue_req(self, conn: Any) -> None:
        super().enqueue_req(conn)
        self._in_pool += 1

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        self._in_pool -= 1
        self._passed_over = self._passed_over + 1 if self._in_pool >= self.cfg.threads else 0
        super().finish_request(conn, fs)

    def accept(self, listener: Any) -> None:
        self._passed_over = 0
        super().accept(listener)

    # gthread's loop accepts while ``nr_conns < worker_connections`` and sets the attribute from
    # the configuration once, at start: the bound it reads is the configured one while the
    # worker may accept, and ``nr_conns`` itself (so: no) while it may not.
    @property
    def worker_connections(self) -> int:
        threads = self.cfg.threads
        if self._in_pool < threads or self._passed_over >= 2 * threads:
            return self._configured_connections
        return int(self.nr_conns)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._configured_connections = value
