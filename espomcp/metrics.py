"""Prometheus metrics at ``/metrics``: requests, latencies, decisions by layer, outbox depth.

Under gunicorn set ``PROMETHEUS_MULTIPROC_DIR`` (gunicorn.conf.py does) so every worker's
counters are aggregated; otherwise each app has its own registry.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client import values as prom_values

from espomcp.forks import current_pid

if TYPE_CHECKING:
    from espomcp.services import Services

bp = Blueprint("metrics", __name__)
BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counters and histograms espomcp exports."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess and not getattr(prom_values.ValueClass, "_espomcp", False):
            # Each multiprocess value checks the pid on every update (a system call); ours is
            # the same pid, refreshed after fork (prometheus_client's process_identifier).
            prom_values.ValueClass = prom_values.MultiProcessValue(process_identifier=current_pid)
            prom_values.ValueClass._espomcp = True
        self.registry = CollectorRegistry(auto_describe=True)
        # Multiprocess values live in files read at scrape time; nothing to register then.
        kwargs: dict[str, Any] = {"registry": None if self.multiprocess else self.registry}
        self.requests = Counter("espomcp_http_requests_total", "HTTP requests",
                                ["path", "status"], **kwargs)
        self.latency = Histogram("espomcp_request_duration_seconds", "Request latency",
                                 ["mcp_method"], buckets=BUCKETS, **kwargs)
        self.decisions = Counter("espomcp_decisions_total", "Tool-call decisions by layer",
                                 ["decision", "layer"], **kwargs)
        self.tool_calls = Counter("espomcp_tool_calls_total", "Tool calls", ["tool", "outcome"],
                                  **kwargs)
        gauge_kwargs = dict(kwargs)
        if self.multiprocess:
            gauge_kwargs["multiprocess_mode"] = "livemostrecent"  # dead workers drop out (child_exit)
        self.outbox_depth = Gauge("espomcp_outbox_depth", "Tuple changes waiting to be retried",
                                  **gauge_kwargs)
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: ``labels`` validates and locks on every call
        (a fifth of the metrics cost of a request). Label values are bounded by the callers."""
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def render(self, svc: Services) -> bytes:
        outbox = svc.extras.get("outbox")
        if outbox is not None:
            self.outbox_depth.set(outbox.depth())
        if self.multiprocess:
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


@bp.get("/metrics")
def metrics() -> Response:
    svc = current_app.extensions["espomcp"]
    return Response(svc.metrics.render(svc), mimetype=CONTENT_TYPE_LATEST)
