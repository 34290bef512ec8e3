"""Abuse through the app: per-user rate limits, body size limits (chunked too), the overall
time limit of a tool call, and caches that stay bounded under many distinct keys."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from espomcp import create_app
from espomcp.auth.jwks import MAX_KEYS
from fakes.server import ServerThread, free_port
from tests.fixtures.served import Gunicorn, backfilled_env

HEADERS = {"Accept": "application/json", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-11-25"}


def call(client: Any, token: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments or {}}}
    return client.post("/mcp", json=body, headers={**HEADERS, "Authorization": f"Bearer {token}"})


# --- rate limiting ----------------------------------------------------------------------------
def test_rate_limit_is_per_user_with_retry_after(make_settings, mint_token):
    app = create_app(make_settings(rate_limit_per_minute=3))
    client = app.test_client()
    alice, bob = mint_token("alice"), mint_token("bob")
    try:
        assert [call(client, alice, "whoami").status_code for _ in range(3)] == [200] * 3
        limited = call(client, alice, "whoami")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        body = limited.get_json()
        assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32600
        assert "Too many requests" in body["error"]["message"]
        assert call(client, bob, "whoami").status_code == 200  # other users are unaffected
    finally:
        app.extensions["espomcp"].extras["outbox"].stop_drainer()


def test_rate_limiter_memory_stays_bounded_under_many_subjects(make_settings, auth_server):
    app = create_app(make_settings(rate_limit_per_minute=100))
    svc = app.extensions["espomcp"]
    limiter = svc.extras["rate_limiter"]
    limiter.max_users = 25
    client = app.test_client()
    try:
        for n in range(60):
            token = auth_server.backend.mint("alice", sub=f"auth0|flood-{n}",
                                             aud="http://127.0.0.1:8000/mcp")
            assert call(client, token, "whoami").status_code == 200
        assert len(limiter) == 25
    finally:
        svc.extras["outbox"].stop_drainer()


# --- body size -----------------------------------------------------------------------------------
@pytest.fixture
def small_body_server(make_settings: Any) -> Any:
    port = free_port()
    app = create_app(make_settings(public_url=f"http://127.0.0.1:{port}", max_body_bytes=2048))
    server = ServerThread(app, port=port).start()
    yield server
    server.stop()
    app.extensions["espomcp"].extras["outbox"].stop_drainer()


def raw_post(server: Any, head: list[str], body: bytes) -> tuple[int, bytes]:
    """POST raw bytes to ``server`` (anything with ``.url``) and read until it closes."""
    port = int(server.url.rsplit(":", 1)[1])
    request = "\r\n".join(["POST /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}", *head,
                           "Connection: close", "", ""]).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def chunked(payload: bytes, size: int = 500) -> bytes:
    parts = [payload[i:i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def big_body(padding: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping",
                       "params": {"_pad": "x" * padding}}).encode()


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_oversized_bodies_are_413_even_without_content_length(small_body_server, mint_token,
                                                              mode):
    token = mint_token("alice", audience=f"http://127.0.0.1:{small_body_server.port}/mcp")
    head = [f"Authorization: Bearer {token}", "Content-Type: application/json",
            "Accept: application/json"]
    body = big_body(5000)
    if mode == "chunked":
        status, answer = raw_post(small_body_server, [*head, "Transfer-Encoding: chunked"],
                                  chunked(body))
    else:
        status, answer = raw_post(small_body_server, [*head, f"Content-Length: {len(body)}"],
                                  body)
    assert status == 413, answer[:300]
    assert b"Traceback" not in answer
    small = big_body(100)
    status, answer = raw_post(small_body_server, [*head, "Transfer-Encoding: chunked"],
                              chunked(small))
    assert status == 200 and json.loads(answer)["result"] == {}


def test_oversized_chunked_body_is_413_under_gunicorn(tmp_path, auth_server, espocrm_server,
                                                     mint_token):
    port = free_port()
    env = backfilled_env(tmp_path / "data", auth_server, espocrm_server, port)
    env["ESPOMCP_MAX_BODY_BYTES"] = "2048"
    server = Gunicorn(env, port, log=tmp_path / "gunicorn.log").start()
    try:
        token = mint_token("alice", audience=f"{server.url}/mcp")
        head = [f"Authorization: Bearer {token}", "Content-Type: application/json",
                "Accept: application/json", "Transfer-Encoding: chunked"]
        status, answer = raw_post(server, head, chunked(big_body(5000)))
        assert status == 413 and b"Traceback" not in answer, answer[:300]
        status, answer = raw_post(server, head, chunked(big_body(100)))
        assert status == 200 and json.loads(answer)["result"] == {}
    finally:
        assert server.stop() == 0


# --- the overall time limit of a tool call ------------------------------------------------------
def test_a_slow_espocrm_cannot_hold_a_request_past_the_time_limit(embedded_world):
    world = embedded_world
    settings = world.services.settings
    tasks = list(world.crm.state.table("Task"))[:8]
    items = [{"id": t, "data": {"description": "slow"}} for t in tasks]
    world.ok("admin", "whoami")  # identity cached: only the tool's own calls are slow
    saved = settings.request_timeout_seconds
    settings.request_timeout_seconds = 1.0
    world.crm.set_fault("slow", delay=0.4)
    try:
        started = time.monotonic()
        result = world.ok("admin", "bulk_update_records", {"entity_type": "Task", "items": items})
        elapsed = time.monotonic() - started
    finally:
        world.crm.set_fault("off")
        settings.request_timeout_seconds = saved
    # Without the budget: 8 updates x 0.4 s + reads, over 3.2 s. With it: about one second.
    assert elapsed < 3.0, elapsed
    failed = [r for r in result["results"] if not r["ok"]]
    assert failed and all("EspoCRM" in r["error"] for r in failed)
    assert any("time limit" in r["error"] or "did not answer" in r["error"] for r in failed)


def test_time_limit_error_on_a_single_call_tool_is_clear(embedded_world):
    world = embedded_world
    settings = world.services.settings
    contact = next(iter(world.crm.state.table("Contact")))
    world.ok("admin", "whoami")
    saved = settings.request_timeout_seconds
    settings.request_timeout_seconds = 0.5
    world.crm.set_fault("slow", delay=1.5, count=1)
    try:
        started = time.monotonic()
        text = world.error("admin", "get_record", {"entity_type": "Contact", "id": contact})
        elapsed = time.monotonic() - started
    finally:
        world.crm.set_fault("off")
        settings.request_timeout_seconds = saved
    # Without the budget the read would succeed after the fake's 1.5 s (client timeout 10 s).
    assert elapsed < 1.5, elapsed
    assert "EspoCRM" in text and "unavailable" in text.lower()


# --- bounded caches ------------------------------------------------------------------------------
def test_identity_jwks_and_metadata_caches_stay_bounded(embedded_world):
    world = embedded_world
    svc = world.services
    identity = svc.identity
    saved = identity.max_entries
    identity.max_entries = 10
    client = world.app.test_client()
    try:
        for n in range(40):  # distinct subjects and emails: mapped or not, each is cached
            token = world.auth.backend.mint("alice", sub=f"auth0|many-{n}", aud=world.url,
                                            email=f"nobody{n}@example.com")
            assert call(client, token, "whoami").status_code == 200
        assert len(identity._cache) <= 10
        source = svc.authenticator.validator.keys  # the JwksKeySource
        for n in range(40):  # forged kids: refused, never cached
            token = world.auth.backend.mint("alice", kid=f"forged-{n}", aud=world.url)
            assert call(client, token, "whoami").status_code == 401
        assert 0 < len(source.kids()) <= MAX_KEYS
        assert not any(k.startswith("forged-") for k in source.kids())
        admin = world.token("admin")
        for n in range(30):  # arbitrary entity type names never reach the metadata cache
            call(client, admin, "describe_entity", {"entity_type": f"Type{n}"})
        for entity_type in svc.settings.entity_types:
            call(client, admin, "describe_entity", {"entity_type": entity_type})
        cache = svc.extras["metadata_cache"]
        assert 0 < len(cache._items) <= len(svc.settings.entity_types)
    finally:
        identity.max_entries = saved
