"""RFC 9728 metadata: both URLs, identical JSON, the resource and issuer exactly right."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from espomcp import create_app
from espomcp.auth.scopes import ADMIN_SCOPE, BASIC_SCOPES
from espomcp.settings import Settings
from fakes.auth0 import FakeAuth0

URLS = ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]


@pytest.fixture
def client(auth_settings: Callable[..., Settings]) -> FlaskClient:
    return create_app(auth_settings(public_url="https://crm-mcp.example.com")).test_client()


def test_both_urls_serve_identical_metadata(client: FlaskClient, auth_server: FakeAuth0) -> None:
    root, suffixed = (client.get(url) for url in URLS)
    assert root.status_code == suffixed.status_code == 200
    assert root.get_data() == suffixed.get_data()
    body = suffixed.get_json()
    assert body["resource"] == "https://crm-mcp.example.com/mcp"
    assert body["authorization_servers"] == [auth_server.url]
    assert body["authorization_servers"][0].endswith("/")
    assert body["bearer_methods_supported"] == ["header"]
    assert body["resource_name"]


@pytest.mark.parametrize("url", URLS)
def test_metadata_is_public_json_with_cors(client: FlaskClient, url: str) -> None:
    response = client.get(url, headers={"Origin": "https://inspector.example"})
    assert response.mimetype == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    preflight = client.options(url, headers={"Origin": "https://inspector.example",
                                             "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"


def test_scopes_supported_is_the_minimal_read_set(client: FlaskClient) -> None:
    scopes = client.get(URLS[1]).get_json()["scopes_supported"]
    assert scopes == list(BASIC_SCOPES)
    assert all(scope.endswith(":read") for scope in scopes)
    assert "offline_access" not in scopes and ADMIN_SCOPE not in scopes


def test_challenge_points_at_the_suffixed_metadata_url(client: FlaskClient) -> None:
    response = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                           headers={"Host": "crm-mcp.example.com"})
    assert response.status_code == 401
    header = response.headers["WWW-Authenticate"]
    assert ('resource_metadata="https://crm-mcp.example.com/.well-known/'
            'oauth-protected-resource/mcp"') in header
    assert client.get(URLS[1]).status_code == 200


def test_trailing_slash_in_public_url_does_not_leak_into_resource(
        auth_settings: Callable[..., Settings]) -> None:
    app = create_app(auth_settings(public_url="http://127.0.0.1:9999/"))
    body = app.test_client().get(URLS[0]).get_json()
    assert body["resource"] == "http://127.0.0.1:9999/mcp"


def test_other_methods_are_refused(client: FlaskClient) -> None:
    assert client.post(URLS[1]).status_code == 405
