"""The web processes' command: gunicorn with deploy/gunicorn.conf.py, its settings checked first.

``python -m shared.web_server --config deploy/gunicorn.conf.py --bind HOST:PORT APP`` takes
gunicorn's own arguments. gunicorn reads ``WEB_CONCURRENCY`` as it loads, before any
configuration file, and stops with a traceback on one that is not a number: checked here first,
a wrong one gets the same single line as the other counts (``whole``), and exit code 2.
"""

from __future__ import annotations

import os
import sys


def whole(name: str, given: str) -> int:
    """A setting that counts something: a whole number of at least 1, or one line saying which
    setting is wrong and exit 2 (gunicorn's own message would be a traceback)."""
    try:
        value = int(given)
    except ValueError:
        value = 0
    if value < 1:
        print(
            f"cannot start: {name} must be a whole number of 1 or more, not {given!r}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(2)
    return value


def main() -> None:
    given = os.environ.get("WEB_CONCURRENCY")
    if given is not None:
        whole("WEB_CONCURRENCY", given)
    # Imported only now: gunicorn's configuration reads WEB_CONCURRENCY as it is imported.
    from gunicorn.app.wsgiapp import run

    sys.argv[0] = "gunicorn"
    run()


if __name__ == "__main__":
    main()
