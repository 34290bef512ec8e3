"""The audit log: JSON lines without secrets, safe concurrent appends, a cheap tail reader."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from espomcp import create_app
from espomcp.audit import AuditLog
from espomcp.auth.principal import Principal
from espomcp.mcp.registry import WRITE, Tool
from espomcp.settings import Settings
from fakes.auth0 import FakeAuth0

ALICE = Principal(sub="auth0|alice", scopes=frozenset({"espocrm:contacts:read"}),
                  email="alice@example.com", client_id="cli-1",
                  claims={"secret_claim": "do-not-log"})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_record_writes_who_what_and_decision(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", user_id_of=lambda p: "66a0c1d2e3f4a5b60")
    audit.record(ALICE, {"tool": "get_record", "entity_type": "Contact",
                         "record_id": "66a0c1d2e3f4a5b6c", "decision": "deny", "layer": "fga",
                         "reason": "no can_read", "duration_ms": 1.5,
                         "access_token": "eyJhbGciOi.secret", "Authorization": "Bearer x",
                         "missing": ["espocrm:contacts:write"]})
    (line,) = lines(tmp_path / "audit.jsonl")
    assert line["sub"] == "auth0|alice" and line["user_id"] == "66a0c1d2e3f4a5b60"
    assert line["client_id"] == "cli-1"
    assert (line["tool"], line["entity_type"], line["record_id"]) == \
        ("get_record", "Contact", "66a0c1d2e3f4a5b6c")
    assert (line["decision"], line["layer"], line["reason"]) == ("deny", "fga", "no can_read")
    assert line["duration_ms"] == 1.5 and line["ts"].endswith("Z")
    assert line["missing"] == ["espocrm:contacts:write"]
    text = (tmp_path / "audit.jsonl").read_text()
    assert "secret" not in text and "Bearer" not in text and "do-not-log" not in text


def test_recent_is_newest_first_and_filters(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    bob = Principal(sub="auth0|bob", email="bob@example.com")
    for n in range(30):
        audit.record(ALICE if n % 2 else bob, {"tool": f"t{n % 3}", "decision": "allow",
                                               "layer": "tool", "n": n})
    assert [e["n"] for e in audit.recent(3)] == [29, 28, 27]
    assert [e["n"] for e in audit.recent(2, tool="t0")] == [27, 24]
    assert all(e["sub"] == "auth0|bob" for e in audit.recent(100, user="BOB"))
    assert len(audit.recent(100, user="bob")) == 15
    assert audit.recent(5, decision="deny") == []
    assert AuditLog(tmp_path / "missing.jsonl").recent() == []


def test_tail_reading_spans_blocks_and_rotation(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", max_bytes=200_000)
    for n in range(3000):
        audit.record(ALICE, {"tool": "x", "decision": "allow", "layer": "tool", "n": n,
                             "reason": "r" * 40})
    assert (tmp_path / "audit.jsonl.1").exists()
    assert [e["n"] for e in audit.recent(2)] == [2999, 2998]
    newest = audit.recent(3000)
    assert [e["n"] for e in newest[:5]] == [2999, 2998, 2997, 2996, 2995]
    assert len({e["n"] for e in newest}) == len(newest)  # no line read twice or torn


def test_counts_are_bounded_by_layer_and_decision(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.record(ALICE, {"decision": "allow", "layer": "tool"})
    audit.record(ALICE, {"decision": "deny", "layer": "scope"})
    audit.record(ALICE, {"decision": "deny", "layer": "scope"})
    for n in range(50):
        audit.record(None, {"decision": f"weird{n}", "layer": f"layer{n}"})
    counts = audit.counts()
    assert counts[("allow", "tool")] == 1 and counts[("deny", "scope")] == 2
    assert counts[("other", "other")] == 50 and len(counts) == 3


def test_threads_never_tear_lines(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")

    def work(worker: int) -> None:
        for n in range(150):
            audit.record(ALICE, {"decision": "allow", "layer": "tool", "reason": "x" * 300,
                                 "worker": worker, "n": n})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lines(tmp_path / "audit.jsonl")) == 900


def test_processes_never_tear_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = ("import sys; from pathlib import Path; from espomcp.audit import AuditLog; "
              "a = AuditLog(Path(sys.argv[1])); "
              "[a.record(None, {'decision': 'allow', 'layer': 'tool', 'reason': 'y' * 2000, "
              "'n': n}) for n in range(200)]")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)]) for _ in range(3)]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    assert len(lines(path)) == 600


def test_app_audits_rejected_tokens_and_scope_denials(
        auth_settings: Callable[..., Settings], auth_server: FakeAuth0) -> None:
    settings = auth_settings()
    app = create_app(settings)
    client = app.test_client()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    client.post("/mcp", json=body)  # no token at all: not an audit event
    client.post("/mcp", json=body, headers={"Authorization": "Bearer not-a-jwt"})
    audit = app.extensions["espomcp"].audit
    (event,) = audit.recent(10)
    assert (event["decision"], event["layer"], event["sub"]) == ("deny", "auth", None)
    assert event["reason"].startswith("invalid_token")
    assert "not-a-jwt" not in (settings.data_dir / "audit.jsonl").read_text()

    app.extensions["espomcp"].registry.add(Tool(
        name="needs_write", title="t", description="test only",
        input_schema={"type": "object"}, handler=lambda ctx, args: {}, annotations=WRITE,
        required_scopes=lambda args: frozenset({"espocrm:contacts:write"})))
    token = auth_server.backend.mint("alice", ["espocrm:contacts:read"])
    denied = client.post("/mcp", json={**body, "method": "tools/call",
                                       "params": {"name": "needs_write", "arguments": {}}},
                         headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403
    event = audit.recent(1)[0]
    assert (event["decision"], event["layer"], event["tool"]) == ("deny", "scope", "needs_write")
    assert event["sub"] == "auth0|alice" and event["client_id"] == "demo-client"
    assert event["missing"] == ["espocrm:contacts:write"]
