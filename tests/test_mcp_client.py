"""The official ``mcp`` client against a real server, in the 2026-07-28 and legacy modes."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

MODES = ["2026-07-28", "legacy", "auto"]


async def _session(url: str, token: str, mode: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
            Client(streamable_http_client(url, http_client=http), mode=mode,
                   cache=None) as client:
        return await body(client)


def run(url: str, token: str, mode: str, body: Any) -> Any:
    return anyio.run(_session, url, token, mode, body)


@pytest.mark.parametrize("mode", MODES)
def test_list_and_call_whoami(mcp_server, mint_token, mode):
    url = mcp_server.url + "/mcp"
    token = mint_token("alice", audience=url)

    async def body(client: Any) -> Any:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("whoami", {})
        return client.protocol_version, tools, result

    version, tools, result = run(url, token, mode, body)
    assert version == ("2026-07-28" if mode != "legacy" else "2025-11-25")
    by_name = {tool.name: tool for tool in tools}
    assert "whoami" in by_name
    assert by_name["whoami"].annotations.read_only_hint is True
    assert result.is_error is False
    assert result.structured_content["sub"].endswith("alice")


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
def test_unknown_tool_raises_32602(mcp_server, mint_token, mode):
    url = mcp_server.url + "/mcp"
    token = mint_token("alice", audience=url)

    async def body(client: Any) -> Any:
        with pytest.raises(MCPError) as info:
            await client.call_tool("no_such_tool", {})
        return info.value.code

    assert run(url, token, mode, body) == -32602


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
def test_invalid_arguments_are_a_tool_error(mcp_server, mint_token, mode):
    url = mcp_server.url + "/mcp"
    token = mint_token("alice", audience=url)

    async def body(client: Any) -> Any:
        return await client.call_tool("whoami", {"bogus": True})

    result = run(url, token, mode, body)
    assert result.is_error is True
    assert "bogus" in result.content[0].text
