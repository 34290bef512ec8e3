"""HTTP in and out of the fake Auth0 tenant (the endpoints of mcp-authorization §5/§6)."""

from __future__ import annotations

import base64
import binascii
import html
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request

from fakes.auth0.exceptions import (
    Auth0Error,
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    ServiceUnavailable,
    UnsupportedGrantType,
    UnsupportedResponseType,
)
from fakes.auth0.management import init_app as init_management
from fakes.auth0.models import Auth0Backend

LOGIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Log in | Fake Auth0</title></head>
<body><main>
<h1>Log in</h1><p>to continue to {client}</p>{error}
<form method="post" action="{action}">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
 required></label>
<button type="submit">Continue</button>
</form>
<p>Demo users: alice, bob, carol, admin (password: demo).</p>
</main></body></html>
"""


def _cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def create_app(backend: Auth0Backend) -> Flask:
    """The tenant's WSGI app; ``backend`` holds all state."""
    app = Flask("fake-auth0")
    app.extensions["auth0"] = backend

    @app.errorhandler(Auth0Error)
    def _oauth_error(exc: Auth0Error) -> Any:
        return jsonify(exc.body()), exc.status

    @app.get("/.well-known/openid-configuration")
    def openid_configuration() -> Any:
        return _cors(jsonify(backend.metadata()))

    @app.get("/.well-known/oauth-authorization-server")
    def oauth_authorization_server() -> Any:
        if not backend.serve_oauth_metadata:
            return jsonify(error="not_found", error_description="Not found"), 404
        return _cors(jsonify(backend.metadata()))

    @app.get("/.well-known/jwks.json")
    def jwks() -> Any:
        backend.record("jwks", {})
        if backend.jwks_down:
            raise ServiceUnavailable("JWKS temporarily unavailable")
        return _cors(jsonify(backend.jwks()))

    @app.post("/oidc/register")
    def register() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        backend.record("register", body)
        return jsonify(backend.register_client(body)), 201

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        params = request.args.to_dict()
        backend.record("authorize", {**params, "method": request.method})
        client = backend.clients.get(params.get("client_id", ""))
        if client is None:
            raise InvalidRequest("Unknown client.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise InvalidRequest("The redirect_uri is not registered for this client.")
        try:
            if params.get("response_type") != "code":
                raise UnsupportedResponseType("Only response_type=code is supported.")
            username = request.form.get("username") if request.method == "POST" else None
            if username is None and backend.auto_login:
                username, password = backend.auto_login, backend.password
            elif username is not None:
                password = request.form.get("password", "")
            else:
                return _login_page(client.client_name or client.client_id, "")
            try:
                user = backend.login(username, password)
            except Auth0Error as exc:
                if request.method == "POST":
                    return _login_page(client.client_name or client.client_id,
                                       exc.description), 401
                raise
            code = backend.issue_code(client, user, params)
        except Auth0Error as exc:
            return _redirect(redirect_uri, {**exc.body(), "state": params.get("state")},
                             backend.issuer)
        return _redirect(redirect_uri, {"code": code, "state": params.get("state")},
                         backend.issuer)

    @app.post("/oauth/token")
    def token() -> Any:
        form = request.form.to_dict()
        if not form and request.is_json:
            form = {k: str(v) for k, v in (request.get_json(silent=True) or {}).items()}
        backend.record("token", form)
        client_id, secret = _client_credentials(form)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            answer = backend.exchange_code(backend.client(client_id, secret), form)
        elif grant_type == "refresh_token":
            answer = backend.refresh(backend.client(client_id, secret), form)
        elif grant_type == "client_credentials":
            answer = backend.client_credentials(
                backend.client(client_id, secret, require_secret=True), form)
        else:
            raise UnsupportedGrantType(f"Unsupported grant type: {grant_type}")
        response = jsonify(answer)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/oauth/revoke")
    def revoke() -> Any:
        form = request.form.to_dict()
        if not form and request.is_json:
            form = {k: str(v) for k, v in (request.get_json(silent=True) or {}).items()}
        backend.record("revoke", form)
        if not form.get("token"):
            raise InvalidRequest("Missing required parameter: token")
        client_id, secret = _client_credentials(form)
        backend.revoke(backend.client(client_id, secret), form["token"])
        return Response(status=200)

    @app.get("/userinfo")
    def userinfo() -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("Missing access token.")
        try:
            claims = backend.verify(token.strip())
        except ValueError:
            raise InvalidToken("Invalid access token.") from None
        return jsonify(backend.userinfo(claims["sub"]))

    init_management(app, backend)  # Management API v2 subset (espomcp init auth0)
    return app


def _client_credentials(form: dict[str, str]) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (binascii.Error, UnicodeError):
            raise InvalidClient("Malformed Basic credentials.") from None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def _login_page(client_name: str, error: str) -> Response:
    action = "/authorize?" + request.query_string.decode("ascii", "replace")
    message = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    body = LOGIN_PAGE.format(client=html.escape(client_name), error=message,
                             action=html.escape(action, quote=True))
    return Response(body, mimetype="text/html")


def _redirect(redirect_uri: str, params: dict[str, Any], issuer: str) -> Response:
    query = {k: v for k, v in params.items() if v is not None}
    query["iss"] = issuer  # RFC 9207
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(redirect_uri + separator + urlencode(query), code=302)
