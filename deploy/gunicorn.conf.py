"""gunicorn settings shared by every service's web process (override with GUNICORN_* env)."""

import os

# On PostgreSQL threads overlap their waits on the database: 2 workers x 4 threads. On SQLite a
# request holds the one write lock while it runs and its process's other threads take the
# interpreter from it meanwhile: there, processes of one thread each do better (WEB_THREADS=1,
# WEB_CONCURRENCY twice the CPUs). `make bench` measured both (see the README).
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
keepalive = 5
# Each request is logged by the app itself, as JSON with its correlation id.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Several services' servers share a host; a shared default control socket path would collide.
control_socket_disable = True


def child_exit(server, worker):
    """Drop a dead worker's metric files when Prometheus runs in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_starting(server):
    """With REDVEST_METRICS_DIR set, give this server's workers one shared metrics directory."""
    base = os.environ.get("REDVEST_METRICS_DIR")
    if not base:
        return
    import shutil

    port = str(server.cfg.bind[0]).rsplit(":", 1)[-1]
    directory = os.path.join(base, port)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
