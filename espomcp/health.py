"""Liveness (``/healthz``) and readiness (``/readyz``: EspoCRM and the FGA backend reachable)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from espomcp import __version__

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> Any:
    svc = current_app.extensions["espomcp"]
    checks: dict[str, dict[str, Any]] = {}
    ready = True
    for name, check in svc.readiness.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a readiness probe must answer, whatever a check does
            ok, detail = False, f"check failed: {type(exc).__name__}"
        checks[name] = {"ok": ok, "detail": detail}
        ready = ready and ok
    return jsonify(status="ready" if ready else "not ready", checks=checks), (200 if ready else 503)
