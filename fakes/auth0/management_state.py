"""State of the fake Auth0 Management API (see ``management.py`` for the routes): resource
servers, tenant settings, roles and their permissions, connections, the management clients, and
errors in Auth0's shape (``statusCode``, ``error``, ``message``, ``errorCode``)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from fakes.auth0.models import Auth0Backend

MANAGEMENT_CLIENT_ID = "espomcp-provisioner"
MANAGEMENT_CLIENT_SECRET = "provisioner-secret"
READONLY_CLIENT_ID = "readonly-provisioner"
READONLY_CLIENT_SECRET = "readonly-secret"
ALL_MANAGEMENT_SCOPES = tuple(f"{verb}:{what}" for what in ("resource_servers", "tenant_settings",
                                                            "roles", "connections")
                              for verb in ("read", "create", "update", "delete"))
READ_SCOPES = tuple(s for s in ALL_MANAGEMENT_SCOPES if s.startswith("read:"))
RS_FIELDS = {"name", "identifier", "scopes", "signing_alg", "signing_secret", "allow_offline_access",
             "token_lifetime", "token_lifetime_for_web", "token_dialect",
             "skip_consent_for_verifiable_first_party_clients", "enforce_policies",
             "consent_policy", "authorization_details", "proof_of_possession",
             "subject_type_authorization", "token_encryption"}
DIALECTS = ("access_token", "access_token_authz", "rfc9068_profile", "rfc9068_profile_authz")
TENANT_FIELDS = {"friendly_name", "picture_url", "support_email", "support_url", "flags",
                 "default_audience", "default_directory", "resource_parameter_profile",
                 "authorization_response_iss_parameter_supported", "session_lifetime",
                 "idle_session_lifetime", "enabled_locales", "allowed_logout_urls"}
CONNECTION_PATCH_FIELDS = {"display_name", "options", "enabled_clients", "is_domain_connection",
                           "show_as_button", "realms", "metadata"}


class ManagementError(Exception):
    """An error answered in the Management API's shape."""

    def __init__(self, status: int, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code

    def body(self) -> dict[str, Any]:
        names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                 409: "Conflict"}
        body: dict[str, Any] = {"statusCode": self.status, "error": names.get(self.status, "Error"),
                                "message": self.message}
        if self.error_code:
            body["errorCode"] = self.error_code
        if self.status == 401:
            body["attributes"] = {"error": self.message}
        return body


def _rand(prefix: str, n: int = 16) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


class ManagementState:
    """Resource servers, tenant settings, roles, role permissions and connections of the tenant."""

    def __init__(self, backend: Auth0Backend) -> None:
        self.backend = backend
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clients = {MANAGEMENT_CLIENT_ID: (MANAGEMENT_CLIENT_SECRET, ALL_MANAGEMENT_SCOPES),
                            READONLY_CLIENT_ID: (READONLY_CLIENT_SECRET, READ_SCOPES)}
            self.system_id = secrets.token_hex(12)
            self.resource_servers: dict[str, dict[str, Any]] = {}
            self.tenant: dict[str, Any] = {
                "friendly_name": "Fake tenant", "picture_url": "", "support_email": "",
                "support_url": "", "default_audience": "", "default_directory": "",
                "enabled_locales": ["en"], "session_lifetime": 168, "idle_session_lifetime": 72,
                "flags": {"enable_dynamic_client_registration": False, "enable_sso": True,
                          "revoke_refresh_token_grant": False, "disable_clickjack_protection_headers": False},
                "resource_parameter_profile": "audience",
                "authorization_response_iss_parameter_supported": False,
                "sandbox_version": "22",
            }
            self.roles: dict[str, dict[str, Any]] = {}
            self.role_permissions: dict[str, list[tuple[str, str]]] = {}
            self.connections = [{
                "id": _rand("con_"), "name": "Username-Password-Authentication",
                "display_name": "Username-Password-Authentication", "strategy": "auth0",
                "is_domain_connection": False, "enabled_clients": [], "realms":
                ["Username-Password-Authentication"], "options": {"brute_force_protection": True},
            }]
            self.writes: list[tuple[str, str]] = []

    @property
    def audience(self) -> str:
        return self.backend.issuer + "api/v2/"

    # --- tokens ---------------------------------------------------------------------------
    def token(self, form: dict[str, str]) -> dict[str, Any]:
        client_id = form.get("client_id", "")
        known = self.clients.get(client_id)
        if known is None:
            if client_id in self.backend.clients:
                raise OAuthDenied(403, f'Client is not authorized to access "{self.audience}". '
                                  'You need to create a "client-grant" associated to this API.')
            raise OAuthDenied(401, "Unauthorized")
        if not secrets.compare_digest(known[0], form.get("client_secret", "")):
            raise OAuthDenied(401, "Unauthorized")
        now = int(time.time())
        claims = {"iss": self.backend.issuer, "sub": f"{client_id}@clients", "aud": self.audience,
                  "iat": now, "exp": now + 86400, "azp": client_id, "gty": "client-credentials",
                  "scope": " ".join(known[1])}
        return {"access_token": self.backend.sign(claims), "token_type": "Bearer",
                "expires_in": 86400, "scope": " ".join(known[1])}

    def authorize(self, header: str, scope: str) -> None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ManagementError(401, "Missing authentication")
        try:
            claims = self.backend.verify(token.strip())
        except ValueError:
            raise ManagementError(401, "Invalid token") from None
        if claims.get("aud") != self.audience:
            raise ManagementError(401, "Bad audience: " + str(claims.get("aud")))
        if scope not in str(claims.get("scope", "")).split():
            raise ManagementError(403, f"Insufficient scope, expected any of: {scope}",
                                  "insufficient_scope")

    # --- resource servers -----------------------------------------------------------------
    def system_rs(self) -> dict[str, Any]:
        """The tenant's own Management API (its identifier follows the issuer)."""
        return {"id": self.system_id, "name": "Auth0 Management API", "identifier": self.audience,
                "is_system": True, "scopes": [], "signing_alg": "RS256",
                "allow_offline_access": False, "token_lifetime": 86400,
                "skip_consent_for_verifiable_first_party_clients": False}

    def all_rs(self) -> list[dict[str, Any]]:
        return [self.system_rs(), *self.resource_servers.values()]

    def find_rs(self, key: str) -> dict[str, Any]:
        if key in (self.system_id, self.audience):
            return self.system_rs()
        rs = self.resource_servers.get(key) or next(
            (r for r in self.resource_servers.values() if r["identifier"] == key), None)
        if rs is None:
            raise ManagementError(404, "The resource server does not exist",
                                  "inexistent_resource_server")
        return rs

    def create_rs(self, body: dict[str, Any]) -> dict[str, Any]:
        no_extra(body, RS_FIELDS)
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not identifier:
            raise ManagementError(400, "Payload validation error: 'Missing required property: "
                                  "identifier'.", "invalid_body")
        if any(r["identifier"] == identifier for r in self.all_rs()):
            raise ManagementError(409, "A resource server with the same identifier already exists",
                                  "resource_server_conflict")
        rs = {"id": secrets.token_hex(12), "name": identifier, "identifier": identifier,
              "is_system": False, "scopes": [], "signing_alg": "RS256",
              "allow_offline_access": False, "token_lifetime": 86400, "token_lifetime_for_web": 7200,
              "skip_consent_for_verifiable_first_party_clients": False, "enforce_policies": False,
              "token_dialect": "access_token"}
        self._update_rs(rs, body)
        self.resource_servers[rs["id"]] = rs
        return rs

    def patch_rs(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        rs = self.find_rs(key)
        no_extra(body, RS_FIELDS - {"identifier"})
        if rs.get("is_system"):
            raise ManagementError(400, "You cannot update system resource servers",
                                  "operation_not_supported")
        self._update_rs(rs, body)
        return rs

    @staticmethod
    def _update_rs(rs: dict[str, Any], body: dict[str, Any]) -> None:
        candidate = {**rs, **body}
        scopes = candidate.get("scopes")
        if not isinstance(scopes, list) or not all(
                isinstance(s, dict) and isinstance(s.get("value"), str) and s["value"]
                and set(s) <= {"value", "description"} for s in scopes):
            raise ManagementError(400, "Payload validation error: 'Expected type array of "
                                  "{value, description}' on property scopes.", "invalid_body")
        if candidate.get("signing_alg") not in ("HS256", "RS256", "PS256"):
            raise ManagementError(400, "Payload validation error: 'Invalid value' on property "
                                  "signing_alg.", "invalid_body")
        if candidate.get("token_dialect") not in DIALECTS:
            raise ManagementError(400, "Payload validation error: 'Invalid value' on property "
                                  "token_dialect.", "invalid_body")
        if str(candidate["token_dialect"]).endswith("_authz") and not candidate.get("enforce_policies"):
            raise ManagementError(400, "Token dialect with authorization claims requires RBAC "
                                  "(enforce_policies) to be enabled", "invalid_body")
        rs.update(body)

    # --- tenant ---------------------------------------------------------------------------
    def patch_tenant(self, body: dict[str, Any]) -> dict[str, Any]:
        no_extra(body, TENANT_FIELDS)
        profile = body.get("resource_parameter_profile", "audience")
        if profile not in ("audience", "compatibility"):
            raise ManagementError(400, "Payload validation error: 'No enum match for: "
                                  f"\"{profile}\"' on property resource_parameter_profile.",
                                  "invalid_body")
        flags = body.get("flags")
        if flags is not None and (not isinstance(flags, dict)
                                  or not all(isinstance(v, bool) for v in flags.values())):
            raise ManagementError(400, "Payload validation error: 'Expected type boolean' on "
                                  "property flags.", "invalid_body")
        for key, value in body.items():
            if key == "flags":
                self.tenant["flags"].update(value)
            else:
                self.tenant[key] = value
        return self.tenant

    # --- roles ----------------------------------------------------------------------------
    def find_role(self, role_id: str) -> dict[str, Any]:
        role = self.roles.get(role_id)
        if role is None:
            raise ManagementError(404, "The role does not exist.", "inexistent_role")
        return role

    def create_role(self, body: dict[str, Any]) -> dict[str, Any]:
        no_extra(body, {"name", "description"})
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ManagementError(400, "Payload validation error: 'Missing required property: "
                                  "name'.", "invalid_body")
        if any(r["name"] == name for r in self.roles.values()):
            raise ManagementError(409, "Role already exists", "role_already_exists")
        role = {"id": _rand("rol_"), "name": name, "description": body.get("description", "")}
        self.roles[role["id"]] = role
        self.role_permissions[role["id"]] = []
        return role

    def change_permissions(self, role_id: str, body: dict[str, Any], add: bool) -> None:
        self.find_role(role_id)
        no_extra(body, {"permissions"})
        items = body.get("permissions")
        if not isinstance(items, list) or not items:
            raise ManagementError(400, "Payload validation error: 'Array is too short (0), "
                                  "minimum 1' on property permissions.", "invalid_body")
        pairs = []
        for item in items:
            if not isinstance(item, dict) or set(item) != {"resource_server_identifier",
                                                           "permission_name"}:
                raise ManagementError(400, "Payload validation error: each permission needs "
                                      "resource_server_identifier and permission_name.",
                                      "invalid_body")
            pairs.append((item["resource_server_identifier"], item["permission_name"]))
        current = self.role_permissions[role_id]
        for identifier, name in pairs:
            if add:
                rs = next((r for r in self.resource_servers.values()
                           if r["identifier"] == identifier), None)
                if rs is None or name not in {s["value"] for s in rs.get("scopes", [])}:
                    raise ManagementError(400, f"Permission {name} does not exist in resource "
                                          f"server {identifier}", "invalid_body")
                if (identifier, name) not in current:
                    current.append((identifier, name))
            elif (identifier, name) in current:
                current.remove((identifier, name))

    def permissions_of(self, role_id: str) -> list[dict[str, str]]:
        self.find_role(role_id)
        out = []
        for identifier, name in self.role_permissions[role_id]:
            rs = next((r for r in self.resource_servers.values() if r["identifier"] == identifier), {})
            description = next((s.get("description", "") for s in rs.get("scopes", [])
                                if s["value"] == name), "")
            out.append({"resource_server_identifier": identifier, "permission_name": name,
                        "resource_server_name": rs.get("name", identifier), "description": description})
        return out

    # --- connections ----------------------------------------------------------------------
    def find_connection(self, connection_id: str) -> dict[str, Any]:
        found = next((c for c in self.connections if c["id"] == connection_id), None)
        if found is None:
            raise ManagementError(404, "The connection does not exist", "inexistent_connection")
        return found

    def patch_connection(self, connection_id: str, body: dict[str, Any]) -> dict[str, Any]:
        connection = self.find_connection(connection_id)
        no_extra(body, CONNECTION_PATCH_FIELDS)
        if "is_domain_connection" in body and not isinstance(body["is_domain_connection"], bool):
            raise ManagementError(400, "Payload validation error: 'Expected type boolean' on "
                                  "property is_domain_connection.", "invalid_body")
        connection.update(body)
        return connection


class OAuthDenied(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def no_extra(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ManagementError(400, f"Payload validation error: 'Additional properties not "
                              f"allowed: {', '.join(extra)}'.", "invalid_body")
