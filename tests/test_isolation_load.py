"""Concurrent users through gunicorn (2 workers x 4 threads): zero cross-user leaks.

alice, bob, carol and admin call search_records, get_record and whoami at the same time, with
interleaved requests. Every answer is checked against ground truth computed independently
of the server under test: the FGA store the backfill wrote (ListObjects per user and type,
through a separate in-process engine) and each user's token scopes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from espomcp.auth.scopes import scope_for
from espomcp.fga.backend import build_backend
from espomcp.settings import Settings
from fakes.auth0 import FakeAuth0
from fakes.espocrm import FakeEspoCRM
from fakes.server import free_port
from tests.fixtures.served import Gunicorn, backfilled_env

USERS = ("alice", "bob", "carol", "admin")
TYPES = ("Contact", "Account", "Lead", "Opportunity", "Case", "Task")
HEADERS = {"Accept": "application/json", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-11-25"}


@dataclass
class Served:
    url: str
    crm: FakeEspoCRM
    auth: FakeAuth0
    truth: dict[tuple[str, str], set[str] | None]  # (user, type) -> ids (None = everything)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    auth, crm = FakeAuth0().start(), FakeEspoCRM(None).start()
    port = free_port()
    work = tmp_path_factory.mktemp("isolation")
    env = backfilled_env(work / "data", auth, crm, port)
    backend = build_backend(Settings(_env_file=None,  # type: ignore[arg-type]
                                     **{k[8:].lower(): v for k, v in env.items()}))
    truth: dict[tuple[str, str], set[str] | None] = {}
    for user in USERS:
        subject = f"user:{crm.as_user(user)}"
        admin = backend.check(subject, "admin", "organization:main")
        for entity_type in TYPES:
            truth[(user, entity_type)] = None if admin else {
                o.split(":", 1)[1] for o in backend.list_objects(subject, "can_read",
                                                                 entity_type.lower())}
    server = Gunicorn(env, port, log=work / "gunicorn.log").start()
    try:
        yield Served(f"{server.url}/mcp", crm, auth, truth)
    finally:
        server.stop()
        crm.stop()
        auth.stop()


def tool(session: requests.Session, served: Served, token: str, name: str,
         arguments: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}
    response = session.post(served.url, json=body, timeout=60,
                            headers={**HEADERS, "Authorization": f"Bearer {token}"})
    return response.status_code, response.json() if response.content else {}


def plan(served: Served, seed: int = 3) -> list[tuple[str, str, dict[str, Any]]]:
    """An interleaved list of (user, tool, arguments): searches, reads of readable and
    unreadable records, and whoami."""
    rng = random.Random(seed)
    steps: list[tuple[str, str, dict[str, Any]]] = []
    for user in USERS:
        for entity_type in TYPES:
            steps.append((user, "search_records", {"entity_type": entity_type, "limit": 200}))
            ids = sorted(served.crm.state.table(entity_type))
            for record_id in rng.sample(ids, 4):
                steps.append((user, "get_record", {"entity_type": entity_type, "id": record_id}))
        steps += [(user, "whoami", {})] * 3
    rng.shuffle(steps)
    return steps


def check_answer(served: Served, user: str, scopes: frozenset[str], name: str,
                 arguments: dict[str, Any], status: int, body: dict[str, Any]) -> None:
    entity_type = arguments.get("entity_type")
    if entity_type and scope_for(entity_type, "read") not in scopes:
        assert status == 403, (user, name, arguments, body)  # step-up challenge
        return
    assert status == 200, (user, name, arguments, body)
    result = body["result"]
    allowed = served.truth.get((user, entity_type)) if entity_type else None
    if name == "whoami":
        assert result["structuredContent"]["sub"] == f"auth0|{user}", result
    elif name == "search_records":
        assert result["isError"] is False, result
        ids = {r["id"] for r in result["structuredContent"]["records"]}
        assert allowed is None or ids <= allowed, (user, entity_type, ids - (allowed or set()))
        if allowed is not None:
            assert result["structuredContent"]["total"] == len(
                allowed & set(served.crm.state.table(entity_type)))
    else:
        may = allowed is None or arguments["id"] in allowed
        assert result["isError"] is (not may), (user, arguments, result["content"][0]["text"])
        if may:
            assert result["structuredContent"]["record"]["id"] == arguments["id"]


def test_concurrent_users_see_exactly_what_they_may(served):
    tokens = {u: served.auth.backend.mint(u, aud=served.url) for u in USERS}
    scopes = {u: frozenset(served.auth.backend.users[u].scopes) for u in USERS}
    steps = plan(served)
    local = threading.local()
    opened: list[requests.Session] = []

    def run(step: tuple[str, str, dict[str, Any]]) -> None:
        user, name, arguments = step
        if not hasattr(local, "session"):
            local.session = requests.Session()
            opened.append(local.session)
        status, body = tool(local.session, served, tokens[user], name, arguments)
        check_answer(served, user, scopes[user], name, arguments, status, body)

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(run, steps))
    finally:
        for session in opened:
            session.close()
    assert len(steps) >= 100
    assert time.monotonic() - started < 90
    # the truth is not trivial: some users see part of a type, and users differ
    partial = [(u, t) for (u, t), ids in served.truth.items() if ids is not None
               and 0 < len(ids & set(served.crm.state.table(t))) < len(served.crm.state.table(t))]
    assert {u for u, _ in partial} >= {"alice", "carol"}, partial
    assert served.truth[("alice", "Case")] != served.truth[("carol", "Case")]
