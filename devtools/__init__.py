"""Developer tooling: the local runner and its supervisor, an embedded Redis, the demo community,
the checks behind ``make test``, the benchmark and the client that walks the thread.

Used by ``make run``, ``make demo``, ``make test``, ``make bench`` and the end-to-end tests; it is
in none of the services' images (``deploy/images/``), whose entrypoint runs each process of
``deploy/Procfile`` as its own container command.
"""
