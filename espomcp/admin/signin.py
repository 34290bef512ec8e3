"""Sign-in and sign-out of the admin console (authorization code + PKCE at the OAuth issuer).

``/admin/login`` starts a login session (state, PKCE verifier, where to return) and sends the
browser to the issuer; ``/admin/callback`` checks the response, redeems the code and validates
the access token with the MCP endpoint's own authenticator. Only tokens with ``espocrm:admin``
get a session (a fresh id: no fixation); others see a 403 page. The token itself is dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Response, g, make_response, redirect, request, url_for

from espomcp.admin.oauth import OAuthError
from espomcp.admin.sessions import COOKIE_NAME, LOGIN_TTL
from espomcp.admin.web import bp, console, error_page, new_csrf, render, safe_next, services
from espomcp.auth.bearer import BearerError
from espomcp.auth.principal import Principal
from espomcp.auth.scopes import ADMIN_SCOPE

log = logging.getLogger("espomcp.admin")
DEFAULT_TTL = 3600


def _with_cookie(response: Response, session_id: str | None, ttl: int = 0) -> Response:
    state = console()
    if session_id is None:
        response.delete_cookie(COOKIE_NAME, path="/admin", secure=state.secure_cookie,
                               httponly=True, samesite="Lax")
    else:
        response.set_cookie(COOKIE_NAME, state.sessions.sign(session_id), max_age=ttl,
                            path="/admin", secure=state.secure_cookie, httponly=True,
                            samesite="Lax")
    return response


@bp.get("/login")
def login() -> Any:
    if g.admin is not None:
        return redirect(safe_next(request.args.get("next")))
    state = console()
    try:
        start = state.oauth.begin()
    except OAuthError as exc:
        return error_page(502, "Sign-in service unavailable", exc.message)
    state.sessions.delete(g.admin_session_id)
    session_id = state.sessions.create(
        {"kind": "login", "state": start.state, "verifier": start.verifier,
         "next": safe_next(request.args.get("next"))}, LOGIN_TTL)
    return _with_cookie(redirect(start.url), session_id, LOGIN_TTL)


@bp.get("/callback")
def callback() -> Any:
    state = console()
    pending = state.sessions.load(g.admin_session_id)
    if not pending or pending.get("kind") != "login":
        return error_page(400, "Sign-in expired",
                          "This sign-in response does not match a sign-in started in this "
                          "browser (or it took longer than 10 minutes). Start again, at "
                          f"{services().settings.public_url}/admin: sign-in returns there, so "
                          "it fails when started at another address (e.g. localhost instead "
                          "of 127.0.0.1).")
    state.sessions.delete(g.admin_session_id)  # one use only
    try:
        code = state.oauth.check_callback(request.args.to_dict(), pending["state"])
        token = state.oauth.exchange(code, pending["verifier"])
    except OAuthError as exc:
        return _with_cookie(error_page(400, "Sign-in failed", exc.message), None)
    try:
        who = services().authenticator.authenticate("Bearer " + token)
    except BearerError as exc:
        log.warning("admin sign-in token rejected: %s", exc.error or "no credentials")
        return _with_cookie(error_page(401, "Sign-in failed",
                                       "The issued access token was not accepted: "
                                       f"{exc.description or exc.error}"), None)
    if ADMIN_SCOPE not in who.scopes:
        log.info("admin console refused for %s: no %s scope", who.sub, ADMIN_SCOPE)
        _audit(who, "deny", f"{ADMIN_SCOPE} scope missing")
        html, status = render("admin/forbidden.html", 403, who=who.email or who.sub,
                              scope=ADMIN_SCOPE)
        return _with_cookie(make_response(html, status), None)
    exp = int(who.claims.get("exp") or time.time() + DEFAULT_TTL)
    ttl = max(60, exp - int(time.time()))
    data = {"kind": "admin", "sub": who.sub, "email": who.email, "client_id": who.client_id,
            "name": who.claims.get("name") or who.email or who.sub,
            "scopes": sorted(who.scopes), "exp": exp, "csrf": new_csrf(), "cursors": {}}
    session_id = state.sessions.create(data, ttl)
    log.info("admin console sign-in: %s", who.sub)
    _audit(who, "allow", "")
    return _with_cookie(redirect(pending.get("next") or url_for("admin.home")), session_id, ttl)


@bp.post("/logout")
def logout() -> Any:
    console().sessions.delete(g.admin_session_id)
    return _with_cookie(redirect(url_for("admin.signed_out"), code=303), None)


@bp.get("/signed-out")
def signed_out() -> Any:
    html, status = render("admin/signed_out.html", admin=None)
    return html, status


def _audit(who: Principal, decision: str, reason: str) -> None:
    audit = services().audit
    if audit is not None:
        audit.record(who, {"tool": "admin.sign_in", "decision": decision, "layer": "admin",
                           "reason": reason or None})
