"""``espomcp init auth0`` against the fake Auth0 Management API: the tenant ends up as espomcp
needs it, a second run changes nothing, ``--dry-run`` writes nothing, errors are readable."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from espomcp.auth.scopes import ALL_SCOPES, DESCRIPTIONS
from espomcp.cli import main
from espomcp.provision.auth0 import ROLES
from fakes.auth0.management import (
    MANAGEMENT_CLIENT_ID,
    MANAGEMENT_CLIENT_SECRET,
    READONLY_CLIENT_ID,
    READONLY_CLIENT_SECRET,
    ManagementState,
)

PUBLIC_URL = "https://crm-mcp.example.com"
MCP_URL = PUBLIC_URL + "/mcp"


@pytest.fixture
def tenant(auth_server: Any, monkeypatch: pytest.MonkeyPatch) -> ManagementState:
    monkeypatch.setenv("ESPOMCP_AUTH_ISSUER", auth_server.url)
    monkeypatch.setenv("ESPOMCP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("AUTH0_CLIENT_ID", MANAGEMENT_CLIENT_ID)
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", MANAGEMENT_CLIENT_SECRET)
    monkeypatch.delenv("AUTH0_DOMAIN", raising=False)
    return auth_server.app.extensions["auth0_management"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["init", "auth0", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def actions(plan: dict[str, Any]) -> dict[str, str]:
    return {f"{i['kind']}: {i['name']}": i["action"] for i in plan["plan"]}


def test_first_run_provisions_and_second_changes_nothing(tenant, auth_server, capsys):
    code, first = run(capsys, "--roles")
    assert code == 0
    assert actions(first)[f"API: {MCP_URL}"] == "create"
    assert actions(first)["connection: Username-Password-Authentication"] == "update"
    assert first["env"] == {"ESPOMCP_AUTH_ISSUER": auth_server.url, "ESPOMCP_PUBLIC_URL": PUBLIC_URL}

    api = tenant.find_rs(MCP_URL)
    assert api["signing_alg"] == "RS256"
    assert api["enforce_policies"] is True and api["token_dialect"] == "access_token_authz"
    assert api["allow_offline_access"] is True
    assert {s["value"]: s["description"] for s in api["scopes"]} == {s: DESCRIPTIONS[s] for s in ALL_SCOPES}
    assert tenant.tenant["flags"]["enable_dynamic_client_registration"] is True
    assert tenant.tenant["flags"]["enable_sso"] is True  # other flags untouched
    assert tenant.tenant["resource_parameter_profile"] == "compatibility"
    assert tenant.tenant["authorization_response_iss_parameter_supported"] is True
    assert tenant.tenant["default_audience"] == ""  # only with --set-default-audience
    assert tenant.connections[0]["is_domain_connection"] is True
    roles = {r["name"]: r["id"] for r in tenant.roles.values()}
    assert set(roles) == set(ROLES)
    for name, (_, scopes) in ROLES.items():
        granted = {p["permission_name"] for p in tenant.permissions_of(roles[name])
                   if p["resource_server_identifier"] == MCP_URL}
        assert granted == set(scopes)
    assert "espocrm:admin" in set(ROLES["espomcp admin"][1])
    assert "espocrm:contacts:delete" not in set(ROLES["espomcp sales rep"][1])

    writes = list(tenant.writes)
    code, second = run(capsys, "--roles")
    assert code == 0
    assert set(actions(second).values()) <= {"unchanged", "skipped"}
    assert tenant.writes == writes  # nothing changed on the tenant


def test_a_diverging_audience_setting_is_to_be_cleared(tenant, monkeypatch, capsys):
    monkeypatch.setenv("ESPOMCP_AUTH_AUDIENCE", "https://old-api.example.com")
    code, plan = run(capsys, "--dry-run")
    assert code == 0 and plan["env"]["ESPOMCP_AUTH_AUDIENCE"] == ""


def test_dry_run_reads_only(tenant, capsys):
    code, plan = run(capsys, "--dry-run", "--roles", "--set-default-audience")
    assert code == 0 and plan["dry_run"] is True
    assert actions(plan)[f"API: {MCP_URL}"] == "create"
    assert actions(plan)["tenant setting: default audience"] == "update"
    assert actions(plan)["role: espomcp admin"] == "create"
    assert tenant.writes == []
    assert tenant.resource_servers == {} and tenant.roles == {}


def test_drift_is_repaired_and_operator_scopes_kept(tenant, capsys):
    assert run(capsys)[0] == 0
    api = tenant.find_rs(MCP_URL)
    api["token_dialect"] = "access_token"
    api["scopes"] = [s for s in api["scopes"] if s["value"] != "espocrm:leads:delete"]
    api["scopes"].append({"value": "reports:read", "description": "added by hand"})
    api["scopes"][0]["description"] = "reworded"
    tenant.tenant["resource_parameter_profile"] = "audience"
    code, plan = run(capsys, "--set-default-audience")
    assert code == 0
    api_item = next(i for i in plan["plan"] if i["kind"] == "API")
    assert api_item["action"] == "update"
    assert any("token_dialect" in c for c in api_item["changes"])
    assert any("+1" in c for c in api_item["changes"])
    assert actions(plan)["tenant setting: resource parameter profile"] == "update"
    assert actions(plan)["tenant setting: default audience"] == "update"
    values = {s["value"]: s["description"] for s in tenant.find_rs(MCP_URL)["scopes"]}
    assert values["reports:read"] == "added by hand"
    assert values[ALL_SCOPES[0]] == DESCRIPTIONS[ALL_SCOPES[0]]
    assert "espocrm:leads:delete" in values
    assert tenant.find_rs(MCP_URL)["token_dialect"] == "access_token_authz"
    assert tenant.tenant["default_audience"] == MCP_URL


def test_role_permissions_follow_the_bundle(tenant, capsys):
    assert run(capsys, "--roles")[0] == 0
    role_id = next(r["id"] for r in tenant.roles.values() if r["name"] == "espomcp sales rep")
    tenant.role_permissions[role_id].append((MCP_URL, "espocrm:admin"))
    tenant.role_permissions[role_id].remove((MCP_URL, "espocrm:contacts:read"))
    code, plan = run(capsys, "--roles")
    item = next(i for i in plan["plan"] if i["name"] == "espomcp sales rep")
    assert code == 0 and item["action"] == "update"
    assert any(c.startswith("+1") for c in item["changes"])
    assert any(c.startswith("-1") for c in item["changes"])
    granted = {p["permission_name"] for p in tenant.permissions_of(role_id)}
    assert granted == set(ROLES["espomcp sales rep"][1])


def test_missing_management_scopes_name_them(tenant, monkeypatch, capsys):
    monkeypatch.setenv("AUTH0_CLIENT_ID", READONLY_CLIENT_ID)
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", READONLY_CLIENT_SECRET)
    assert main(["init", "auth0"]) == 1
    err = capsys.readouterr().err
    assert "Insufficient scope" in err and "create:resource_servers" in err
    assert READONLY_CLIENT_SECRET not in err


def test_wrong_secret_and_unreachable_tenant_are_clear(tenant, monkeypatch, capsys):
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", "wrong-secret")
    assert main(["init", "auth0"]) == 1
    err = capsys.readouterr().err
    assert "refused the Management API token" in err and "wrong-secret" not in err
    monkeypatch.setenv("AUTH0_CLIENT_SECRET", MANAGEMENT_CLIENT_SECRET)
    assert main(["init", "auth0", "--domain", "http://127.0.0.1:9"]) == 1
    assert "cannot reach Auth0" in capsys.readouterr().err
    assert main(["init", "auth0", "--connection", "Nope"]) == 1
    assert "'Nope' does not exist" in capsys.readouterr().err


def test_fake_management_api_shapes(auth_server, tenant):
    base = auth_server.url
    assert requests.get(base + "api/v2/roles", timeout=5).json() == {
        "statusCode": 401, "error": "Unauthorized", "message": "Missing authentication",
        "attributes": {"error": "Missing authentication"}}
    denied = requests.post(base + "oauth/token", data={
        "grant_type": "client_credentials", "client_id": "demo-cli", "client_secret": "demo-secret",
        "audience": base + "api/v2/"}, timeout=5)
    assert denied.status_code == 403 and denied.json()["error"] == "access_denied"
    token = requests.post(base + "oauth/token", data={
        "grant_type": "client_credentials", "client_id": MANAGEMENT_CLIENT_ID,
        "client_secret": MANAGEMENT_CLIENT_SECRET, "audience": base + "api/v2/"},
        timeout=5).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    missing = requests.get(base + "api/v2/resource-servers/nope", headers=auth, timeout=5)
    assert missing.status_code == 404 and missing.json()["errorCode"] == "inexistent_resource_server"
    bad = requests.post(base + "api/v2/resource-servers", headers=auth, timeout=5,
                        json={"identifier": "x", "token_dialect": "access_token_authz"})
    assert bad.status_code == 400 and bad.json()["errorCode"] == "invalid_body"
    ok = requests.post(base + "api/v2/resource-servers", headers=auth, timeout=5,
                       json={"identifier": "x"})
    assert ok.status_code == 201
    again = requests.post(base + "api/v2/resource-servers", headers=auth, timeout=5,
                          json={"identifier": "x"})
    assert again.status_code == 409 and again.json()["errorCode"] == "resource_server_conflict"
    system = requests.get(base + "api/v2/resource-servers", headers=auth, timeout=5).json()[0]
    assert system["is_system"] is True and system["identifier"] == base + "api/v2/"
