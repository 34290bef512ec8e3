"""Protocol error cases of /mcp: HTTP status and JSON-RPC code for each (raw HTTP)."""

from __future__ import annotations

import json
from typing import Any

import pytest

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}


def modern_headers(method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method,
               "Accept": "application/json, text/event-stream"}
    if name is not None:
        headers["Mcp-Name"] = name
    headers.update(extra)
    return headers


def rpc(method: str, params: dict[str, Any] | None = None, id_: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        body["params"] = params
    return body


def assert_rpc_error(response: Any, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["jsonrpc"] == "2.0"
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


@pytest.fixture
def post(mcp_client, alice_token):
    def _post(body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
              content_type: str = "application/json") -> Any:
        all_headers = {"Authorization": f"Bearer {alice_token}",
                       "Accept": "application/json, text/event-stream"}
        all_headers.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return mcp_client.post("/mcp", data=data, headers=all_headers, content_type=content_type)

    return _post


# --- HTTP rules common to both eras --------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "PATCH"])
def test_other_methods_are_405_with_allow_post(mcp_client, alice_token, method):
    response = mcp_client.open("/mcp", method=method,
                               headers={"Authorization": f"Bearer {alice_token}"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_foreign_origin_is_403(post):
    response = post(rpc("ping"), {"Origin": "https://evil.example"})
    assert_rpc_error(response, 403, -32600)


def test_loopback_origin_is_allowed(post):
    response = post(rpc("ping"), {"Origin": "http://localhost:6274"})
    assert response.status_code == 200


def test_foreign_host_is_rejected(mcp_client, alice_token):
    response = mcp_client.post("/mcp", json=rpc("ping"), headers={
        "Authorization": f"Bearer {alice_token}", "Host": "attacker.example"})
    assert response.status_code == 421


def test_wrong_content_type_is_415(post):
    response = post(None, raw=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                    content_type="text/plain")
    assert_rpc_error(response, 415, -32600)


def test_accept_without_json_is_406(post):
    response = post(rpc("ping"), {"Accept": "text/event-stream"})
    assert_rpc_error(response, 406, -32600)


def test_accept_wildcard_is_fine(post):
    assert post(rpc("ping"), {"Accept": "*/*"}).status_code == 200


def test_oversized_body_is_413(post, mcp_app):
    limit = mcp_app.extensions["espomcp"].settings.max_body_bytes
    big = rpc("ping", {"pad": "x" * (limit + 10)})
    response = post(big)
    assert response.status_code == 413
    assert "Traceback" not in response.get_data(as_text=True)


def test_parse_error(post):
    body = assert_rpc_error(post(None, raw=b'{"jsonrpc": "2.0", "id": 1,'), 400, -32700)
    assert body["id"] is None


def test_deeply_nested_json_is_a_parse_error_not_a_crash(post):
    assert_rpc_error(post(None, raw=b"[" * 100_000 + b"]" * 100_000), 400, -32700)


@pytest.mark.parametrize("body", [
    [rpc("ping"), rpc("ping", id_=2)],
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"},
    {"jsonrpc": "2.0", "id": True, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": 7},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1, 2]},
    "just a string",
    42,
], ids=["batch", "wrong-version", "no-jsonrpc", "object-id", "bool-id", "method-not-string",
        "params-array", "string", "number"])
def test_invalid_requests_are_400_32600(post, body):
    body_json = assert_rpc_error(post(body), 400, -32600)
    assert body_json["id"] is None


def test_notification_is_202_with_empty_body(post):
    response = post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert response.status_code == 202
    assert response.get_data() == b""


def test_client_response_is_202(post):
    assert post({"jsonrpc": "2.0", "id": 5, "result": {}}).status_code == 202


# --- legacy era ----------------------------------------------------------------------------
@pytest.mark.parametrize("requested,answered", [
    ("2025-11-25", "2025-11-25"), ("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"),
    ("2024-11-05", "2025-11-25"), ("1999-01-01", "2025-11-25"),
])
def test_initialize_negotiates_version(post, requested, answered):
    response = post(rpc("initialize", {"protocolVersion": requested, "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "1"}}))
    assert response.status_code == 200
    result = response.get_json()["result"]
    assert result["protocolVersion"] == answered
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "espomcp"
    assert "Mcp-Session-Id" not in response.headers
    assert "resultType" not in result


def test_legacy_ping_and_unknown_method(post):
    headers = {"MCP-Protocol-Version": "2025-11-25"}
    assert post(rpc("ping"), headers).get_json()["result"] == {}
    assert_rpc_error(post(rpc("nope/method"), headers), 200, -32601)
    assert_rpc_error(post(rpc("server/discover"), headers), 200, -32601)


def test_legacy_request_without_initialize_is_served(post):
    response = post(rpc("tools/list"))
    assert response.status_code == 200
    assert "tools" in response.get_json()["result"]


def test_legacy_unknown_tool_is_32602_in_200(post):
    response = post(rpc("tools/call", {"name": "no_such_tool", "arguments": {}}),
                    {"MCP-Protocol-Version": "2025-06-18"})
    assert_rpc_error(response, 200, -32602)


def test_legacy_tools_list_has_no_modern_fields(post):
    result = post(rpc("tools/list"), {"MCP-Protocol-Version": "2025-11-25"}).get_json()["result"]
    assert "ttlMs" not in result and "resultType" not in result and "_meta" not in result


def test_headerless_request_with_modern_meta_is_400_32020(post):
    assert_rpc_error(post(rpc("tools/list", {"_meta": META})), 400, -32020)


def test_arguments_not_object_is_32602(post):
    response = post(rpc("tools/call", {"name": "whoami", "arguments": [1]}),
                    {"MCP-Protocol-Version": "2025-11-25"})
    assert_rpc_error(response, 200, -32602)


def test_wrong_argument_type_is_tool_error_naming_field(post):
    response = post(rpc("tools/call", {"name": "whoami", "arguments": {"unexpected": 1}}),
                    {"MCP-Protocol-Version": "2025-11-25"})
    result = response.get_json()["result"]
    assert result["isError"] is True
    assert "unexpected" in result["content"][0]["text"]


# --- modern era (2026-07-28) ----------------------------------------------------------------
def test_discover(post):
    response = post(rpc("server/discover", {"_meta": META}), modern_headers("server/discover"))
    assert response.status_code == 200
    result = response.get_json()["result"]
    assert result["resultType"] == "complete"
    assert MODERN in result["supportedVersions"] and "2025-11-25" in result["supportedVersions"]
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["ttlMs"] == 0 and result["cacheScope"] == "private"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "espomcp"


def test_modern_tools_list_is_cacheable_private(post):
    result = post(rpc("tools/list", {"_meta": META}), modern_headers("tools/list")).get_json()
    result = result["result"]
    assert result["resultType"] == "complete"
    assert result["cacheScope"] == "private" and isinstance(result["ttlMs"], int)
    names = [tool["name"] for tool in result["tools"]]
    assert "whoami" in names and names == sorted(names, key=names.index)


def test_modern_missing_meta_is_400_32602(post):
    assert_rpc_error(post(rpc("tools/list", {}), modern_headers("tools/list")), 400, -32602)


def test_modern_meta_without_capabilities_is_400_32602(post):
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN}
    assert_rpc_error(post(rpc("tools/list", {"_meta": meta}), modern_headers("tools/list")),
                     400, -32602)


def test_modern_method_header_mismatch_is_400_32020(post):
    assert_rpc_error(post(rpc("tools/list", {"_meta": META}), modern_headers("server/discover")),
                     400, -32020)


def test_modern_missing_name_header_is_400_32020(post):
    response = post(rpc("tools/call", {"name": "whoami", "arguments": {}, "_meta": META}),
                    modern_headers("tools/call"))
    assert_rpc_error(response, 400, -32020)


def test_modern_base64_name_header(post):
    response = post(rpc("tools/call", {"name": "whoami", "arguments": {}, "_meta": META}),
                    modern_headers("tools/call", "=?base64?d2hvYW1p?="))
    assert response.status_code == 200
    assert response.get_json()["result"]["isError"] is False


def test_modern_malformed_base64_header_is_400_32020(post):
    response = post(rpc("tools/call", {"name": "whoami", "arguments": {}, "_meta": META}),
                    modern_headers("tools/call", "=?base64?d2hvYW1p=?="))
    assert_rpc_error(response, 400, -32020)


def test_modern_version_header_mismatch_is_400_32020(post):
    meta = dict(META, **{"io.modelcontextprotocol/protocolVersion": "2099-01-01"})
    assert_rpc_error(post(rpc("tools/list", {"_meta": meta}), modern_headers("tools/list")),
                     400, -32020)


def test_modern_unsupported_version_is_400_32022(post):
    meta = dict(META, **{"io.modelcontextprotocol/protocolVersion": "2099-01-01"})
    headers = modern_headers("tools/list", **{"MCP-Protocol-Version": "2099-01-01"})
    body = assert_rpc_error(post(rpc("tools/list", {"_meta": meta}), headers), 400, -32022)
    assert body["error"]["data"]["requested"] == "2099-01-01"
    assert MODERN in body["error"]["data"]["supported"]


@pytest.mark.parametrize("method", ["ping", "initialize", "nope/method"])
def test_modern_unknown_method_is_404_32601(post, method):
    assert_rpc_error(post(rpc(method, {"_meta": META}), modern_headers(method)), 404, -32601)


def test_modern_unknown_tool_is_400_32602(post):
    response = post(rpc("tools/call", {"name": "nope", "arguments": {}, "_meta": META}),
                    modern_headers("tools/call", "nope"))
    assert_rpc_error(response, 400, -32602)


def test_modern_tool_result_is_stamped(post):
    response = post(rpc("tools/call", {"name": "whoami", "arguments": {}, "_meta": META}),
                    modern_headers("tools/call", "whoami"))
    result = response.get_json()["result"]
    assert result["resultType"] == "complete"
    assert result["structuredContent"]["sub"]
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


def test_tools_list_cursor_pagination(post, mcp_app):
    registry = mcp_app.extensions["espomcp"].registry
    registry.page_size = 2
    seen: list[str] = []
    cursor = None
    headers = {"MCP-Protocol-Version": "2025-11-25"}
    for _ in range(100):
        params = {"cursor": cursor} if cursor else {}
        result = post(rpc("tools/list", params), headers).get_json()["result"]
        seen += [tool["name"] for tool in result["tools"]]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 1
    bad = post(rpc("tools/list", {"cursor": "not-a-cursor"}), headers)
    assert_rpc_error(bad, 200, -32602)
