"""A WSGI app answering the pid of the process that serves it: which gunicorn worker took a
connection (tests of deploy/gunicorn.conf.py). ``/slow`` answers after a second,
``/nap`` after 50 ms."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO")
    if path == "/slow":
        time.sleep(1)
    elif path == "/nap":
        time.sleep(0.05)
    status = {"/refuse": "403 Forbidden", "/too-large": "413 Content Too Large"}.get(path, "200 OK")
    body = str(os.getpid()).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
