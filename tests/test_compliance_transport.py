"""Deviations from mcp-protocol.md found in review (transport and request ladder), raw HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from espomcp.mcp.jsonrpc import JsonRpcError
from espomcp.mcp.protocol import check_param_headers

MODERN = "2026-07-28"


def post(client: Any, token: str, body: Any, **headers: str) -> Any:
    all_headers = {"Authorization": f"Bearer {token}",
                   "Accept": "application/json, text/event-stream", **headers}
    return client.post("/mcp", data=json.dumps(body), headers=all_headers,
                       content_type="application/json")


def test_modern_client_response_object_is_400_32600(mcp_client, alice_token):
    """§2: a response object is not a valid modern POST (no server→client requests, §3.1)."""
    response = post(mcp_client, alice_token, {"jsonrpc": "2.0", "id": 5, "result": {}},
                    **{"MCP-Protocol-Version": MODERN})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == -32600
    assert response.get_json()["id"] is None


SCHEMA = {"type": "object", "properties": {
    "flag": {"type": "boolean", "x-mcp-header": "Flag"},
    "count": {"type": "integer", "x-mcp-header": "Count"},
    "region": {"type": "string", "x-mcp-header": "Region"}}}


@pytest.mark.parametrize(("arguments", "headers"), [
    ({"flag": True}, {"mcp-param-flag": ["true"]}),
    ({"flag": False}, {"mcp-param-flag": ["false"]}),
    ({"count": 42}, {"mcp-param-count": ["42"]}),
    ({"count": 42}, {"mcp-param-count": ["42.0"]}),
    ({"region": "Zürich"}, {"mcp-param-region": ["=?base64?WsO8cmljaA==?="]}),
    ({"region": None}, {}),
], ids=["true", "false", "int", "int-as-decimal", "base64", "null-needs-no-header"])
def test_param_headers_as_clients_render_them(arguments, headers):
    """§3.2: booleans travel as true/false (the 2.3.0 client's rendering); integers compare
    numerically; values are base64-decoded before comparing."""
    check_param_headers(headers, SCHEMA, arguments)


@pytest.mark.parametrize(("arguments", "headers"), [
    ({"flag": True}, {"mcp-param-flag": ["True"]}),
    ({"flag": True}, {}),
    ({"count": 42}, {"mcp-param-count": ["42.5"]}),
    ({"region": "eu"}, {"mcp-param-region": ["us"]}),
    ({}, {"mcp-param-region": ["eu"]}),
    ({"region": None}, {"mcp-param-region": ["eu"]}),
], ids=["python-bool", "missing", "fraction", "mismatch", "header-without-argument",
        "header-for-null"])
def test_param_header_mismatch_is_32020(arguments, headers):
    """§3.3 step 4; a header whose argument the body does not carry is a mismatch too (what
    intermediaries route on must be what the server executes; the 2.3.0 server refuses it)."""
    with pytest.raises(JsonRpcError) as caught:
        check_param_headers(headers, SCHEMA, arguments)
    assert caught.value.code == -32020


def test_step_up_403_echoes_the_request_id(mcp_client, mint_token, mcp_app):
    """JSON-RPC 2.0 §5: an error answering a request whose id could be read carries that id
    (null only for parse errors and invalid requests); the insufficient_scope 403 is one."""
    token = mint_token("alice", audience=mcp_app.extensions["espomcp"].settings.audience)
    response = post(mcp_client, token, {"jsonrpc": "2.0", "id": 42, "method": "tools/call",
                                        "params": {"name": "delete_record", "arguments": {
                                            "entity_type": "Contact", "id": "0" * 17}}},
                    **{"MCP-Protocol-Version": "2025-11-25"})
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert response.get_json()["id"] == 42


def test_options_is_405_allow_post_after_the_origin_check(mcp_client):
    """§2: any method but POST → 405 with ``Allow: POST`` (Flask's automatic OPTIONS answered
    200 advertising GET/PUT/DELETE, before the Origin check)."""
    response = mcp_client.open("/mcp", method="OPTIONS")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    foreign = mcp_client.open("/mcp", method="OPTIONS", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


def test_param_headers_round_trip_with_the_official_client(make_settings, mint_token):
    """§3.2 interop: the 2.3.0 client mirrors x-mcp-header arguments (bool, int, non-ASCII
    string) into Mcp-Param-* headers after tools/list; the server must accept its rendering."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from espomcp import create_app
    from espomcp.mcp.registry import READ, Tool
    from fakes.server import ServerThread, free_port

    port = free_port()
    app = create_app(make_settings(public_url=f"http://127.0.0.1:{port}"))
    app.extensions["espomcp"].registry.add(Tool(
        name="echo_params", title="Echo", description="Echo the arguments.",
        input_schema={**SCHEMA, "additionalProperties": False},
        output_schema={"type": "object"}, handler=lambda ctx, args: dict(args),
        annotations=READ))
    server = ServerThread(app, port=port).start()
    url = f"{server.url}/mcp"
    token = mint_token("alice", audience=url)
    arguments = {"flag": True, "count": 42, "region": "Zürich "}

    async def run() -> Any:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                      timeout=30) as http, \
                Client(streamable_http_client(url, http_client=http), mode=MODERN,
                       cache=None) as client:
            await client.list_tools()
            return await client.call_tool("echo_params", arguments)

    try:
        result = anyio.run(run)
    finally:
        server.stop()
    assert result.is_error is False and result.structured_content == arguments
