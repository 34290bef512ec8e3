"""The admin blueprint's shell: sign-in gate, CSRF, security headers, error pages, helpers.

Every ``/admin`` page needs a signed-in admin (a session made from an access token carrying
``espocrm:admin``); every POST needs the session's CSRF token. Errors become HTML pages here,
in one place: bad input 400, FGA backend down 503, refused 403.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from espomcp.admin.directory import Directory
from espomcp.admin.oauth import AdminOAuthClient
from espomcp.admin.sessions import COOKIE_NAME, SessionStore
from espomcp.admin.tuples_query import InputError
from espomcp.auth.principal import Principal
from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.services import Services

bp = Blueprint("admin", __name__, url_prefix="/admin", static_folder="../static/admin",
               static_url_path="/static")
log = logging.getLogger("espomcp.admin")

PUBLIC_ENDPOINTS = {"admin.login", "admin.callback", "admin.static", "admin.signed_out"}
DEFAULT_PAGE_SIZE = 50
MAX_CURSOR_KEYS = 20
MAX_PAGES_REMEMBERED = 500  # per listing; beyond it the last remembered page is shown


@dataclass
class AdminConsole:
    """Per-app console state, kept in ``services.extras["admin"]``."""

    svc: Services
    sessions: SessionStore
    oauth: AdminOAuthClient
    directory: Directory
    secure_cookie: bool
    #: short-lived ListObjects results for the visibility pages; cleared on every console write
    listings: dict[tuple[str, str, str], tuple[float, list[str]]] = field(default_factory=dict)


def console() -> AdminConsole:
    return current_app.extensions["espomcp"].extras["admin"]


def services() -> Services:
    return current_app.extensions["espomcp"]


# --- the gate ---------------------------------------------------------------------------
@bp.before_request
def _gate() -> Response | None:
    g.admin_session_id = console().sessions.unsign(request.cookies.get(COOKIE_NAME))
    data = console().sessions.load(g.admin_session_id)
    g.admin = data if data and data.get("kind") == "admin" and data.get("exp", 0) > time.time() \
        else None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.admin is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        return error_page(401, "Signed out", "Your session has ended; sign in again.")
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, g.admin.get("csrf", "")):
            return error_page(400, "Form expired",
                              "The form's security token is missing or does not match your "
                              "session (CSRF protection). Reload the page and try again.")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "admin.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def csrf_field() -> Any:
    from markupsafe import Markup, escape

    token = g.admin.get("csrf", "") if g.get("admin") else ""
    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(token)}">')


# --- helpers for views ------------------------------------------------------------------
def principal() -> Principal:
    """The signed-in admin as a Principal (for audit records)."""
    data = g.admin
    return Principal(sub=data["sub"], scopes=frozenset(data.get("scopes", [])),
                     email=data.get("email"), client_id=data.get("client_id"),
                     claims={"admin_console": True})


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("admin", g.get("admin"))
    context.setdefault("flashes", pop_flashes())
    context.setdefault("backend_name", getattr(services().fga, "name", "none"))
    return render_template(template, **context), status


def error_page(status: int, title: str, message: str) -> Response:
    html, _ = render("admin/error.html", status, title=title, message=message)
    return Response(html, status=status, mimetype="text/html")


def save_session() -> None:
    if g.get("admin") is not None and g.get("admin_session_id"):
        console().sessions.update(g.admin_session_id, g.admin)


def flash(kind: str, message: str) -> None:
    if g.get("admin") is not None:
        g.admin.setdefault("flashes", []).append([kind, message])
        save_session()


def pop_flashes() -> list[list[str]]:
    if g.get("admin") is None or not g.admin.get("flashes"):
        return []
    flashes = g.admin.pop("flashes")
    save_session()
    return flashes


def page_size() -> int:
    raw = request.args.get("size", "")
    return max(10, min(200, int(raw))) if raw.isdigit() else DEFAULT_PAGE_SIZE


def page_number() -> int:
    raw = request.args.get("page", "1")
    return max(1, min(100_000, int(raw))) if raw.isdigit() else 1


def cursor_for(key: str, page: int) -> tuple[int, str]:
    """The backend cursor of ``page`` of the listing ``key`` (remembered in the session as the
    admin pages forward); an unknown page falls back to the furthest known one."""
    cursors = g.admin.setdefault("cursors", {}).get(key, [""])
    page = min(page, len(cursors))
    return page, cursors[page - 1]


def remember_cursor(key: str, page: int, next_cursor: str) -> None:
    all_cursors: dict[str, list[str]] = g.admin.setdefault("cursors", {})
    cursors = all_cursors.pop(key, [""])[:page]
    if next_cursor and len(cursors) < MAX_PAGES_REMEMBERED:
        cursors.append(next_cursor)
    all_cursors[key] = cursors
    while len(all_cursors) > MAX_CURSOR_KEYS:
        all_cursors.pop(next(iter(all_cursors)))
    save_session()


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def safe_next(target: str | None) -> str:
    """Only local admin paths are followed after sign-in (no open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target:
        return target
    return url_for("admin.home")


def login_url() -> str:
    return url_for("admin.login") + "?next=" + quote(request.full_path.rstrip("?"), safe="/")


# --- errors -----------------------------------------------------------------------------
@bp.errorhandler(InputError)
def _input_error(exc: InputError) -> Response:
    return error_page(400, "Check your input", str(exc))


@bp.errorhandler(FgaError)
def _fga_error(exc: FgaError) -> Response:
    return error_page(400, "The authorization model refused this", exc.message)


@bp.errorhandler(FgaUnavailable)
def _fga_down(exc: FgaUnavailable) -> Response:
    log.warning("FGA backend unavailable in the admin console: %s", exc)
    return error_page(503, "Authorization backend unavailable",
                      "The FGA backend did not answer; nothing was changed. Check /readyz "
                      "and try again.")


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    return error_page(exc.code or 500, exc.name, exc.description or "")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    incident = secrets.token_hex(6)
    log.exception("admin console error (incident %s) on %s", incident, request.path)
    return error_page(500, "Something went wrong",
                      f"The console hit an unexpected error (incident {incident}); the "
                      "operator can find details in the server log.")
