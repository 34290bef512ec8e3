"""The MCP Inspector CLI (2.x) against the real espomcp server, in both protocol eras.

With a token minted by the fake Auth0 (``--header "Authorization: Bearer …"``), and once through
the Inspector's own OAuth flow: protected-resource discovery, dynamic client registration,
PKCE, the fake Auth0 login form (filled in here as a user would), token exchange, tool call.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from fakes.auth0 import FakeAuth0
from fakes.server import ServerThread, free_port
from tests.fixtures.node_tools import NodeTools

pytestmark = pytest.mark.node

ERAS = ["legacy", "modern"]


def inspect(node_tools: NodeTools, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return node_tools.run(node_tools.inspector, "--cli", url, "--transport", "http",
                          "--format", "json", "--connect-timeout", "10000", *args)


def result_of(done: subprocess.CompletedProcess[str], exit_code: int = 0) -> dict[str, Any]:
    """The JSON result the Inspector printed (it exits 5 when a tool answered isError)."""
    assert done.returncode == exit_code, f"exit {done.returncode}: {done.stdout}\n{done.stderr[-2000:]}"
    return json.loads(done.stdout)["result"]


@pytest.fixture
def mcp_url(mcp_server: ServerThread) -> str:
    return f"{mcp_server.url}/mcp"


@pytest.fixture
def bearer(mint_token: Callable[..., str], mcp_url: str) -> Callable[[str], str]:
    """``bearer(user)`` → the Inspector's ``--header`` value carrying a token for ``user``."""
    return lambda user: f"Authorization: Bearer {mint_token(user, audience=mcp_url)}"


@pytest.mark.parametrize("era", ERAS)
def test_tools_list_is_portable_and_annotated(node_tools: NodeTools, mcp_url: str,
                                              bearer: Callable[[str], str], era: str) -> None:
    # --strict exits 6 on any error-severity schema portability problem.
    done = inspect(node_tools, mcp_url, "--protocol-era", era, "--method", "tools/list",
                   "--strict", "--header", bearer("alice"))
    tools = {tool["name"]: tool for tool in result_of(done)["tools"]}
    assert {"whoami", "search_records"} <= set(tools)
    for tool in tools.values():
        assert tool["inputSchema"]["type"] == "object"
        assert set(tool["annotations"]) >= {"readOnlyHint", "destructiveHint"}
    assert tools["whoami"]["annotations"]["readOnlyHint"] is True
    assert tools["search_records"]["annotations"]["readOnlyHint"] is True


@pytest.mark.parametrize("era", [*ERAS, "auto"])
def test_whoami_answers_for_the_token_holder(node_tools: NodeTools, mcp_url: str,
                                             bearer: Callable[[str], str], era: str) -> None:
    done = inspect(node_tools, mcp_url, "--protocol-era", era, "--method", "tools/call",
                   "--tool-name", "whoami", "--header", bearer("bob"))
    result = result_of(done)
    assert result["isError"] is False
    me = result["structuredContent"]
    assert me["sub"] == "auth0|bob" and me["email"] == "bob@example.com"
    assert "espocrm:contacts:read" in me["scopes"]
    assert json.loads(result["content"][0]["text"]) == me


def test_search_records_agrees_with_the_official_client(node_tools: NodeTools,
                                                        embedded_world: Any) -> None:
    """Seeded CRM + FGA store: the Inspector sees exactly what the Python SDK client sees,
    per user (carol, in Support, only the contacts she may read; admin all), in either era."""
    args = {"entity_type": "Contact", "limit": 5}
    totals = {}
    for user, era in (("carol", "modern"), ("admin", "legacy")):
        done = inspect(node_tools, embedded_world.url, "--protocol-era", era, "--method",
                       "tools/call", "--tool-name", "search_records", "--tool-args-json",
                       json.dumps(args), "--header",
                       f"Authorization: Bearer {embedded_world.token(user)}")
        result = result_of(done)
        assert result["isError"] is False, result["content"]
        page = result["structuredContent"]
        assert page == embedded_world.ok(user, "search_records", args)
        assert 0 < len(page["records"]) <= 5
        totals[user] = page["total"]
    assert totals["carol"] < totals["admin"]


def test_a_token_from_espomcp_token_works_in_the_inspector(
        node_tools: NodeTools, mcp_server: ServerThread, mcp_url: str, auth_server: FakeAuth0,
        tmp_path: Path) -> None:
    """The docs/clients.md recipe: ``--header "Authorization: Bearer $(espomcp token bob)"``."""
    env = {**os.environ, "ESPOMCP_AUTH_ISSUER": auth_server.url,
           "ESPOMCP_PUBLIC_URL": mcp_server.url}
    minted = subprocess.run([sys.executable, "-m", "espomcp", "token", "bob"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert minted.returncode == 0, minted.stderr
    done = inspect(node_tools, mcp_url, "--method", "tools/call", "--tool-name", "whoami",
                   "--header", f"Authorization: Bearer {minted.stdout.strip()}")
    me = result_of(done)["structuredContent"]
    assert me["sub"] == "auth0|bob" and "espocrm:contacts:delete" in me["scopes"]


def test_bad_arguments_come_back_as_a_tool_error(node_tools: NodeTools, mcp_url: str,
                                                 bearer: Callable[[str], str]) -> None:
    done = inspect(node_tools, mcp_url, "--method", "tools/call", "--tool-name",
                   "search_records", "--tool-args-json", '{"entity_type": "Contact", "limit": 0}',
                   "--header", bearer("alice"))
    result = result_of(done, exit_code=5)
    assert result["isError"] is True
    assert "limit" in result["content"][0]["text"]


def test_without_a_token_the_inspector_is_told_to_authenticate(node_tools: NodeTools,
                                                               mcp_url: str) -> None:
    done = inspect(node_tools, mcp_url, "--method", "tools/list", "--stored-auth-only")
    assert done.returncode != 0
    assert json.loads(done.stderr.strip().splitlines()[-1])["error"]["code"] == "auth_required"


def test_inspector_oauth_flow_against_the_fake_auth0(node_tools: NodeTools, mcp_url: str,
                                                     auth_server: FakeAuth0) -> None:
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    out = login_with_inspector(node_tools, "carol", callback, mcp_url, "--method", "tools/call",
                               "--tool-name", "whoami")
    me = out["result"]["structuredContent"]
    assert me["sub"] == "auth0|carol"
    # With nothing configured the Inspector asks for the resource's scopes_supported.
    assert "espocrm:cases:read" in me["scopes"] and "espocrm:cases:write" not in me["scopes"]
    [registration] = auth_server.backend.requests_to("register")
    assert callback in registration["redirect_uris"]
    [authorize] = [r for r in auth_server.backend.requests_to("authorize") if r["method"] == "POST"]
    assert authorize["resource"] == mcp_url and authorize["code_challenge_method"] == "S256"
    [token] = auth_server.backend.requests_to("token")
    assert token["grant_type"] == "authorization_code" and token["resource"] == mcp_url


def test_inspector_config_file_asks_for_write_scopes(node_tools: NodeTools, mcp_url: str,
                                                     auth_server: FakeAuth0) -> None:
    """The docs/clients.md recipe for write access with the Inspector (it cannot step up)."""
    config = node_tools.home / "espocrm.json"
    config.write_text(json.dumps({"mcpServers": {"espocrm": {
        "type": "streamable-http", "url": mcp_url,
        "oauth": {"scopes": "espocrm:contacts:read espocrm:contacts:write"}}}}))
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    out = login_with_inspector(node_tools, "alice", callback, "--config", str(config),
                               "--server", "espocrm", "--method", "tools/call",
                               "--tool-name", "whoami")
    scopes = set(out["result"]["structuredContent"]["scopes"])
    assert {"espocrm:contacts:read", "espocrm:contacts:write"} <= scopes
    assert "espocrm:accounts:read" not in scopes


@pytest.mark.browser
def test_inspector_web_ui_login_and_whoami(node_tools: NodeTools, mcp_url: str,
                                           auth_server: FakeAuth0) -> None:
    """The docs/clients.md walk-through: Connect, the fake Auth0 login page, tools, whoami."""
    from playwright.sync_api import expect, sync_playwright

    env = {"CLIENT_PORT": str(free_port()), "MCP_SANDBOX_PORT": str(free_port()),
           "BROWSER": "true", "MCP_INSPECTOR_SECRET_STORE": "memory"}
    with node_tools.start(node_tools.inspector, "--web", "--transport", "http",
                          "--server-url", mcp_url, env=env) as proc:
        lines: queue.Queue[str] = queue.Queue()
        readers = [threading.Thread(target=pump, args=(stream, lines), daemon=True)
                   for stream in (proc.stdout, proc.stderr)]
        for reader in readers:
            reader.start()
        try:
            ui_url = wait_for_line(lines, r"(http://127\.0\.0\.1:\d+\?MCP_INSPECTOR_API_TOKEN=\w+)")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium"),
                                             args=["--no-sandbox"])
                try:
                    page = browser.new_page()
                    page.goto(ui_url)
                    page.get_by_role("switch", name=re.compile("Connect")).click(force=True)
                    page.wait_for_url(f"{auth_server.url}authorize?*")
                    expect(page.get_by_text("to continue to MCP Inspector")).to_be_visible()
                    page.fill("input[name=username]", "alice")
                    page.fill("input[name=password]", "demo")
                    page.click("button[type=submit]")
                    expect(page.get_by_text("Connected", exact=True)).to_be_visible()
                    page.get_by_text("Tools", exact=True).first.click()
                    page.get_by_text("whoami", exact=True).first.click()
                    page.get_by_role("button", name="Execute Tool").click()
                    expect(page.get_by_text("auth0|alice").first).to_be_visible()
                finally:
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            for reader in readers:
                reader.join(timeout=5)


def login_with_inspector(node_tools: NodeTools, user: str, callback: str, *args: str
                         ) -> dict[str, Any]:
    """Run the Inspector CLI through its interactive OAuth flow, logging in as ``user``."""
    env = {"MCP_AUTO_OPEN_ENABLED": "true", "BROWSER": "true",
           "MCP_INSPECTOR_SECRET_STORE": "memory"}
    with node_tools.start(node_tools.inspector, "--cli", *args, "--format", "json",
                          "--callback-url", callback, env=env) as proc:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=pump, args=(proc.stderr, lines), daemon=True)
        reader.start()
        try:
            authorize_url = wait_for_line(lines, r"Please navigate to: (\S+)")
            # The user's browser: the fake Auth0 login form, then the redirect to the Inspector.
            login = requests.post(authorize_url, data={"username": user, "password": "demo"},
                                  allow_redirects=False, timeout=10)
            assert login.status_code == 302
            assert login.headers["Location"].startswith(callback + "?code=")
            assert requests.get(login.headers["Location"], timeout=10).status_code == 200
            proc.wait(timeout=30)  # the output is one small JSON line: no pipe can fill up
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(timeout=5)
        out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, out
    return json.loads(out)


def pump(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    for line in stream or ():
        lines.put(line)


def wait_for_line(lines: queue.Queue[str], pattern: str, timeout: float = 30.0) -> str:
    """The first group of the first output line matching ``pattern``."""
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the Inspector never printed {pattern!r}:\n"
                                 + "".join(seen)) from None
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match.group(1)
