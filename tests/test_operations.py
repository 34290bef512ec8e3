"""Operations: what /metrics tells an operator after real traffic, and a graceful shutdown
under gunicorn (SIGTERM lets an in-flight request finish, then the workers exit cleanly).

Basic presence of the counters, their aggregation across workers and the exit hook that
stops each worker's outbox drainer are covered by tests/test_app.py and
tests/test_gunicorn_conf.py; these tests check the values and the in-flight request.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from espomcp.fga.tuples import TupleKey
from fakes.auth0 import FakeAuth0
from fakes.espocrm import FakeEspoCRM
from fakes.server import free_port
from tests.fixtures.served import ROOT, Gunicorn, backfilled_env

HEADERS = {"Accept": "application/json", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-11-25"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def owned(world: Any, entity_type: str, user: str) -> str:
    uid = world.user_id(user)
    return next(i for i, r in world.crm.state.table(entity_type).items()
                if r.get("assignedUserId") == uid and r.get("teamsIds") == [
                    world.crm.state.user_by_name(user)["defaultTeamId"]])


def test_metrics_count_decisions_by_layer_latency_and_outbox_depth(embedded_world):
    world = embedded_world
    client = world.app.test_client()

    def call(user: str, tool: str, args: dict[str, Any]) -> int:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": args}}
        return client.post("/mcp", json=body, headers={
            **HEADERS, "Authorization": f"Bearer {world.token(user)}"}).status_code

    before = samples(client.get("/metrics").get_data(as_text=True))
    contact = owned(world, "Contact", "alice")
    assert call("alice", "get_record", {"entity_type": "Contact", "id": contact}) == 200
    assert call("carol", "get_record", {"entity_type": "Contact", "id": contact}) == 200  # fga deny
    assert call("carol", "get_record", {"entity_type": "Lead", "id": contact}) == 403  # scope
    assert call("admin", "whoami", {}) == 200  # identity cached: the fault hits the tool's read
    world.crm.set_fault("500", count=1)
    assert call("admin", "get_record", {"entity_type": "Contact", "id": contact}) == 200  # crm error
    outbox = world.services.extras["outbox"]
    outbox.stop_drainer()
    probe = TupleKey("user:metrics-probe", "collaborator", "contact:metricsprobe00")
    try:
        outbox.enqueue([probe], error="test")
        after = samples(client.get("/metrics").get_data(as_text=True))
    finally:
        outbox.discard([probe])
        outbox.start_drainer(world.services.fga)

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return value(after, name, **labels) - value(before, name, **labels) >= by

    assert grew("espomcp_decisions_total", decision="allow", layer="tool")
    assert grew("espomcp_decisions_total", decision="deny", layer="fga")
    assert grew("espomcp_decisions_total", decision="deny", layer="scope")
    assert grew("espomcp_decisions_total", decision="error", layer="crm")
    assert grew("espomcp_tool_calls_total", tool="get_record", outcome="allow")
    assert grew("espomcp_tool_calls_total", 2, tool="get_record", outcome="deny")
    assert grew("espomcp_http_requests_total", 3, path="/mcp", status="200")
    assert grew("espomcp_http_requests_total", 1, path="/mcp", status="403")
    assert grew("espomcp_request_duration_seconds_count", 4, mcp_method="tools/call")
    assert value(after, "espomcp_request_duration_seconds_bucket", mcp_method="tools/call",
                 le="+Inf") >= 4
    assert value(after, "espomcp_outbox_depth") >= 1


def test_sigterm_lets_an_inflight_request_finish_and_stops_cleanly(tmp_path: Path):
    auth, crm = FakeAuth0().start(), FakeEspoCRM(None).start()
    port = free_port()
    env = backfilled_env(tmp_path / "data", auth, crm, port)
    env.update({"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1",
                "GUNICORN_THREADS": "2", "GUNICORN_GRACEFUL_TIMEOUT": "10"})
    server = Gunicorn(env, port, "-c", str(ROOT / "gunicorn.conf.py"),
                      log=tmp_path / "gunicorn.log").start()
    url = server.url + "/mcp"
    token = auth.backend.mint("alice", aud=url)
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    alice = crm.as_user("alice")
    contact = next(i for i, r in crm.state.table("Contact").items()
                   if r.get("assignedUserId") == alice)

    def rpc(name: str, arguments: dict[str, Any]) -> requests.Response:
        return requests.post(url, headers=headers, timeout=30, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}})

    answers: list[requests.Response] = []
    try:
        assert rpc("whoami", {}).ok  # identity cached: the next request makes one slow call
        crm.set_fault("slow", delay=2.0, count=1)
        flight = threading.Thread(target=lambda: answers.append(
            rpc("get_record", {"entity_type": "Contact", "id": contact})))
        started = time.monotonic()
        flight.start()
        deadline = time.monotonic() + 10
        while not [r for r in crm.api_requests(f"/Contact/{contact}") if r["status"] is None]:
            assert time.monotonic() < deadline, "the request never reached EspoCRM"
            time.sleep(0.02)
        code = server.stop()  # SIGTERM while the tool call waits on EspoCRM
        stopped = time.monotonic() - started
        flight.join(timeout=15)
    finally:
        server.stop()
        crm.stop()
        auth.stop()
    assert answers, "the in-flight request got no answer"
    result = answers[0].json()["result"]
    assert answers[0].status_code == 200 and result["isError"] is False, result
    assert result["structuredContent"]["record"]["id"] == contact
    assert code == 0  # the master and its worker exited cleanly (worker_exit hook ran)
    assert 1.5 < stopped < 10, stopped  # waited for the request, not for the graceful timeout
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log
