"""The fake Auth0 tenant behaves like the parts of Auth0 espomcp and MCP clients rely on."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from fakes.auth0 import FakeAuth0
from fakes.server import free_port

REDIRECT = "http://127.0.0.1:9/cb"
API = "http://127.0.0.1:8000/mcp"


@pytest.fixture
def tenant(auth_server: FakeAuth0) -> FlaskClient:
    return auth_server.app.test_client()


def register(tenant: FlaskClient, **extra: Any) -> dict[str, Any]:
    response = tenant.post("/oidc/register", json={"client_name": "test",
                                                     "redirect_uris": [REDIRECT], **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def authorize_query(client_id: str, verifier: str, scope: str, **extra: str) -> str:
    return urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                      "state": "st-1", "code_challenge": create_s256_code_challenge(verifier),
                      "code_challenge_method": "S256", "scope": scope, "resource": API,
                      **extra})


def login(tenant: FlaskClient, client_id: str, verifier: str, scope: str, user: str = "alice",
          password: str = "demo", **extra: str) -> Any:
    query = authorize_query(client_id, verifier, scope, **extra)
    form = tenant.get(f"/authorize?{query}")
    assert form.status_code == 200 and form.mimetype == "text/html"
    action = re.search(r'action="([^"]+)"', form.get_data(as_text=True)).group(1)
    return tenant.post(action.replace("&amp;", "&"),
                       data={"username": user, "password": password})


def code_from(response: Any) -> dict[str, str]:
    assert response.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def exchange(tenant: FlaskClient, client_id: str, code: str, verifier: str, **extra: str) -> Any:
    return tenant.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": REDIRECT, "client_id": client_id,
                                             "code_verifier": verifier, "resource": API,
                                             **extra})


def claims_of(auth_server: FakeAuth0, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(auth_server.backend.jwks())
    return jwt.decode(token, keys, algorithms=["RS256"]).claims


def full_login(tenant: FlaskClient, scope: str, user: str = "alice") -> tuple[str, Any]:
    client_id = register(tenant)["client_id"]
    verifier = secrets.token_urlsafe(40)
    params = code_from(login(tenant, client_id, verifier, scope, user))
    return client_id, exchange(tenant, client_id, params["code"], verifier)


def test_discovery_documents_match_and_keep_the_trailing_slash(auth_server: FakeAuth0) -> None:
    oidc = requests.get(auth_server.url + ".well-known/openid-configuration", timeout=5).json()
    oauth = requests.get(auth_server.url + ".well-known/oauth-authorization-server",
                         timeout=5).json()
    assert oidc == oauth
    assert oidc["issuer"] == auth_server.url and auth_server.url.endswith("/")
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["authorization_response_iss_parameter_supported"] is True
    assert requests.get(oidc["jwks_uri"], timeout=5).json()["keys"][0]["kid"] == "demo-2026-a"


def test_jwks_rotation_and_outage(tenant: FlaskClient, auth_server: FakeAuth0) -> None:
    assert [k["kid"] for k in tenant.get("/.well-known/jwks.json").get_json()["keys"]] == \
        ["demo-2026-a"]
    auth_server.backend.rotate()
    keys = tenant.get("/.well-known/jwks.json").get_json()["keys"]
    assert [k["kid"] for k in keys] == ["demo-2026-a", "demo-2026-b"]
    assert all("d" not in k for k in keys)  # public parts only
    assert claims_of(auth_server, auth_server.backend.mint("bob"))["sub"] == "auth0|bob"
    auth_server.backend.jwks_down = True
    down = tenant.get("/.well-known/jwks.json")
    assert down.status_code == 503 and down.get_json()["error"] == "temporarily_unavailable"


def test_registration_returns_201_public_client(tenant: FlaskClient) -> None:
    body = register(tenant, grant_types=["authorization_code", "refresh_token"],
                    application_type="native")
    assert body["token_endpoint_auth_method"] == "none"
    assert body["redirect_uris"] == [REDIRECT] and body["client_id"]
    bad = tenant.post("/oidc/register", json={"client_name": "x"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_client_metadata"


def test_authorization_code_flow_with_pkce(tenant: FlaskClient, auth_server: FakeAuth0) -> None:
    client_id = register(tenant)["client_id"]
    verifier = secrets.token_urlsafe(40)
    params = code_from(login(tenant, client_id, verifier,
                             "openid espocrm:contacts:read espocrm:contacts:write"))
    assert params["state"] == "st-1" and params["iss"] == auth_server.url
    response = exchange(tenant, client_id, params["code"], verifier)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["scope"] == "openid espocrm:contacts:read espocrm:contacts:write"
    claims = claims_of(auth_server, body["access_token"])
    assert claims["iss"] == auth_server.url and claims["sub"] == "auth0|alice"
    assert claims["aud"] == [API, auth_server.url + "userinfo"]
    assert claims["azp"] == client_id
    assert claims["permissions"] == ["espocrm:contacts:read", "espocrm:contacts:write"]
    assert claims["email"] == "alice@example.com"
    assert claims["exp"] > claims["iat"]
    again = exchange(tenant, client_id, params["code"], verifier)
    assert again.status_code == 403 and again.get_json()["error"] == "invalid_grant"


def test_requested_scopes_are_cut_to_the_users_allowed_scopes(tenant: FlaskClient,
                                                              auth_server: FakeAuth0) -> None:
    _, response = full_login(tenant, "espocrm:contacts:read espocrm:contacts:delete "
                                     "espocrm:admin", user="alice")
    assert response.get_json()["scope"] == "espocrm:contacts:read"
    claims = claims_of(auth_server, response.get_json()["access_token"])
    assert claims["aud"] == API
    _, response = full_login(tenant, "espocrm:contacts:delete espocrm:admin", user="admin")
    assert response.get_json()["scope"] == "espocrm:contacts:delete espocrm:admin"


@pytest.mark.parametrize(("change", "error"), [
    ({"code_verifier": "wrong-verifier-" + "x" * 40}, "invalid_grant"),
    ({"redirect_uri": "http://127.0.0.1:9/other"}, "invalid_grant"),
    ({"resource": "https://other.example/api"}, "invalid_grant"),
    ({"client_id": "nobody"}, "invalid_client"),
], ids=["pkce", "redirect-uri", "resource", "client"])
def test_code_exchange_checks(tenant: FlaskClient, change: dict[str, str], error: str) -> None:
    client_id = register(tenant)["client_id"]
    verifier = secrets.token_urlsafe(40)
    params = code_from(login(tenant, client_id, verifier, "espocrm:contacts:read"))
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
            "client_id": client_id, "code_verifier": verifier, **change}
    response = tenant.post("/oauth/token", data=form)
    assert response.status_code in (401, 403)
    assert response.get_json()["error"] == error
    assert response.get_json()["error_description"]


def test_login_form_rejects_a_wrong_password(tenant: FlaskClient) -> None:
    client_id = register(tenant)["client_id"]
    response = login(tenant, client_id, "v" * 43, "espocrm:contacts:read", password="nope")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)


def test_authorize_refuses_unknown_redirect_and_requires_pkce(tenant: FlaskClient) -> None:
    client_id = register(tenant)["client_id"]
    bad_redirect = tenant.get("/authorize?" + urlencode({"client_id": client_id,
                                                          "response_type": "code",
                                                          "redirect_uri": "http://evil/cb"}))
    assert bad_redirect.status_code == 400
    query = urlencode({"client_id": client_id, "response_type": "code",
                       "redirect_uri": REDIRECT, "state": "s"})
    response = tenant.post(f"/authorize?{query}", data={"username": "alice", "password": "demo"})
    params = code_from(response)
    assert params["error"] == "invalid_request" and params["state"] == "s"


def test_refresh_tokens_rotate(tenant: FlaskClient) -> None:
    client_id, response = full_login(tenant, "offline_access espocrm:contacts:read")
    first = response.get_json()["refresh_token"]
    refreshed = tenant.post("/oauth/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": first, "client_id": client_id})
    assert refreshed.status_code == 200
    assert refreshed.get_json()["refresh_token"] != first
    reused = tenant.post("/oauth/token", data={"grant_type": "refresh_token",
                                               "refresh_token": first, "client_id": client_id})
    assert reused.status_code == 403 and reused.get_json()["error"] == "invalid_grant"
    second = refreshed.get_json()["refresh_token"]
    assert tenant.post("/oauth/revoke", data={"token": second,
                                              "client_id": client_id}).status_code == 200
    revoked = tenant.post("/oauth/token", data={"grant_type": "refresh_token",
                                                "refresh_token": second, "client_id": client_id})
    assert revoked.status_code == 403


def test_client_credentials(tenant: FlaskClient, auth_server: FakeAuth0) -> None:
    response = tenant.post("/oauth/token", data={"grant_type": "client_credentials",
                                                 "audience": API},
                           auth=("demo-cli", "demo-secret"))
    assert response.status_code == 200
    claims = claims_of(auth_server, response.get_json()["access_token"])
    assert claims["sub"] == "demo-cli@clients" and claims["gty"] == "client-credentials"
    wrong = tenant.post("/oauth/token", data={"grant_type": "client_credentials",
                                              "audience": API},
                        auth=("demo-cli", "nope"))
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"


def test_no_audience_gives_an_opaque_token(tenant: FlaskClient) -> None:
    client_id = register(tenant)["client_id"]
    verifier = secrets.token_urlsafe(40)
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                       "code_challenge": create_s256_code_challenge(verifier),
                       "code_challenge_method": "S256", "scope": "openid"})
    params = code_from(tenant.post(f"/authorize?{query}",
                                   data={"username": "carol", "password": "demo"}))
    response = tenant.post("/oauth/token", data={"grant_type": "authorization_code",
                                                 "code": params["code"],
                                                 "redirect_uri": REDIRECT,
                                                 "client_id": client_id,
                                                 "code_verifier": verifier})
    assert response.get_json()["access_token"].count(".") == 0


def test_userinfo_and_unsupported_grant(tenant: FlaskClient, auth_server: FakeAuth0) -> None:
    token = auth_server.backend.mint("carol")
    info = tenant.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert info["email"] == "carol@example.com" and info["sub"] == "auth0|carol"
    assert tenant.get("/userinfo").status_code == 401
    response = tenant.post("/oauth/token", data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_demo_users_have_their_roles(auth_server: FakeAuth0) -> None:
    users = auth_server.backend.users
    assert "espocrm:contacts:write" in users["alice"].scopes
    assert "espocrm:contacts:delete" not in users["alice"].scopes
    assert "espocrm:contacts:delete" in users["bob"].scopes
    assert "espocrm:cases:write" in users["carol"].scopes
    assert "espocrm:contacts:write" not in users["carol"].scopes
    assert "espocrm:admin" in users["admin"].scopes


def test_runs_standalone_on_a_port() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakes.auth0", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
        for _ in range(100):
            try:
                document = requests.get(url, timeout=2).json()
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert document["issuer"] == f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
