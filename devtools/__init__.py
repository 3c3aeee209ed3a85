"""Developer tooling: the local runner and its supervisor, an embedded Redis, the demo community,
the checks behind ``make test``, the benchmark and the client that walks the thread.

Used by ``make run``, ``make demo``, ``make test``, ``make bench`` and the end-to-end tests; it is
not part of the production image, which runs each process from ``deploy/Procfile`` as its own
container command instead.
"""
