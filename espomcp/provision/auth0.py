"""``espomcp init auth0``: make an Auth0 tenant ready for espomcp through the Management API v2.

Desired state (mcp-authorization reference §5), created or updated idempotently:

- the API (resource server) ``identifier = settings.mcp_url``, RS256, every ``espocrm:*`` scope
  with its description, RBAC on with permissions in the access token (``enforce_policies``,
  ``token_dialect: access_token_authz``), refresh tokens allowed (``allow_offline_access``);
  scopes an operator added by hand are kept;
- tenant settings MCP clients need: dynamic client registration
  (``flags.enable_dynamic_client_registration``), the Resource Parameter Compatibility Profile
  (``resource_parameter_profile: "compatibility"``), the RFC 9207 ``iss`` in authorization
  responses (``authorization_response_iss_parameter_supported``) and, only when asked, the
  tenant's ``default_audience``;
- the login connection promoted to domain level (``is_domain_connection``), so that clients
  registered dynamically (third-party) can use it;
- optionally (``roles=True``) roles bundling scopes: sales rep, manager, support, admin.

The Management API token comes from the client-credentials grant with audience
``https://DOMAIN/api/v2/``. ``apply(..., dry_run=True)`` reads only and reports what it would do.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from espomcp.auth.scopes import ALL_SCOPES, DESCRIPTIONS
from espomcp.provision.report import PlanItem, ProvisionError

API_NAME = "espomcp (EspoCRM MCP)"
DEFAULT_CONNECTION = "Username-Password-Authentication"
#: what the Management API client must be granted (Auth0 dashboard → APIs → Auth0 Management API)
MANAGEMENT_SCOPES = ("read:resource_servers", "create:resource_servers", "update:resource_servers",
                     "read:tenant_settings", "update:tenant_settings", "read:connections",
                     "update:connections", "read:roles", "create:roles", "update:roles")


def _scopes(areas: Iterable[str], actions: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"espocrm:{area}:{action}" for area in areas for action in actions)


_SALES = ("contacts", "accounts", "leads", "opportunities", "meetings", "calls", "tasks", "notes")
_SUPPORT = ("cases", "tasks", "calls", "meetings", "notes")
_DIRECTORY = ("espocrm:users:read", "espocrm:teams:read")
#: role name → (description, scopes); the same bundles as the demo personas
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "espomcp sales rep": ("Sales rep: reads and edits sales records",
                          _scopes(_SALES, ("read", "write")) + _DIRECTORY),
    "espomcp manager": ("Sales manager: also deletes sales records",
                        _scopes(_SALES, ("read", "write", "delete")) + _DIRECTORY),
    "espomcp support": ("Support rep: cases and activities; reads contacts and accounts",
                        (*_scopes(_SUPPORT, ("read", "write")), "espocrm:contacts:read",
                         "espocrm:accounts:read", *_DIRECTORY)),
    "espomcp admin": ("espomcp administrator: every scope incl. espocrm:admin", tuple(ALL_SCOPES)),
}


def tenant_base(domain: str) -> str:
    """``https://DOMAIN`` for a bare tenant domain; a full URL keeps its scheme (http only for
    the local fake). No path, no trailing slash."""
    domain = domain.strip()
    if not domain:
        raise ProvisionError("the Auth0 domain is empty: pass --domain or set AUTH0_DOMAIN")
    if "://" not in domain:
        domain = "https://" + domain
    parts = urlsplit(domain)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProvisionError(f"not an Auth0 domain: {domain!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ProvisionError("the Auth0 domain must use https (http only for a local fake)")
    return f"{parts.scheme}://{parts.netloc}"


class NotFound(ProvisionError):
    """The Management API answered 404 for the named object."""


class ManagementClient:
    """A small Management API v2 client: one token (client credentials), JSON in and out,
    Auth0's error bodies (``statusCode``, ``error``, ``message``, ``errorCode``) turned into
    ``ProvisionError`` messages. Secrets never appear in messages."""

    def __init__(self, domain: str, client_id: str, client_secret: str, *,
                 timeout: float = 15.0, session: requests.Session | None = None) -> None:
        if not client_id or not client_secret:
            raise ProvisionError("the Management API client id and secret are required: pass "
                                 "--client-id/--client-secret or set AUTH0_CLIENT_ID and "
                                 "AUTH0_CLIENT_SECRET")
        self.base = tenant_base(domain)
        self.client_id = client_id
        self._secret = client_secret
        self.timeout = timeout
        self.session = session or requests.Session()
        self._token: str | None = None

    @property
    def issuer(self) -> str:
        return self.base + "/"

    @property
    def audience(self) -> str:
        return self.base + "/api/v2/"

    def token(self) -> str:
        if self._token is None:
            body = {"grant_type": "client_credentials", "client_id": self.client_id,
                    "client_secret": self._secret, "audience": self.audience}
            response = self._send("POST", self.base + "/oauth/token", data=body)
            if response.status_code != 200:
                detail = _error_text(response)
                raise ProvisionError(f"Auth0 refused the Management API token ({response.status_code}"
                                     f": {detail}); check the client id/secret and that the client "
                                     "is authorized for the Auth0 Management API")
            token = _json(response).get("access_token")
            if not isinstance(token, str) or not token:
                raise ProvisionError("Auth0's token answer has no access_token")
            self._token = token
        return self._token

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             json: Any = None) -> Any:
        """``METHOD /api/v2/<path>``; the decoded JSON answer (None when empty)."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        url = f"{self.base}/api/v2/{path}"
        for attempt in range(4):
            response = self._send(method, url, params=params, json=json, headers=headers)
            if response.status_code != 429 or attempt == 3:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 5.0))
        if response.status_code == 404:
            raise NotFound(f"{method} /api/v2/{path}: {_error_text(response)}")
        if response.status_code in (401, 403):
            raise ProvisionError(f"Auth0 refused {method} /api/v2/{path} ({response.status_code}: "
                                 f"{_error_text(response)}); grant the Management API client these "
                                 f"scopes: {' '.join(MANAGEMENT_SCOPES)}")
        if response.status_code >= 400:
            raise ProvisionError(f"{method} /api/v2/{path} failed ({response.status_code}: "
                                 f"{_error_text(response)})")
        return _json(response) if response.content else None

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=False,
                                        **kwargs)
        except requests.RequestException as exc:
            raise ProvisionError(f"cannot reach Auth0 at {self.base} ({type(exc).__name__})") from None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProvisionError(f"Auth0 answered {response.status_code} with a non-JSON body") from None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "error"
    if isinstance(body, dict):
        message = body.get("message") or body.get("error_description") or body.get("error")
        code = body.get("errorCode")
        return f"{message} [{code}]" if code else str(message)
    return response.reason or "error"


# --- desired state --------------------------------------------------------------------------
def desired_api(identifier: str, name: str = API_NAME) -> dict[str, Any]:
    """The resource server espomcp needs (fields of POST /api/v2/resource-servers)."""
    return {"name": name, "identifier": identifier, "signing_alg": "RS256",
            "scopes": [{"value": s, "description": DESCRIPTIONS[s]} for s in ALL_SCOPES],
            "enforce_policies": True, "token_dialect": "access_token_authz",
            "allow_offline_access": True, "skip_consent_for_verifiable_first_party_clients": True}


@dataclass
class Auth0Options:
    """What ``init auth0`` manages beyond the API: roles, connection, default audience."""

    roles: bool = False
    connection: str = DEFAULT_CONNECTION
    set_default_audience: bool = False
    api_name: str = API_NAME


class Auth0Provisioner:
    """Compares the tenant with the desired state and applies the difference."""

    def __init__(self, client: ManagementClient, identifier: str, options: Auth0Options,
                 *, dry_run: bool = False) -> None:
        self.client = client
        self.identifier = identifier
        self.options = options
        self.dry_run = dry_run

    def apply(self) -> list[PlanItem]:
        items = [self.resource_server()]
        items += self.tenant_settings()
        items.append(self.connection())
        if self.options.roles:
            items += self.roles()
        return items

    # --- the API --------------------------------------------------------------------------
    def resource_server(self) -> PlanItem:
        want = desired_api(self.identifier, self.options.api_name)
        try:
            have = self.client.call("GET", "resource-servers/" + quote(self.identifier, safe=""))
        except NotFound:
            have = None
        if have is None:
            if not self.dry_run:
                self.client.call("POST", "resource-servers", json=want)
            return PlanItem("API", self.identifier, "create",
                            [f"RS256, {len(want['scopes'])} scopes, RBAC with permissions in the "
                             "access token, offline access"])
        patch: dict[str, Any] = {}
        changes: list[str] = []
        for key in ("name", "signing_alg", "enforce_policies", "token_dialect",
                    "allow_offline_access", "skip_consent_for_verifiable_first_party_clients"):
            if have.get(key) != want[key]:
                patch[key] = want[key]
                changes.append(f"{key}: {have.get(key)!r} -> {want[key]!r}")
        scopes, scope_changes = _merge_scopes(have.get("scopes") or [], want["scopes"])
        if scope_changes:
            patch["scopes"] = scopes
            changes += scope_changes
        if not patch:
            return PlanItem("API", self.identifier, "unchanged")
        if not self.dry_run:
            self.client.call("PATCH", f"resource-servers/{quote(str(have['id']), safe='')}", json=patch)
        return PlanItem("API", self.identifier, "update", changes)

    # --- tenant ---------------------------------------------------------------------------
    def tenant_settings(self) -> list[PlanItem]:
        have = self.client.call("GET", "tenants/settings") or {}
        flags = have.get("flags") or {}
        wanted = [
            ("dynamic client registration", flags.get("enable_dynamic_client_registration"), True,
             {"flags": {"enable_dynamic_client_registration": True}}),
            ("resource parameter profile", have.get("resource_parameter_profile"), "compatibility",
             {"resource_parameter_profile": "compatibility"}),
            ("issuer in authorization responses",
             have.get("authorization_response_iss_parameter_supported"), True,
             {"authorization_response_iss_parameter_supported": True}),
        ]
        items, patch = [], {}
        for label, current, target, fragment in wanted:
            if current == target:
                items.append(PlanItem("tenant setting", label, "unchanged"))
            else:
                items.append(PlanItem("tenant setting", label, "update", [f"{current!r} -> {target!r}"]))
                _deep_merge(patch, fragment)
        audience = have.get("default_audience") or ""
        if self.options.set_default_audience and audience != self.identifier:
            items.append(PlanItem("tenant setting", "default audience", "update",
                                  [f"{audience or '(none)'!s} -> {self.identifier}"]))
            patch["default_audience"] = self.identifier
        elif self.options.set_default_audience or audience == self.identifier:
            items.append(PlanItem("tenant setting", "default audience", "unchanged"))
        else:
            note = (f"left as {audience}" if audience else "none: clients that send neither "
                    "resource nor audience get opaque tokens (MCP clients send resource)")
            items.append(PlanItem("tenant setting", "default audience", "skipped",
                                  [note, "--set-default-audience makes this API the tenant "
                                   "default (affects every application of the tenant)"]))
        if patch and not self.dry_run:
            self.client.call("PATCH", "tenants/settings", json=patch)
        return items

    def connection(self) -> PlanItem:
        name = self.options.connection
        found = self.client.call("GET", "connections", params={"name": name}) or []
        match = next((c for c in found if isinstance(c, dict) and c.get("name") == name), None)
        if match is None:
            raise ProvisionError(f"the login connection {name!r} does not exist; pass "
                                 "--connection NAME (Auth0 dashboard → Authentication)")
        if match.get("is_domain_connection") is True:
            return PlanItem("connection", name, "unchanged", ["domain level"])
        if not self.dry_run:
            self.client.call("PATCH", f"connections/{quote(str(match['id']), safe='')}",
                             json={"is_domain_connection": True})
        return PlanItem("connection", name, "update", ["promoted to domain level "
                                                       "(usable by dynamically registered clients)"])

    # --- roles ----------------------------------------------------------------------------
    def roles(self) -> list[PlanItem]:
        return [self.role(name, description, scopes)
                for name, (description, scopes) in ROLES.items()]

    def role(self, name: str, description: str, scopes: tuple[str, ...]) -> PlanItem:
        found = self.client.call("GET", "roles", params={"name_filter": name}) or []
        role = next((r for r in found if isinstance(r, dict) and r.get("name") == name), None)
        changes: list[str] = []
        if role is None:
            action = "create"
            changes.append(f"{len(scopes)} permissions")
            if self.dry_run:
                return PlanItem("role", name, action, changes)
            role = self.client.call("POST", "roles", json={"name": name, "description": description})
            have: set[str] = set()
        else:
            action = "unchanged"
            if role.get("description") != description:
                changes.append("description updated")
                if not self.dry_run:
                    self.client.call("PATCH", f"roles/{role['id']}", json={"description": description})
            have = self._role_permissions(str(role["id"]))
        add = sorted(set(scopes) - have)
        remove = sorted(have - set(scopes))
        if action != "create":
            if add:
                changes.append(f"+{len(add)} permissions: {' '.join(add[:4])}"
                               + (" …" if len(add) > 4 else ""))
            if remove:
                changes.append(f"-{len(remove)} permissions: {' '.join(remove[:4])}"
                               + (" …" if len(remove) > 4 else ""))
            if changes:
                action = "update"
        if not self.dry_run:
            for verb, names in (("POST", add), ("DELETE", remove)):
                if names:
                    body = {"permissions": [{"resource_server_identifier": self.identifier,
                                             "permission_name": n} for n in names]}
                    self.client.call(verb, f"roles/{role['id']}/permissions", json=body)
        return PlanItem("role", name, action, changes)  # type: ignore[arg-type]

    def _role_permissions(self, role_id: str) -> set[str]:
        names: set[str] = set()
        page = 0
        while True:
            rows = self.client.call("GET", f"roles/{role_id}/permissions",
                                    params={"per_page": 100, "page": page}) or []
            names |= {r["permission_name"] for r in rows
                      if isinstance(r, dict) and r.get("resource_server_identifier") == self.identifier}
            if len(rows) < 100:
                return names
            page += 1


def _merge_scopes(have: list[dict[str, Any]], want: list[dict[str, str]]
                  ) -> tuple[list[dict[str, str]], list[str]]:
    """Our scopes with our descriptions, plus scopes the operator added; what changed."""
    current = {s.get("value"): s.get("description", "") for s in have if isinstance(s, dict)}
    missing = [s["value"] for s in want if s["value"] not in current]
    reworded = [s["value"] for s in want
                if s["value"] in current and current[s["value"]] != s["description"]]
    ours = {s["value"] for s in want}
    merged = list(want) + [{"value": str(v), "description": str(d or "")}
                           for v, d in current.items() if v not in ours]
    changes = []
    if missing:
        changes.append(f"scopes: +{len(missing)} ({' '.join(missing[:3])}"
                       + (" …)" if len(missing) > 3 else ")"))
    if reworded:
        changes.append(f"scope descriptions: {len(reworded)} updated")
    return merged, changes


def _deep_merge(target: dict[str, Any], fragment: dict[str, Any]) -> None:
    for key, value in fragment.items():
        if isinstance(value, dict):
            _deep_merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


def environment(client: ManagementClient, public_url: str, audience_setting: str) -> dict[str, str]:
    """The ESPOMCP_* values that make espomcp trust this tenant for the API ``public_url/mcp``;
    ``ESPOMCP_AUTH_AUDIENCE`` is listed (empty) only when it is set to something else now."""
    env = {"ESPOMCP_AUTH_ISSUER": client.issuer, "ESPOMCP_PUBLIC_URL": public_url}
    if audience_setting and audience_setting != public_url + "/mcp":
        env["ESPOMCP_AUTH_AUDIENCE"] = ""
    return env
