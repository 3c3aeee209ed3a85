"""The local stack: an embedded Redis, every process of every service, the demo community.

Used by ``make run``, ``make demo``, ``make bench`` and the end-to-end tests; production runs
each process from ``deploy/Procfile`` as its own container command instead.
"""
