"""A fake OpenFGA server (REST API of openfga.md §10) backed by the embedded engine.

Shaped like a moto service: ``models.py`` (state), ``responses.py`` (HTTP in/out), ``urls.py``
(routes), ``exceptions.py`` (OpenFGA's error codes). Run in-process with
``ServerThread(create_app()).start()`` or on a port with ``python -m fakes.openfga --port N``.

Test knobs: ``POST /_fake/fault {"mode": "down"|"slow"|"ok", "delay": seconds}`` and
``POST /_fake/reset`` (or ``app.extensions["fake_openfga"].reset()``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from espomcp.fga.errors import FgaError
from fakes.openfga.exceptions import OpenFgaError, UndefinedEndpoint
from fakes.openfga.models import FakeOpenFga
from fakes.openfga.responses import OpenFgaResponses
from fakes.openfga.urls import ROUTES

__all__ = ["FakeOpenFga", "create_app"]


def create_app(state: FakeOpenFga | None = None, **options: Any) -> Flask:
    """The fake server as a WSGI app; ``options`` go to :class:`FakeOpenFga` (require_auth,
    client_id, client_secret, api_token, audience, token_ttl)."""
    state = state or FakeOpenFga(**options)
    handlers = OpenFgaResponses(state)
    app = Flask("fake_openfga")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["fake_openfga"] = state
    app.before_request(handlers.before)
    for rule, methods, name in ROUTES:
        app.add_url_rule(rule, endpoint=f"{name}:{methods[0]}", view_func=getattr(handlers, name),
                         methods=methods)

    @app.errorhandler(OpenFgaError)
    def _fga_error(exc: OpenFgaError) -> Response:
        return OpenFgaResponses.error(exc)

    @app.errorhandler(FgaError)
    def _engine_error(exc: FgaError) -> Response:
        return OpenFgaResponses.engine_error(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return OpenFgaResponses.error(UndefinedEndpoint(exc.description or "Not Found",
                                                        status=exc.code or 404))

    return app
