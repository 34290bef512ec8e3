"""mcp-protocol §5.3: with an outputSchema, every successful result MUST carry conforming
structuredContent. Every registered tool runs through every success path we can provoke (raw
HTTP, both eras) and its structuredContent is validated with jsonschema against the schema the
server advertises in tools/list; results carry the modern stamps only in 2026-07-28."""

from __future__ import annotations

from typing import Any

import requests
from jsonschema import Draft202012Validator

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}}


def rpc(world: Any, token: str, method: str, params: dict[str, Any], modern: bool) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    if modern:
        params = {**params, "_meta": META}
        headers.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": method})
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
    else:
        headers["MCP-Protocol-Version"] = "2025-11-25"
    response = requests.post(world.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                              "params": params}, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def ids_of(world: Any, entity_type: str, **match: Any) -> list[str]:
    return [rid for rid, r in world.crm.state.table(entity_type).items()
            if all(r.get(k) == v for k, v in match.items())]


def success_calls(world: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(user, tool, arguments) covering each tool's success paths, partial results included."""
    alice = world.user_id("alice")
    account = ids_of(world, "Account", assignedUserId=alice)[0]
    contact = world.crm.state.table("Contact")[ids_of(world, "Contact", assignedUserId=alice)[0]]
    leads = [rid for rid, r in world.crm.state.table("Lead").items()
             if r.get("assignedUserId") == alice and r.get("status") != "Converted"]
    dup = {"firstName": contact["firstName"], "lastName": contact["lastName"]}
    acme = world.crm.state.table("Account")[account]["name"]
    return [
        ("alice", "whoami", {}),
        ("alice", "list_entity_types", {}),
        ("alice", "describe_entity", {"entity_type": "Contact"}),
        ("alice", "search_records", {"entity_type": "Contact", "limit": 2}),
        ("alice", "search_records", {"entity_type": "Contact", "text": "zzzz-none"}),
        ("alice", "global_search", {"query": acme[:3], "limit": 1}),
        ("alice", "global_search", {"query": "zzzz-none"}),
        ("alice", "get_record", {"entity_type": "Contact", "id": contact["id"]}),
        ("alice", "get_record", {"entity_type": "Contact", "id": contact["id"],
                                 "select": ["lastName"]}),
        ("alice", "create_record", {"entity_type": "Contact", "data": dup}),
        ("bob", "create_record", {"entity_type": "Contact", "data": {"lastName": "Schema"}}),
        ("alice", "update_record", {"entity_type": "Contact", "id": contact["id"],
                                    "data": {"title": "Checked"}}),
        ("bob", "assign_record", {"entity_type": "Contact", "id": contact["id"],
                                    "assigned_user_id": alice}),
        ("alice", "list_related", {"entity_type": "Account", "id": account, "link": "contacts"}),
        ("alice", "link_records", {"entity_type": "Account", "id": account, "link": "contacts",
                                   "related_ids": [contact["id"]]}),
        ("alice", "unlink_records", {"entity_type": "Account", "id": account,
                                     "link": "contacts", "related_ids": [contact["id"]]}),
        ("alice", "post_note", {"entity_type": "Account", "id": account, "post": "schema"}),
        ("alice", "get_stream", {"entity_type": "Account", "id": account}),
        ("alice", "convert_lead", {"lead_id": leads[0], "contact": dup}),
        ("alice", "convert_lead", {"lead_id": leads[0], "account": {"name": "Schema Co"},
                                   "skip_duplicate_check": True}),
        ("bob", "bulk_create_records", {"entity_type": "Task", "records": [
            {"name": "schema one"}, {"description": "no name"}]}),
        ("bob", "bulk_update_records", {"entity_type": "Task", "items": [
            {"id": ids_of(world, "Task", name="schema one")[0] if ids_of(
                world, "Task", name="schema one") else "0" * 17, "data": {"status": "Started"}},
            {"id": "../bad", "data": {}}]}),
        ("bob", "delete_record", {"entity_type": "Contact",
                                    "id": ids_of(world, "Contact", lastName="Schema")[0]
                                    if ids_of(world, "Contact", lastName="Schema") else "0" * 17}),
        ("bob", "bulk_delete_records", {"entity_type": "Task",
                                        "ids": [*ids_of(world, "Task", name="schema one"),
                                                "../bad"]}),
    ]


def test_every_tool_result_conforms_to_its_output_schema(embedded_world):
    token = {u: embedded_world.token(u) for u in ("alice", "bob", "admin")}
    for modern in (True, False):
        listed = rpc(embedded_world, token["admin"], "tools/list", {}, modern)["tools"]
        schemas = {t["name"]: t.get("outputSchema") for t in listed}
        seen: set[str] = set()
        # Calls are built lazily: later ones use records the earlier ones created.
        for index in range(len(success_calls(embedded_world))):
            user, tool, args = success_calls(embedded_world)[index]
            result = rpc(embedded_world, token[user], "tools/call",
                         {"name": tool, "arguments": args}, modern)
            if modern:  # §3.5 stamps; §4.2: never in legacy results
                assert result["resultType"] == "complete" and "_meta" in result, tool
            else:
                assert not {"resultType", "ttlMs", "cacheScope", "_meta"} & set(result), tool
            if result["isError"]:
                continue
            seen.add(tool)
            schema = schemas[tool]
            assert schema is not None and schema.get("type") == "object", tool
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(
                result["structuredContent"])]
            assert not errors, (tool, args, errors)
        assert seen == set(schemas), set(schemas) - seen
