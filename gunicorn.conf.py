"""Production gunicorn settings for espomcp: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Defaults suit one host behind a TLS-terminating reverse proxy (docs/operations.md); override
with environment variables: ``GUNICORN_BIND`` (default 127.0.0.1:8000), ``GUNICORN_WORKERS``
(default 2 x CPU cores + 1, at most 8), ``GUNICORN_THREADS`` (4), ``GUNICORN_TIMEOUT`` (60 s),
``GUNICORN_GRACEFUL_TIMEOUT`` (30 s), ``GUNICORN_LOG_LEVEL`` (info), ``FORWARDED_ALLOW_IPS``
(proxies trusted for X-Forwarded-Proto; default loopback). The app's own ProxyFix is set with
``ESPOMCP_TRUSTED_PROXIES``.

Prometheus: every worker writes its metrics to ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary
directory unless set), ``/metrics`` sums them, and ``child_exit`` marks a dead worker's gauges
dead. Do not enable ``preload_app``: the directory is prepared in ``on_starting``, before the
workers load the app. Each worker's outbox drainer is stopped on exit.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger

MAX_WORKERS = 8


def default_workers(cores: int | None = None) -> int:
    """2 x cores + 1, capped at MAX_WORKERS (each worker holds its own CRM and FGA clients)."""
    cores = cores or multiprocessing.cpu_count()
    return max(1, min(2 * cores + 1, MAX_WORKERS))


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS") or default_workers())
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 60)  # > ESPOMCP_REQUEST_TIMEOUT_SECONDS
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)
keepalive = 5
# Recycling a worker costs ~0.6 s of CPU (imports, app, FGA index) plus cold caches (JWKS,
# identities): at 2,000 requests that was ~0.3 ms per request, a fifth of a tool call's CPU
# (bench/README.md). 20,000 keeps a bound on slow leaks at a tenth of the cost.
max_requests = 20000
max_requests_jitter = 2000
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
preload_app = False


class JsonAccessLogger(Logger):
    """Access log lines as JSON objects (no query strings: they are never needed and may hold
    data a client should not have put there)."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        status = str(atoms.get("s", ""))
        line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "access": True, "remote": atoms.get("h"), "method": atoms.get("m"),
                "path": atoms.get("U"), "status": int(status) if status.isdigit() else status,
                "bytes": atoms.get("B"), "duration_ms": round(request_time.total_seconds() * 1000, 2),
                "user_agent": atoms.get("a"), "pid": os.getpid()}
        self.access_log.info(json.dumps(line))


logger_class = JsonAccessLogger


def on_starting(server: Any) -> None:
    """Prepare the shared metrics directory before any worker starts (workers inherit it)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):  # counters of a previous run must not add up
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))
    else:
        directory = tempfile.mkdtemp(prefix="espomcp-prometheus-")
        os.environ["ESPOMCP_PROMETHEUS_DIR_CREATED"] = directory
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def child_exit(server: Any, worker: Any) -> None:
    """A worker died or was recycled: its live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Take what the worker loaded at start-up (modules, app, FGA index) out of the cyclic
    garbage collector's scans: one full collection of that heap paused a worker ~80 ms every
    few thousand requests (bench/README.md). Those objects live as long as the worker."""
    import gc

    gc.freeze()


def _stop_drainer(app: Any) -> None:
    svc = getattr(app, "extensions", {}).get("espomcp") if app is not None else None
    outbox = svc.extras.get("outbox") if svc is not None else None
    if outbox is not None:
        outbox.stop_drainer()


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's outbox drainer thread; queued changes stay on disk."""
    _stop_drainer(getattr(worker, "wsgi", None))


def on_exit(server: Any) -> None:
    """Master exit: stop a preloaded app's drainer; remove the metrics directory created here."""
    _stop_drainer(getattr(getattr(server, "app", None), "callable", None))
    created = os.environ.get("ESPOMCP_PROMETHEUS_DIR_CREATED")
    if created:
        shutil.rmtree(created, ignore_errors=True)
