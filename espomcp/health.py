"""Liveness (``/healthz``) and readiness (``/readyz``: EspoCRM and the FGA backend reachable).

``/readyz`` is public: per dependency it says ok or not and, in a few fixed words, why ("ok",
"FGA disabled (scope-only)", "depth N" for the outbox; "unreachable", "timeout", "HTTP 503",
"unavailable", "check failed" when failing). A probe's own detail (store path, OpenFGA store id,
URLs, exception text) never leaves the server: a change of a check's state is logged with it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, current_app, jsonify

from espomcp import __version__
from espomcp.fga.off import DETAIL as FGA_OFF_DETAIL

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

_TIMEOUT = re.compile(r"time ?out|timed out|time limit|too slow|did not answer within", re.IGNORECASE)
_HTTP_STATUS = re.compile(r"\bHTTP ([1-5]\d\d)\b")
_UNREACHABLE = re.compile(r"unreachable|connection|refused", re.IGNORECASE)
_DEPTH = re.compile(r"depth \d+")


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> Any:
    svc = current_app.extensions["espomcp"]
    checks: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = svc.extras.setdefault("readiness_seen", {})  # check -> failing reason
    ready = True
    for name, check in svc.readiness.items():
        try:
            ok, detail = check()
            public = public_detail(ok, detail)
        except Exception as exc:  # a readiness probe must answer, whatever a check does
            ok, detail, public = False, f"check failed: {type(exc).__name__}: {exc}", "check failed"
        _log_change(seen, name, ok, public, detail)
        checks[name] = {"ok": ok, "detail": public}
        ready = ready and ok
    return jsonify(status="ready" if ready else "not ready", checks=checks), (200 if ready else 503)


def public_detail(ok: bool, detail: str) -> str:
    """The few words /readyz shows for a probe's (ok, detail): nothing of the detail but a known
    state, an HTTP status or the outbox depth."""
    depth = _DEPTH.match(detail)
    if depth:
        return depth.group()
    if ok:
        return FGA_OFF_DETAIL if detail == FGA_OFF_DETAIL else "ok"
    if _TIMEOUT.search(detail):
        return "timeout"
    status = _HTTP_STATUS.search(detail)
    if status:
        return f"HTTP {status.group(1)}"
    return "unreachable" if _UNREACHABLE.search(detail) else "unavailable"


def _log_change(seen: dict[str, str], name: str, ok: bool, public: str, detail: str) -> None:
    """Log a check's full detail when it starts failing or fails differently, and its recovery
    (probes poll every few seconds; a changing outbox depth alone is no change)."""
    state = "" if ok else ("depth" if _DEPTH.match(public) else public)
    if seen.get(name, "") == state:
        return
    seen[name] = state
    if ok:
        log.info("readiness check %s ok again", name)
    else:
        log.warning("readiness check %s failing: %s", name, detail)
