"""The official ``mcp`` 2.3.0 client logs in through the fake Auth0 and steps up its scopes.

401 → protected resource metadata → AS discovery → DCR → PKCE login through the HTML form →
token → tools/list and tools/call; then a tool needing a write scope answers 403
``insufficient_scope`` and the client re-authorizes with the larger scope and succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx2
import pytest
from flask import Flask
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from mcp.shared.exceptions import MCPError

from espomcp import create_app
from espomcp.auth.scopes import BASIC_SCOPES
from espomcp.mcp.registry import IDEMPOTENT_WRITE, Tool
from espomcp.settings import Settings
from fakes.auth0 import FakeAuth0
from fakes.server import ServerThread

WRITE_SCOPE = "espocrm:contacts:write"


class MemoryStore:
    """The client's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client

    async def set_client_info(self, client: Any) -> None:
        self.client = client


@dataclass
class Served:
    app: Flask
    server: ServerThread

    @property
    def mcp_url(self) -> str:
        return self.server.url + "/mcp"


def _touch_contact(ctx: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"touched": arguments["id"], "by": ctx.principal.sub}


TOUCH = Tool(
    name="touch_contact", title="Touch a contact (test only)",
    description="Test-only tool that needs the contacts write scope.",
    input_schema={"type": "object", "properties": {"id": {"type": "string"}},
                  "required": ["id"], "additionalProperties": False},
    handler=_touch_contact, annotations=IDEMPOTENT_WRITE,
    required_scopes=lambda _args: frozenset({WRITE_SCOPE}),
)


@pytest.fixture
def served(auth_settings: Callable[..., Settings]) -> Iterator[Served]:
    """espomcp on a real port whose public URL is that port; the app is built once bound."""
    holder: dict[str, Flask] = {}
    server = ServerThread(lambda environ, start: holder["app"](environ, start))
    app = create_app(auth_settings(public_url=server.url))
    svc = app.extensions["espomcp"]
    svc.identity = None  # this test is about OAuth; identity mapping has its own tests
    svc.registry.add(TOUCH)
    holder["app"] = app
    server.start()
    yield Served(app, server)
    server.stop()


async def login_and_call(mcp_url: str, user: str, mode: str,
                         pause_seconds: float = 0.0) -> dict[str, Any]:
    seen: dict[str, str] = {}

    async def on_redirect(auth_url: str) -> None:
        async with httpx2.AsyncClient() as http:
            form = await http.get(auth_url)
            assert form.status_code == 200 and "<form" in form.text
            action = re.search(r'action="([^"]+)"', form.text).group(1).replace("&amp;", "&")
            answer = await http.post(urljoin(auth_url, action),
                                     data={"username": user, "password": "demo"},
                                     follow_redirects=False)
        assert answer.status_code == 302, answer.text
        seen.clear()
        seen.update({k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query)
                     .items()})

    async def on_callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=seen["code"], state=seen.get("state"),
                                       iss=seen.get("iss"))

    auth = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="ci", redirect_uris=["http://127.0.0.1:9/cb"],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method="none"),
        storage=MemoryStore(), redirect_handler=on_redirect, callback_handler=on_callback)
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http, \
            Client(streamable_http_client(mcp_url, http_client=http), mode=mode,
                   cache=None) as client:
        whoami = await client.call_tool("whoami", {})
        if pause_seconds:
            await anyio.sleep(pause_seconds)  # let the access token expire client-side
        tools = [tool.name for tool in (await client.list_tools()).tools]
        try:
            touched: Any = await client.call_tool("touch_contact", {"id": "66a0c1d2e3f4a5b6c"})
        except MCPError as exc:
            touched = exc
        after = await client.call_tool("whoami", {})
    return {"whoami": whoami, "tools": tools, "touched": touched, "after": after}


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
def test_login_then_step_up(served: Served, auth_server: FakeAuth0, mode: str) -> None:
    result = anyio.run(login_and_call, served.mcp_url, "alice", mode)

    whoami = result["whoami"]
    assert whoami.is_error is False
    assert whoami.structured_content["sub"] == "auth0|alice"
    granted = set(whoami.structured_content["scopes"])
    assert "espocrm:contacts:read" in granted  # asked for all reads, got alice's share
    assert "espocrm:cases:read" not in granted and granted <= set(BASIC_SCOPES) | {"offline_access"}
    assert WRITE_SCOPE not in whoami.structured_content["scopes"]
    assert "whoami" in result["tools"]
    assert result["touched"].is_error is False
    assert result["touched"].structured_content == {"touched": "66a0c1d2e3f4a5b6c",
                                                    "by": "auth0|alice"}
    assert WRITE_SCOPE in result["after"].structured_content["scopes"]

    backend = auth_server.backend
    assert len(backend.requests_to("register")) == 1
    logins = [p for p in backend.requests_to("authorize") if p["method"] == "POST"]
    assert len(logins) == 2
    assert all(p["resource"] == served.mcp_url for p in logins)
    first, second = (set(p["scope"].split()) for p in logins)
    assert first >= set(BASIC_SCOPES) and WRITE_SCOPE not in first
    assert second >= first | {WRITE_SCOPE}
    codes = [p for p in backend.requests_to("token") if p["grant_type"] == "authorization_code"]
    assert len(codes) == 2 and all(p["resource"] == served.mcp_url for p in codes)


def test_step_up_beyond_the_users_rights_stays_denied(served: Served,
                                                      auth_server: FakeAuth0) -> None:
    """carol may not write contacts: the AS grants less, and the retried call is refused."""
    result = anyio.run(login_and_call, served.mcp_url, "carol", "2026-07-28")
    assert isinstance(result["touched"], MCPError)
    assert "espocrm:contacts:write required" in result["touched"].message
    assert WRITE_SCOPE not in result["after"].structured_content["scopes"]
    logins = [p for p in auth_server.backend.requests_to("authorize") if p["method"] == "POST"]
    assert WRITE_SCOPE in logins[-1]["scope"].split()


def test_expired_access_token_is_refreshed_with_rotation(served: Served,
                                                        auth_server: FakeAuth0) -> None:
    auth_server.backend.access_token_ttl = 1
    result = anyio.run(login_and_call, served.mcp_url, "alice", "2026-07-28", 1.2)
    assert result["touched"].is_error is False
    refreshes = [p for p in auth_server.backend.requests_to("token")
                 if p["grant_type"] == "refresh_token"]
    assert refreshes and all(p["resource"] == served.mcp_url for p in refreshes)
    assert len({p["refresh_token"] for p in refreshes}) == len(refreshes)  # rotated each time
