"""The part of Auth0's Management API v2 that ``espomcp init auth0`` uses, with Auth0's shapes.

- Token: ``POST /oauth/token`` client credentials with ``audience = <issuer>api/v2/`` is answered
  here (a ``before_request`` hook in front of the tenant's token endpoint) for the management
  clients below; other clients asking for that audience get Auth0's 403 ``access_denied``.
- ``/api/v2/resource-servers`` (list, create, get by id or identifier, patch, delete),
  ``/api/v2/tenants/settings`` (get, patch: flags merge), ``/api/v2/roles`` (list with
  ``name_filter``, create, get, patch, delete) and ``/roles/{id}/permissions`` (list, add,
  remove), ``/api/v2/connections`` (list with ``name``/``strategy``, get, patch).
- Errors: ``{"statusCode", "error", "message", "errorCode"}``; 401 for a missing or invalid
  token, 403 ``insufficient_scope`` naming the scope, 404 ``inexistent_*``, 409 conflicts,
  400 ``invalid_body`` for payload validation.

State lives in ``management_state.ManagementState`` (``app.extensions["auth0_management"]``):
``writes`` logs every changing request (method, path) so tests can prove a second run changed
nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, request

from fakes.auth0.management_state import (
    ALL_MANAGEMENT_SCOPES,
    MANAGEMENT_CLIENT_ID,
    MANAGEMENT_CLIENT_SECRET,
    READONLY_CLIENT_ID,
    READONLY_CLIENT_SECRET,
    ManagementError,
    ManagementState,
    OAuthDenied,
    no_extra,
)
from fakes.auth0.models import Auth0Backend

__all__ = ["ALL_MANAGEMENT_SCOPES", "MANAGEMENT_CLIENT_ID", "MANAGEMENT_CLIENT_SECRET",
           "READONLY_CLIENT_ID", "READONLY_CLIENT_SECRET", "ManagementState", "init_app"]

def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ManagementError(400, "Payload validation error: 'Expected type object but found "
                              "type null'.", "invalid_body")
    return body


def _page(rows: list[Any]) -> list[Any]:
    try:
        per_page = int(request.args.get("per_page", 50))
        page = int(request.args.get("page", 0))
    except ValueError:
        raise ManagementError(400, "Query validation error: 'Expected type integer'.",
                              "invalid_query_string") from None
    if not 1 <= per_page <= 100 or page < 0:
        raise ManagementError(400, "Query validation error: per_page 1..100, page >= 0.",
                              "invalid_query_string")
    return rows[page * per_page:(page + 1) * per_page]


def init_app(app: Flask, backend: Auth0Backend) -> ManagementState:
    """Mount the Management API on the fake tenant's app (additive: one hook, one blueprint)."""
    state = ManagementState(backend)
    app.extensions["auth0_management"] = state
    bp = Blueprint("auth0_management", __name__, url_prefix="/api/v2")
    scope_by_method = {"GET": "read", "POST": "create", "PATCH": "update", "DELETE": "delete"}

    @app.before_request
    def _management_token() -> Any:
        if request.path != "/oauth/token" or request.method != "POST":
            return None
        form = request.form.to_dict() or {k: str(v) for k, v in
                                          (request.get_json(silent=True) or {}).items()}
        if form.get("audience") != state.audience or form.get("grant_type") != "client_credentials":
            return None
        backend.record("token", form)
        try:
            answer = state.token(form)
        except OAuthDenied as exc:
            return jsonify(error="access_denied", error_description=exc.description), exc.status
        return jsonify(answer)

    @bp.before_request
    def _authorize() -> None:
        area = request.path.split("/")[3]  # /api/v2/<area>/...
        what = {"resource-servers": "resource_servers", "tenants": "tenant_settings",
                "roles": "roles", "connections": "connections"}.get(area, area)
        verb = scope_by_method.get(request.method, "read")
        if what == "roles" and request.path.endswith("/permissions") and request.method != "GET":
            verb = "update"
        state.authorize(request.headers.get("Authorization", ""), f"{verb}:{what}")
        if request.method != "GET":
            with state.lock:
                state.writes.append((request.method, request.path))

    @bp.errorhandler(ManagementError)
    def _error(exc: ManagementError) -> Any:
        return jsonify(exc.body()), exc.status

    @bp.get("/resource-servers")
    def list_rs() -> Any:
        with state.lock:
            return jsonify(_page(state.all_rs()))

    @bp.post("/resource-servers")
    def create_rs() -> Any:
        with state.lock:
            return jsonify(state.create_rs(_body())), 201

    @bp.route("/resource-servers/<path:key>", methods=["GET", "PATCH", "DELETE"])
    def one_rs(key: str) -> Any:
        with state.lock:
            if request.method == "GET":
                return jsonify(state.find_rs(key))
            if request.method == "PATCH":
                return jsonify(state.patch_rs(key, _body()))
            rs = state.find_rs(key)
            if rs.get("is_system"):
                raise ManagementError(400, "You cannot delete system resource servers",
                                      "operation_not_supported")
            del state.resource_servers[rs["id"]]
            return "", 204

    @bp.route("/tenants/settings", methods=["GET", "PATCH"])
    def tenant() -> Any:
        with state.lock:
            if request.method == "PATCH":
                return jsonify(state.patch_tenant(_body()))
            return jsonify(state.tenant)

    @bp.route("/roles", methods=["GET", "POST"])
    def roles() -> Any:
        with state.lock:
            if request.method == "POST":
                return jsonify(state.create_role(_body()))
            name = request.args.get("name_filter", "").lower()
            rows = [r for r in state.roles.values() if name in r["name"].lower()]
            return jsonify(_page(rows))

    @bp.route("/roles/<role_id>", methods=["GET", "PATCH", "DELETE"])
    def role(role_id: str) -> Any:
        with state.lock:
            found = state.find_role(role_id)
            if request.method == "PATCH":
                body = _body()
                no_extra(body, {"name", "description"})
                found.update(body)
            elif request.method == "DELETE":
                del state.roles[role_id]
                state.role_permissions.pop(role_id, None)
                return "", 204
            return jsonify(found)

    @bp.route("/roles/<role_id>/permissions", methods=["GET", "POST", "DELETE"])
    def role_permissions(role_id: str) -> Any:
        with state.lock:
            if request.method == "GET":
                return jsonify(_page(state.permissions_of(role_id)))
            state.change_permissions(role_id, _body(), add=request.method == "POST")
            return ("", 201) if request.method == "POST" else ("", 204)

    @bp.get("/connections")
    def connections() -> Any:
        with state.lock:
            rows = [c for c in state.connections
                    if request.args.get("name") in (None, c["name"])
                    and request.args.get("strategy") in (None, c["strategy"])]
            return jsonify(_page(rows))

    @bp.route("/connections/<connection_id>", methods=["GET", "PATCH"])
    def connection(connection_id: str) -> Any:
        with state.lock:
            if request.method == "PATCH":
                return jsonify(state.patch_connection(connection_id, _body()))
            return jsonify(state.find_connection(connection_id))

    app.register_blueprint(bp)
    return state
