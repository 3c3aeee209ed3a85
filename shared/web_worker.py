"""The web servers' gunicorn worker: gthread's, taking a new connection only while it has a free
thread (deploy/gunicorn.conf.py's ``worker_class``).

gthread's worker takes every connection that reaches it, up to ``worker_connections`` (1,000 by
default), whether or not its threads are busy, and keeps each kept-alive connection to itself.
Every worker waits on the one listening socket and the first to reach ``accept()`` wins, so a
burst of keep-alive connections mostly lands on one process, which then serves them on one core
while the others idle. A small ``worker_connections`` spreads them, but idle kept-alive
connections then fill a worker's slots and new connections wait up to the keep-alive for one.

Here a worker stops accepting while all its threads are taken (handling a request, or waiting
for a new connection's first bytes) and starts again as one frees: a connection that arrives
meanwhile goes to another worker, or waits in the kernel's queue when every thread of every
worker is busy. Connections kept alive and idle, and those waiting for their first bytes in the
poller, take no thread and do not stop it; ``worker_connections`` still caps them all.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class FreeThreadWorker(ThreadWorker):
    """gthread's worker, accepting only while one of its threads is free."""

    # gthread's loop accepts while ``nr_conns < worker_connections`` (and sets the attribute
    # from the configuration once, at start): here the bound counts the connections that take
    # no thread (kept alive and idle, or waiting in the poller) plus one per thread.
    @property
    def worker_connections(self) -> int:
        idle = len(self.keepalived_conns) + len(self.pending_conns)
        return min(self._configured_connections, idle + self.cfg.threads)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._configured_connections = value
