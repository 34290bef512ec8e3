"""Faults through the whole app: EspoCRM slow, erroring or babbling; the FGA backend slow; and a
new record that stays denied during an FGA outage until the running drainer lands its tuples.

Each case ends in a clear tool error (never a 500 or a traceback), never in a wrong allow, and
loses nothing. Already covered elsewhere and not repeated here: EspoCRM ``down`` and an FGA
backend that is down (tests/test_tools_catalogue.py), the client's own retry rules
(tests/test_espocrm_client.py), the outbox's queue-and-drain mechanics (tests/test_outbox.py),
a JWKS endpoint that is down (tests/test_jwt_access_token.py), and outbox entries surviving a
restart (tests/test_outbox_e2e.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from espomcp.deadline import within
from espomcp.fga.backend import build_backend
from espomcp.fga.errors import FgaUnavailable
from tests.fixtures.world import World, build_world


@pytest.fixture(scope="module")
def openfga_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("faults-openfga"), "openfga")
    yield built
    built.stop()


def fga_fault(world: World, mode: str, delay: float | None = None) -> None:
    body: dict[str, Any] = {"mode": mode}
    if delay is not None:
        body["delay"] = delay
    requests.post(world.settings.fga_api_url + "/_fake/fault", json=body,
                  timeout=5).raise_for_status()


def own_contact(world: World, user: str) -> str:
    uid = world.user_id(user)
    return next(i for i, r in world.crm.state.table("Contact").items()
                if r.get("assignedUserId") == uid)


@pytest.fixture
def fast_client(embedded_world: World) -> Iterator[Any]:
    """The world's EspoCRM client with a short timeout and fast retries, restored after."""
    crm = embedded_world.services.crm
    saved = crm.timeout, crm.backoff
    crm.timeout, crm.backoff = 0.5, 0.01
    embedded_world.ok("admin", "whoami")  # identity cached before the fault starts
    yield crm
    crm.timeout, crm.backoff = saved
    embedded_world.crm.set_fault("off")


CRM_FAULTS = [
    pytest.param("slow", {"delay": 1.5}, "did not answer within", id="slow-timeout"),
    pytest.param("500", {}, "unavailable", id="500"),
    pytest.param("status", {"status": 502}, "unavailable", id="502-after-retries"),
    pytest.param("garbage", {}, "unreadable", id="garbage-body"),
]


@pytest.mark.parametrize(("mode", "options", "expected"), CRM_FAULTS)
def test_espocrm_faults_on_reads_are_clear_errors(embedded_world, fast_client, mode, options,
                                                  expected):
    contact = own_contact(embedded_world, "alice")
    embedded_world.crm.set_fault(mode, **options)
    started = time.monotonic()
    for tool, args in [("get_record", {"entity_type": "Contact", "id": contact}),
                       ("search_records", {"entity_type": "Contact", "limit": 5})]:
        result = embedded_world.call("admin", tool, args)
        assert result.is_error is True
        text = result.content[0].text
        assert "EspoCRM" in text and expected in text.lower(), text
        assert "Traceback" not in text and "incident" not in text
        assert result.structured_content is None
    assert time.monotonic() - started < 10
    event = embedded_world.services.audit.recent(1)[0]
    assert event["decision"] == "error" and event["layer"] == "crm"


@pytest.mark.parametrize(("mode", "options", "expected"), CRM_FAULTS)
def test_espocrm_faults_on_writes_change_nothing(embedded_world, fast_client, mode, options,
                                                 expected):
    world = embedded_world
    before = set(world.crm.state.table("Task"))
    depth = world.services.extras["outbox"].depth()
    tuples = world.services.fga.engine.tuple_count()
    world.crm.set_fault(mode, count=3, **options)
    text = world.error("bob", "create_record", {"entity_type": "Task",
                                                "data": {"name": f"fault {mode}"}})
    world.crm.set_fault("off")
    assert "EspoCRM" in text and "Traceback" not in text
    if mode == "slow":  # the fake finishes the request after the client gave up
        time.sleep(1.6)
        created = set(world.crm.state.table("Task")) - before
        assert len(created) <= 1
    else:
        assert set(world.crm.state.table("Task")) == before
        assert world.services.fga.engine.tuple_count() == tuples
    assert world.services.extras["outbox"].depth() == depth


def test_slow_fga_backend_denies_in_bounded_time(openfga_world):
    world = openfga_world
    svc = world.services
    contact = own_contact(world, "alice")
    assert world.ok("alice", "get_record", {"entity_type": "Contact", "id": contact})
    saved = svc.fga
    svc.fga = build_backend(svc.settings.model_copy(update={"fga_timeout_seconds": 0.3}))
    with world.crm.state.lock:
        world.crm.state.request_log.clear()
    fga_fault(world, "slow", delay=2.0)
    try:
        started = time.monotonic()
        result = world.call("alice", "get_record", {"entity_type": "Contact", "id": contact})
        elapsed = time.monotonic() - started
    finally:
        fga_fault(world, "ok")
        svc.fga = saved
    assert result.is_error is True
    assert "permission service is unavailable" in result.content[0].text
    assert elapsed < 6, elapsed
    assert not world.crm.api_requests(f"/Contact/{contact}")  # denied before any CRM read


def test_new_record_stays_denied_during_an_outage_until_the_drainer_lands_it(openfga_world):
    world = openfga_world
    outbox = world.services.extras["outbox"]
    fga_fault(world, "down")
    try:
        created = world.ok("alice", "create_record", {
            "entity_type": "Contact", "data": {"firstName": "Out", "lastName": "Age"},
            "skip_duplicate_check": True})
        record_id = created["record"]["id"]
        assert created["permissions"]["synced"] is False and outbox.depth() >= 1
        during = world.call("alice", "get_record", {"entity_type": "Contact", "id": record_id})
        assert during.is_error is True  # FGA down: denied, never a wrong allow
        assert "permission service is unavailable" in during.content[0].text
    finally:
        fga_fault(world, "ok")
    deadline = time.monotonic() + 30
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outbox.depth() == 0, outbox.stats()  # the app's own drainer, no manual drain
    after = world.ok("alice", "get_record", {"entity_type": "Contact", "id": record_id})
    assert after["record"]["id"] == record_id
    assert world.ok("bob", "get_record", {"entity_type": "Contact", "id": record_id})
    assert world.error("carol", "get_record", {"entity_type": "Contact", "id": record_id})


def test_openfga_calls_are_not_started_once_the_time_limit_is_spent(openfga_world):
    backend = openfga_world.services.fga
    alice = f"user:{openfga_world.user_id('alice')}"
    contact = f"contact:{own_contact(openfga_world, 'alice')}"
    assert backend.check(alice, "can_read", contact) is True
    with within(0.0), pytest.raises(FgaUnavailable, match="time limit"):
        backend.check(alice, "can_read", contact)  # denied, never a stale allow
    with within(5.0):
        assert backend.check(alice, "can_read", contact) is True
