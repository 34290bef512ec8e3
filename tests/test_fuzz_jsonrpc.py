"""Property-based fuzzing of /mcp with a valid token: raw bodies, near-valid envelopes, headers
and every tool's arguments. Whatever arrives, the answer is never a 5xx and never a traceback:
a well-formed JSON-RPC error, a 202 for notifications, an HTTP-level refusal with a JSON body,
or a tool result with ``isError`` true or false. Seeded examples keep CI reproducible.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
TOOL_FUZZ = settings(FUZZ, max_examples=12)  # per tool and era
VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2026-07-28"]
METHODS = ["initialize", "ping", "tools/list", "tools/call", "server/discover",
           "notifications/initialized", "resources/list"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def assert_well_formed(response: Any) -> dict[str, Any] | None:
    """The invariant of the whole module; returns the JSON body (None for 202)."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:500]
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    if response.status_code == 202:
        assert text == ""
        return None
    body = json.loads(text)
    assert isinstance(body, dict)
    if "jsonrpc" in body:
        assert body["jsonrpc"] == "2.0"
        assert ("error" in body) != ("result" in body), body
        if "error" in body:
            assert isinstance(body["error"]["code"], int)
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        elif isinstance(body["result"], dict) and "isError" in body["result"]:
            assert body["result"]["isError"] in (True, False)
            assert isinstance(body["result"]["content"], list)
    else:
        assert response.status_code >= 400 and "error" in body, body
    return body


def post(world: Any, data: bytes, headers: dict[str, str] | None = None,
         user: str = "admin") -> Any:
    client = world.app.test_client()
    merged = {"Authorization": f"Bearer {world.token(user)}", "Accept": "application/json",
              "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    merged.update(headers or {})
    return client.post("/mcp", data=data, headers=merged)


@FUZZ
@given(body=st.one_of(json_values, st.binary(max_size=200)))
def test_arbitrary_bodies(embedded_world, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert_well_formed(post(embedded_world, data))


def _envelope(method: str, params: Any, id_: Any, jsonrpc: Any, drop: list[str]) -> dict:
    body = {"jsonrpc": jsonrpc, "id": id_, "method": method, "params": params}
    for key in drop:
        body.pop(key, None)
    return body


envelopes = st.builds(
    _envelope,
    method=st.one_of(st.sampled_from(METHODS), st.text(max_size=20)),
    params=st.one_of(json_values, st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["get_record", "whoami", "search_records"]),
                           json_scalars),
         "arguments": json_values}), st.fixed_dictionaries({"protocolVersion": json_scalars})),
    id_=st.one_of(st.integers(), st.text(max_size=10), st.none(), st.floats(), st.lists(
        st.integers(), max_size=2)),
    jsonrpc=st.sampled_from(["2.0", "2.0", "1.0", 2, None]),
    drop=st.lists(st.sampled_from(["jsonrpc", "id", "method", "params"]), max_size=2),
)


@FUZZ
@given(body=envelopes)
def test_near_valid_envelopes(embedded_world, body):
    assert_well_formed(post(embedded_world, json.dumps(body).encode()))


@FUZZ
@given(digits=st.integers(min_value=300, max_value=6000), depth=st.integers(1, 3000),
       where=st.sampled_from(["id", "params", "arguments"]))
def test_huge_numbers_and_deep_nesting(embedded_world, digits, depth, where):
    huge = "9" * digits
    nested = "[" * depth + "]" * depth
    if where == "id":
        raw = f'{{"jsonrpc":"2.0","id":{huge},"method":"ping"}}'
    elif where == "params":
        raw = f'{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"cursor":{nested}}}}}'
    else:
        raw = ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_records",'
               f'"arguments":{{"entity_type":"Lead","where":{nested},"limit":{huge}}}}}}}')
    assert_well_formed(post(embedded_world, raw.encode()))


@FUZZ
@given(prefix=st.binary(max_size=20), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
                                                           b"\xf8\x88\x80\x80\x80", b"\x00"]))
def test_invalid_utf8(embedded_world, prefix, bad):
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' + prefix + bad + b'"}}'
    assert_well_formed(post(embedded_world, raw))


def _b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@FUZZ
@given(version=st.one_of(st.sampled_from(VERSIONS), header_text),
       method=st.one_of(st.sampled_from(METHODS), header_text),
       name=st.one_of(st.sampled_from(["get_record", "whoami", _b64("whoami"), "=?base64?!!?="]),
                      header_text, header_text.map(_b64)),
       accept=st.one_of(st.sampled_from(["application/json", "text/event-stream", "*/*", ""]),
                        header_text),
       content_type=st.one_of(st.sampled_from(["application/json", "text/plain",
                                               "application/json; charset=latin-1"]), header_text),
       origin=st.one_of(st.none(), st.sampled_from(["http://127.0.0.1:1", "https://evil.example"]),
                        header_text),
       rpc_method=st.sampled_from(METHODS))
def test_arbitrary_headers(embedded_world, version, method, name, accept, content_type, origin,
                           rpc_method):
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method, "Mcp-Name": name,
               "Accept": accept, "Content-Type": content_type}
    if origin is not None:
        headers["Origin"] = origin
    params: dict[str, Any] = {"name": "whoami", "arguments": {}} if rpc_method == "tools/call" else {}
    if version == "2026-07-28":
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": version,
                           "io.modelcontextprotocol/clientCapabilities": {},
                           "io.modelcontextprotocol/clientInfo": {"name": "f", "version": "1"}}
    body = {"jsonrpc": "2.0", "id": 1, "method": rpc_method, "params": params}
    assert_well_formed(post(embedded_world, json.dumps(body).encode(), headers))


# --- every tool's arguments, from its inputSchema plus wrong types ----------------------------
def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that usually fit ``schema``, sometimes do not (wrong types, extra keys)."""
    wrong = json_scalars if depth < 2 else st.none()
    if "enum" in schema:
        enum = st.sampled_from(schema["enum"])
        return st.integers(0, 7).flatmap(lambda n: wrong if n == 0 else enum)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "string":
        right: st.SearchStrategy[Any] = st.one_of(
            st.text(max_size=schema.get("maxLength", 40) + 2),
            st.sampled_from(["../etc/passwd", "66a0c1d2e3f4a5b6c", "' OR 1=1", "%00", "Contact"]))
    elif kind == "integer":
        right = st.integers(min_value=-5, max_value=10**7)
    elif kind == "number":
        right = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        right = st.booleans()
    elif kind == "array":
        items = schema.get("items", {})
        right = st.lists(from_schema(items, depth + 1) if depth < 3 else json_scalars, max_size=4)
    elif kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: from_schema(v, depth + 1) for k, v in props.items() if k in required}
        optional = {k: from_schema(v, depth + 1) for k, v in props.items() if k not in required}
        right = st.fixed_dictionaries(fixed, optional=optional)
        if depth == 0:  # the object itself always (non-objects: test_near_valid_envelopes)
            return st.integers(0, 9).flatmap(
                lambda n: right.map(lambda d: {**d, "unexpected": 1}) if n == 0 else right)
    else:
        right = json_values
    return st.integers(0, 7).flatmap(lambda n: wrong if n == 0 else right)  # 1 in 8 wrong


TOOL_NAMES = ["get_record", "search_records", "global_search", "create_record", "update_record",
              "delete_record", "assign_record", "list_related", "link_records", "unlink_records",
              "post_note", "get_stream", "convert_lead", "bulk_create_records",
              "bulk_update_records", "bulk_delete_records", "describe_entity",
              "list_entity_types", "whoami"]


def test_every_registered_tool_is_fuzzed(embedded_world):
    missing = set(embedded_world.services.registry.names()) - set(TOOL_NAMES)
    assert not missing, f"add {sorted(missing)} to TOOL_NAMES"


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {},
               "io.modelcontextprotocol/clientInfo": {"name": "fuzz", "version": "1"}}


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
@pytest.mark.parametrize("name", TOOL_NAMES)
@TOOL_FUZZ
@given(data=st.data(), user=st.sampled_from(["admin", "alice", "carol"]))
def test_every_tool_with_schema_driven_arguments(embedded_world, name, era, data, user):
    tool = embedded_world.services.registry.get(name)
    assert tool is not None, f"{name} is not registered; update TOOL_NAMES"
    arguments = data.draw(from_schema(tool.input_schema))
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    headers = {"MCP-Protocol-Version": era}
    if era == "2026-07-28":  # the modern era routes on headers that mirror the body
        params["_meta"] = MODERN_META
        headers.update({"Mcp-Method": "tools/call", "Mcp-Name": name})
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    response = post(embedded_world, json.dumps(body).encode(), headers, user=user)
    result = assert_well_formed(response)
    if response.status_code == 403:  # step-up challenge: the scopes do not cover the call
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    elif result is not None and "result" in result:
        assert result["result"]["isError"] in (True, False)
        assert "internal server error" not in result["result"]["content"][0]["text"], arguments
