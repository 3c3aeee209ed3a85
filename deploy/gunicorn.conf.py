"""gunicorn settings shared by every service's web process (override with GUNICORN_* env)."""

import os
import sys

from gunicorn import glogging

from shared.web_server import whole as _whole

# On PostgreSQL threads overlap their waits on the database: 2 workers x 4 threads. On SQLite a
# request holds the one write lock while it runs and its process's other threads take the
# interpreter from it meanwhile: there, processes of one thread each do better (WEB_THREADS=1,
# WEB_CONCURRENCY twice the CPUs). `make bench` measured both (see the README).
workers = _whole("WEB_CONCURRENCY", os.environ.get("WEB_CONCURRENCY", "2"))
threads = _whole("WEB_THREADS", os.environ.get("WEB_THREADS", "4"))
# gthread's worker, taking a new connection only while one of its threads is free: a burst of
# keep-alive connections is spread over the workers rather than held by the first to reach
# accept() while the others idle (shared/web_worker.py; `make bench` measured it, see the README).
worker_class = "shared.web_worker.FreeThreadWorker"
# The connections a worker holds at once, idle kept-alive ones included (gunicorn's 1,000).
worker_connections = _whole("WEB_CONNECTIONS", os.environ.get("WEB_CONNECTIONS", "1000"))
# A worker silent this long is killed and replaced.
timeout = 30
# On SIGTERM requests in flight get this long to finish; it stays under the 30 s an engine
# (compose's stop_grace_period, Kubernetes' default) and `make run` wait before they kill.
graceful_timeout = 25
keepalive = 5
# Workers' heartbeat files: on a container's overlay filesystem a write can stall long enough to
# get a busy worker killed; memory never does.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
# Each request is logged once, by the app itself (shared/service_app.py), as JSON with its
# correlation id, method, path, status and duration: no gunicorn access log on top.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's own lines (workers booting, signals, exits) reach the root logger, which
# on_starting gives the service's JSON renderer.
logconfig_dict = {"loggers": {"gunicorn.error": {"level": loglevel.upper(), "propagate": True}}}
# Several services' servers share a host; a shared default control socket path would collide.
control_socket_disable = True


class _Logger(glogging.Logger):
    """gunicorn's logger without its access log. A logging dictionary (above) turns that on
    whatever ``accesslog`` says, and each request would pay for the line's fields."""

    access_log_enabled = False

    def access(self, resp, req, environ, request_time):
        pass


logger_class = _Logger


def _service_of(server):
    """The Redvest service the server runs (``services.<name>.app:...``), or None."""
    uri = getattr(server.app, "app_uri", None) or ""
    parts = uri.split(":", 1)[0].split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "services" else None


def _log_as_the_service(server):
    """Read the service's settings as its app will; a server that cannot start says why."""
    service = _service_of(server)
    if service is None:
        return
    from shared.logs import configure_logging
    from shared.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(service)
    except SettingsError as error:
        # Otherwise every worker would fail to boot with a traceback, and gunicorn would exit 3.
        print(f"cannot start: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    configure_logging(settings)


def child_exit(server, worker):
    """Drop a dead worker's metric files when Prometheus runs in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_starting(server):
    """Check the settings, log as JSON; with REDVEST_METRICS_DIR, give this server's workers
    one shared metrics directory."""
    _log_as_the_service(server)
    base = os.environ.get("REDVEST_METRICS_DIR")
    if not base:
        return
    import shutil

    port = str(server.cfg.bind[0]).rsplit(":", 1)[-1]
    directory = os.path.join(base, port)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def on_reload(server):
    """A reload set gunicorn's logging up afresh: route it through the service's again."""
    _log_as_the_service(server)
