"""``espomcp doctor``: check a configuration end to end; every failed check says how to fix it.

Order: identity (discovery document and its issuer, JWKS, audience = MCP URL, the Auth0
tenant's API and settings when ``AUTH0_CLIENT_ID``/``AUTH0_CLIENT_SECRET`` are set, the running
server's protected resource metadata), FGA (backend health, model relations the tools need),
EspoCRM (service account and read access, webhooks registered), outbox empty. A check never
raises: unexpected failures become failed findings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from espomcp.provision.auth0 import DEFAULT_CONNECTION
from espomcp.provision.report import Finding
from espomcp.settings import Settings

TIMEOUT = 10.0
#: relations every record type needs for the tools (get/update/delete/assign)
TOOL_RELATIONS = ("can_read", "can_write", "can_delete", "can_assign")
ISSUER_FIX = ("set ESPOMCP_AUTH_ISSUER to the tenant's issuer, e.g. https://TENANT.eu.auth0.com/ "
              "(with the trailing slash)")


def run_checks(settings: Settings, *, offline: bool = False, session: requests.Session | None = None,
               env: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check, in order (see the module docstring); ``env`` (default: the process
    environment) may hold the Management API credentials of ``init auth0``."""
    http = session or requests.Session()
    env = os.environ if env is None else env
    findings: list[Finding] = []
    discovery = _guard(findings, "issuer", lambda: check_issuer(settings, http, findings))
    _guard(findings, "JWKS", lambda: findings.append(check_jwks(settings, http, discovery)))
    findings.append(check_audience(settings))
    if env.get("AUTH0_CLIENT_ID") and env.get("AUTH0_CLIENT_SECRET"):
        _guard(findings, "Auth0 tenant", lambda: findings.append(check_auth0_tenant(settings, env)))
    if not offline:
        _guard(findings, "protected resource metadata",
               lambda: findings.append(check_protected_resource(settings, http)))
    _guard(findings, "FGA", lambda: findings.extend(check_fga(settings)))
    _guard(findings, "EspoCRM", lambda: findings.extend(check_espocrm(settings)))
    _guard(findings, "outbox", lambda: findings.append(check_outbox(settings)))
    return findings


def _guard(findings: list[Finding], name: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except Exception as exc:  # a doctor reports, it never crashes
        findings.append(Finding(name, False, f"check failed unexpectedly: {type(exc).__name__}: "
                                f"{exc}", "see the message; rerun with a corrected configuration"))
        return None


def _get_json(http: requests.Session, url: str) -> tuple[Any, str]:
    """(decoded JSON, "") or (None, why not)."""
    try:
        response = http.get(url, timeout=TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        return None, f"{url} unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return None, f"{url} answered {response.status_code}"
    try:
        return response.json(), ""
    except ValueError:
        return None, f"{url} did not answer JSON"


# --- identity ---------------------------------------------------------------------------------
def check_issuer(settings: Settings, http: requests.Session, findings: list[Finding]
                 ) -> dict[str, Any] | None:
    """Discovery document reachable and its ``issuer`` byte-identical to the setting."""
    url = settings.auth_issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc, problem = _get_json(http, url)
    if not isinstance(doc, dict):
        findings.append(Finding("issuer discovery", False, problem or f"{url}: not a JSON object",
                                ISSUER_FIX))
        return None
    issuer = doc.get("issuer")
    if issuer != settings.auth_issuer:
        findings.append(Finding("issuer discovery", False,
                                f"the discovery document's issuer is {issuer!r}, ESPOMCP_AUTH_ISSUER "
                                f"is {settings.auth_issuer!r}; tokens and clients need them "
                                "byte-identical", f"set ESPOMCP_AUTH_ISSUER={issuer}"))
        return doc
    findings.append(Finding("issuer discovery", True, f"{url}: issuer {issuer}"))
    return doc


def check_jwks(settings: Settings, http: requests.Session, discovery: dict[str, Any] | None
               ) -> Finding:
    url = settings.jwks_url
    advertised = (discovery or {}).get("jwks_uri")
    doc, problem = _get_json(http, url)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        return Finding("JWKS", False, problem or f"{url}: no 'keys' list",
                       "set ESPOMCP_AUTH_JWKS_URL to the tenant's jwks_uri (or leave it empty: "
                       "issuer + .well-known/jwks.json)")
    algorithms = set(settings.auth_algorithms)
    usable = [k.get("kid") for k in doc["keys"] if isinstance(k, dict) and k.get("kid")
              and k.get("use", "sig") == "sig" and _key_alg(k) in algorithms]
    if not usable:
        return Finding("JWKS", False, f"{url} has no signing key for {', '.join(sorted(algorithms))}",
                       "make the API sign with RS256 (espomcp init auth0) or adjust "
                       "ESPOMCP_AUTH_ALGORITHMS")
    note = ""
    if advertised and advertised != url:
        note = f" (the discovery document names {advertised})"
    return Finding("JWKS", True, f"{url}: {len(usable)} signing key(s): {', '.join(usable)}{note}")


def _key_alg(key: dict[str, Any]) -> str:
    if key.get("alg"):
        return str(key["alg"])
    return {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}.get(str(key.get("kty")), "")


def check_audience(settings: Settings) -> Finding:
    if settings.audience != settings.mcp_url:
        return Finding("token audience", False,
                       f"ESPOMCP_AUTH_AUDIENCE is {settings.audience!r} but MCP clients ask Auth0 for "
                       f"tokens for the resource {settings.mcp_url!r}; every token will be refused",
                       "leave ESPOMCP_AUTH_AUDIENCE empty and make the Auth0 API identifier the "
                       "MCP URL (espomcp init auth0)")
    return Finding("token audience", True, f"tokens must be issued for {settings.mcp_url}")


def check_auth0_tenant(settings: Settings, env: Mapping[str, str]) -> Finding:
    """With Management API credentials: the API, tenant settings and connection ``init auth0``
    manages are as espomcp needs them (a dry run that would change nothing)."""
    from espomcp.provision.auth0 import Auth0Options, Auth0Provisioner, ManagementClient
    from espomcp.provision.report import ProvisionError

    parts = urlsplit(settings.auth_issuer)
    domain = env.get("AUTH0_DOMAIN") or f"{parts.scheme}://{parts.netloc}"
    options = Auth0Options(connection=env.get("AUTH0_CONNECTION") or DEFAULT_CONNECTION)
    try:
        client = ManagementClient(domain, env["AUTH0_CLIENT_ID"], env["AUTH0_CLIENT_SECRET"])
        items = Auth0Provisioner(client, settings.mcp_url, options, dry_run=True).apply()
    except ProvisionError as exc:
        return Finding("Auth0 tenant", False, exc.message, "fix the Management API access, then "
                       "espomcp init auth0")
    pending = [f"{i.kind} {i.name}" for i in items if i.action in ("create", "update")]
    if pending:
        return Finding("Auth0 tenant", False, "not as espomcp needs it: " + "; ".join(pending),
                       "espomcp init auth0 (--dry-run shows the changes)")
    return Finding("Auth0 tenant", True, f"API {settings.mcp_url}, tenant settings and the login "
                   "connection are as espomcp needs them")


def check_protected_resource(settings: Settings, http: requests.Session) -> Finding:
    url = settings.public_url + "/.well-known/oauth-protected-resource/mcp"
    doc, problem = _get_json(http, url)
    if not isinstance(doc, dict):
        return Finding("protected resource metadata", False, problem or f"{url}: not a JSON object",
                       "start the server (gunicorn -c gunicorn.conf.py wsgi:app) and make "
                       "ESPOMCP_PUBLIC_URL reach it through the proxy, or run doctor --offline")
    resource, servers = doc.get("resource"), doc.get("authorization_servers") or []
    if resource != settings.mcp_url:
        return Finding("protected resource metadata", False,
                       f"the server at {settings.public_url} announces resource {resource!r}, "
                       f"expected {settings.mcp_url!r}",
                       "run the server and doctor with the same ESPOMCP_PUBLIC_URL (the public "
                       "https URL clients use)")
    if not servers or servers[0] != settings.auth_issuer:
        return Finding("protected resource metadata", False,
                       f"the server names authorization server {servers[:1]}, expected "
                       f"{settings.auth_issuer!r}",
                       "run the server and doctor with the same ESPOMCP_AUTH_ISSUER")
    return Finding("protected resource metadata", True, f"{url}: resource {resource}")


# --- FGA --------------------------------------------------------------------------------------
def check_fga(settings: Settings) -> list[Finding]:
    from espomcp.fga.backend import build_backend
    from espomcp.fga.errors import FgaError, FgaUnavailable

    backend = build_backend(settings)
    try:
        if not getattr(backend, "enforcing", True):
            return [Finding("FGA backend", False, "ESPOMCP_FGA_BACKEND=off: record-level "
                            "authorization is disabled", "use embedded (default) or openfga")]
        ok, detail = backend.health()
        findings = [Finding("FGA backend", ok, f"{backend.name}: {detail}",
                            "" if ok else "check ESPOMCP_FGA_* (espomcp init fga) and that the "
                            "store is reachable")]
        try:
            model = backend.model()
        except (FgaError, FgaUnavailable) as exc:
            findings.append(Finding("FGA model", False, f"cannot read the model: {exc}",
                                    "espomcp init fga writes it (OpenFGA); embedded: check "
                                    "ESPOMCP_FGA_MODEL_PATH"))
            return findings
        findings.append(check_model(model, settings.entity_types))
        return findings
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def check_model(model: dict[str, Any], entity_types: list[str]) -> Finding:
    """Every allowed entity type has the tool relations; ``organization`` has ``admin``."""
    relations = {t.get("type"): set((t.get("relations") or {}).keys())
                 for t in model.get("type_definitions") or [] if isinstance(t, dict)}
    missing = []
    for entity_type in entity_types:
        kind = entity_type.lower()
        if kind not in relations:
            missing.append(f"type {kind}")
            continue
        missing += [f"{kind}#{r}" for r in TOOL_RELATIONS if r not in relations[kind]]
    if "admin" not in relations.get("organization", set()):
        missing.append("organization#admin")
    if missing:
        return Finding("FGA model", False, f"missing: {', '.join(missing)}",
                       "add them to fga/model.fga (fga/README.md 'Changing the model'), then "
                       "espomcp init fga (OpenFGA) or restart (embedded)")
    return Finding("FGA model", True, f"{len(entity_types)} entity types have "
                   f"{', '.join(TOOL_RELATIONS)}; organization#admin present")


# --- EspoCRM, webhooks, outbox ----------------------------------------------------------------
def check_espocrm(settings: Settings) -> list[Finding]:
    from espomcp.espocrm.client import EspoClient
    from espomcp.provision.espocrm import check_service_account

    client = EspoClient.from_settings(settings)
    try:
        findings = check_service_account(client, settings)
        if findings[0].ok:
            findings.append(check_webhooks(client, settings))
        return findings
    finally:
        client.close()


def check_webhooks(client: Any, settings: Settings) -> Finding:
    from espomcp.espocrm.errors import EspoError
    from espomcp.sync.webhooks import list_webhooks, planned_events, receiver_url

    try:
        rows = list_webhooks(client, settings)
    except EspoError as exc:
        return Finding("EspoCRM webhooks", False, f"cannot list webhooks: {exc.message}",
                       "enable the Webhook scope in the API user's role")
    ready = {r["event"] for r in rows if r.get("secret_stored") and r.get("active", True)}
    planned = planned_events(settings.entity_types)
    missing = [e for e in planned if e not in ready]
    if missing:
        return Finding("EspoCRM webhooks", False,
                       f"{len(missing)} of {len(planned)} events not registered for "
                       f"{receiver_url(settings)} (or their secret is not in "
                       f"{settings.data_dir}): {', '.join(missing[:5])}"
                       + (" …" if len(missing) > 5 else ""),
                       "espomcp webhooks register (or espomcp init espocrm)")
    return Finding("EspoCRM webhooks", True, f"{len(planned)} events → {receiver_url(settings)}")


def check_outbox(settings: Settings) -> Finding:
    from espomcp.sync.outbox import Outbox, OutboxError

    path = settings.data_dir / "outbox.sqlite3"
    if not path.exists():
        return Finding("outbox", True, f"{path} not created yet (nothing queued)")
    try:
        outbox = Outbox(path)
        depth, dead = outbox.depth(), outbox.dead_count()
    except OutboxError as exc:
        return Finding("outbox", False, str(exc), f"check permissions of {settings.data_dir}")
    if depth or dead:
        return Finding("outbox", False,
                       f"{depth} tuple change(s) waiting for the FGA backend, {dead} rejected",
                       "fix the FGA backend (see above); the server retries waiting changes "
                       "itself; rejected ones are listed in the admin console; espomcp reconcile "
                       "--fix repairs the store")
    return Finding("outbox", True, "empty")
