"""The official MCP conformance suite against the real espomcp server.

Every server scenario the suite lists is run (``--suite all``) against espomcp on a free
loopback port, authenticated with a real token from the fake Auth0: the suite cannot send a
bearer token, so it goes through ``tests/bearer_proxy.py``. Scenarios that cannot apply to a
tools-only CRM server are listed with reasons in ``test-tools/conformance-expected-failures.yml``;
everything else must pass, and each listed scenario must really fail, for the stated reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fakes.server import ServerThread
from tests.bearer_proxy import start_proxy
from tests.fixtures.node_tools import TOOLS, NodeTools

pytestmark = pytest.mark.node

BASELINE = TOOLS / "conformance-expected-failures.yml"
# Scenarios a tools-only MCP server must pass; they may never move to the baseline.
REQUIRED = {"server-initialize", "ping", "tools-list", "dns-rebinding-protection"}
# The only acceptable reasons for a baseline scenario to fail (see the YAML's comments).
NOT_APPLICABLE = re.compile(r"Unknown tool: \w+|Method not found: [\w/]+|Tool '\w+' not found"
                            r"|provides session ID")
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


@pytest.fixture
def conformance_url(mcp_server: ServerThread, mint_token: Callable[..., str]) -> Iterator[str]:
    """The MCP URL of a bearer-adding proxy in front of the real server (alice's token)."""
    proxy = start_proxy(mcp_server.url, mint_token("alice", audience=f"{mcp_server.url}/mcp"))
    yield f"{proxy.url}/mcp"
    proxy.stop()


def listed_scenarios(node_tools: NodeTools) -> set[str]:
    done = node_tools.run(node_tools.conformance, "list", "--server")
    assert done.returncode == 0, done.stderr
    names = set(re.findall(r"^\s+- ([\w-]+)", done.stdout, re.MULTILINE))
    assert len(names) >= 30, done.stdout
    return names


def load_results(out: Path) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for checks_file in out.glob("*/checks.json"):
        match = RESULT_DIR.match(checks_file.parent.name)
        assert match, checks_file
        results[match["scenario"]] = json.loads(checks_file.read_text())
    return results


def problems(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]


def describe(checks: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c.get('status')} {c.get('id')}: {c.get('errorMessage') or c.get('description')}"
                     for c in checks)


def test_baseline_names_only_real_scenarios_and_spares_the_required_ones(
        node_tools: NodeTools) -> None:
    expected = set(yaml.safe_load(BASELINE.read_text())["server"])
    assert expected <= listed_scenarios(node_tools)
    assert not expected & REQUIRED


def test_conformance_suite_passes_except_the_documented_baseline(
        node_tools: NodeTools, conformance_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = node_tools.run(node_tools.conformance, "server", "--url", conformance_url,
                          "--suite", "all", "--expected-failures", str(BASELINE),
                          "-o", str(out), timeout=120)
    summary = done.stdout[done.stdout.rfind("=== SUMMARY ==="):]
    assert done.returncode == 0, f"{summary}\n{done.stderr[-2000:]}"

    results = load_results(out)
    expected = set(yaml.safe_load(BASELINE.read_text())["server"])
    assert set(results) == listed_scenarios(node_tools), "a scenario did not run"
    for scenario, checks in sorted(results.items()):
        if scenario in expected:
            failed = problems(checks)
            assert failed, f"{scenario} passes now: remove it from the baseline"
            for check in failed:
                reason = check.get("errorMessage") or check.get("description") or ""
                assert NOT_APPLICABLE.search(reason), f"{scenario} failed for another reason: {reason}"
        else:
            assert not problems(checks), f"{scenario}: {describe(checks)}"
            assert any(c.get("status") == "SUCCESS" for c in checks), f"{scenario} checked nothing"
    for scenario in REQUIRED:
        assert all(c["status"] == "SUCCESS" for c in results[scenario]), describe(results[scenario])
