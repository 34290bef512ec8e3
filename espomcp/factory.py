"""The Flask app factory: each subsystem registers itself with ``init_app``."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from espomcp import health
from espomcp.espocrm.client import EspoClient
from espomcp.logs import configure_logging
from espomcp.mcp import transport
from espomcp.mcp.registry import ToolRegistry
from espomcp.mcp.server import LEGACY_METHODS, MODERN_METHODS
from espomcp.metrics import Metrics
from espomcp.metrics import bp as metrics_bp
from espomcp.ratelimit import RateLimiter
from espomcp.services import Authenticator, Services
from espomcp.settings import ConfigError, Settings, load_settings

log = logging.getLogger("espomcp.request")


def create_app(settings: Settings | None = None, *,
               authenticator: Authenticator | None = None) -> Flask:
    """Build the application for ``settings`` (default: read from the environment)."""
    settings = settings or load_settings(needs_espocrm=True)
    configure_logging(settings.log_level)
    app = Flask("espomcp")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    registry = ToolRegistry()
    if authenticator is None:
        from espomcp.auth.resource_server import build_authenticator

        authenticator = build_authenticator(settings)
    svc = Services(settings=settings, registry=registry, authenticator=authenticator)
    app.extensions["espomcp"] = svc
    svc.crm = EspoClient.from_settings(settings)
    svc.readiness["espocrm"] = svc.crm.ping
    _init_identity(svc)
    _init_fga(svc)
    svc.metrics = Metrics()
    app.register_blueprint(metrics_bp)
    if settings.rate_limit_per_minute:
        svc.extras["rate_limiter"] = RateLimiter(settings.rate_limit_per_minute)

    from espomcp.tools import register_tools

    register_tools(svc)
    _require_model_relations(svc)
    transport.init_app(app, svc)
    from espomcp import sync

    sync.init_app(app, svc)
    app.register_blueprint(health.bp)
    from espomcp.auth import protected_resource

    app.register_blueprint(protected_resource.bp)
    from espomcp import admin

    admin.init_app(app, svc)
    _install_request_log(app)
    _install_error_handlers(app)
    if settings.trusted_proxies:  # X-Forwarded-* from exactly that many proxies
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n)  # type: ignore[method-assign]
    return app


def _init_fga(svc: Services) -> None:
    """The FGA backend and the durable outbox its writes fall back to."""
    from espomcp.fga.backend import build_backend
    from espomcp.sync.outbox import Outbox, TupleWriter

    svc.fga = build_backend(svc.settings)
    svc.readiness["fga"] = svc.fga.health
    outbox = Outbox.from_settings(svc.settings)
    svc.outbox = TupleWriter(outbox)
    svc.extras["outbox"] = outbox
    outbox.start_drainer(svc.fga)


def _init_identity(svc: Services) -> None:
    """Token-to-EspoCRM-user mapping (reads ``svc.crm`` lazily) and the audit log."""
    from espomcp.audit import AuditLog
    from espomcp.auth.identity import IdentityMapper

    svc.identity = IdentityMapper(svc)

    def user_id_of(principal: Any) -> str | None:
        cached = getattr(svc.identity, "cached_user_id", None)
        return cached(principal) if cached is not None else None

    svc.audit = AuditLog.from_settings(svc.settings, user_id_of=user_id_of)


def _require_model_relations(svc: Services) -> None:
    """Refuse to start when the model lacks a relation a tool needs (fail closed, loudly)."""
    from espomcp.fga.errors import FgaError, FgaUnavailable
    from espomcp.fga.requirements import missing_relations

    if not getattr(svc.fga, "enforcing", True):
        return
    try:
        model = svc.fga.model()
    except (FgaUnavailable, FgaError) as exc:
        log.error("cannot read the FGA model at start-up (%s); every decision is denied "
                  "until the backend answers", exc)
        return
    missing = missing_relations(model, svc.registry, svc.settings.entity_types)
    if missing:
        raise ConfigError("the FGA authorization model lacks relations the tools need: "
                          + ", ".join(missing) + " (fix fga/model.fga or "
                          "ESPOMCP_ENTITY_TYPES)")


def _install_request_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        ctx = g._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        req = request._get_current_object()  # type: ignore[attr-defined]
        started = getattr(ctx, "started", None)
        duration = round((time.perf_counter() - started) * 1000, 2) if started else None
        principal = getattr(ctx, "principal", None)
        mcp_method = getattr(ctx, "mcp_method", None)
        metrics = app.extensions["espomcp"].metrics
        rule = req.url_rule.rule if req.url_rule else "unmatched"
        metrics.child(metrics.requests, rule, str(response.status_code)).inc()
        if duration is not None:
            metrics.child(metrics.latency, _method_label(mcp_method)).observe(duration / 1000)
        if log.isEnabledFor(logging.INFO):
            log.info("request", extra={
                "method": req.method, "path": req.path, "status": response.status_code,
                "duration_ms": duration, "mcp_method": mcp_method,
                "tool": getattr(ctx, "tool", None), "outcome": getattr(ctx, "outcome", None),
                "sub": principal.sub if principal else None,
            })
        return response


def _method_label(method: Any) -> str:
    """A bounded metric label: the client chooses the method string, so unknown ones (and
    their unbounded variety) all count as ``other``."""
    if not method:
        return "-"
    return method if method in MODERN_METHODS or method in LEGACY_METHODS else "other"


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        response = jsonify(error=exc.name, message=exc.description)
        response.status_code = exc.code or 500
        if exc.code == 405 and request.path == "/mcp":
            response.headers["Allow"] = "POST"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s", request.path)
        return jsonify(error="Internal Server Error",
                       message="The server hit an unexpected error; see the server log."), 500
