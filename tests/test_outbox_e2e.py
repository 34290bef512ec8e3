"""FGA down during tool writes: the CRM write succeeds, its tuples wait in the outbox,
survive a server restart, and land when FGA returns (through the official MCP client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from espomcp import create_app
from tests.fixtures.world import World, build_world


@pytest.fixture
def openfga_world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path, "openfga")
    yield built
    built.stop()


def fault(world: World, mode: str) -> None:
    requests.post(world.settings.fga_api_url + "/_fake/fault", json={"mode": mode},
                  timeout=5).raise_for_status()


def test_tuples_of_writes_during_an_outage_land_after_a_restart(openfga_world):
    world = openfga_world
    world.services.extras["outbox"].stop_drainer()
    fault(world, "down")
    created = world.ok("alice", "create_record", {"entity_type": "Contact",
                                                  "data": {"lastName": "Outage"}})
    rid = created["record"]["id"]
    assert rid in world.crm.state.table("Contact")
    assert created["permissions"]["synced"] is False
    assert "queued" in created["permissions"]["message"]
    depth = world.services.extras["outbox"].depth()
    assert depth > 0

    # "Restart": a new app on the same data dir finds the queue and drains it once FGA is back.
    restarted = create_app(world.settings)
    outbox = restarted.extensions["espomcp"].extras["outbox"]
    outbox.stop_drainer()
    assert outbox.depth() == depth
    fault(world, "ok")
    outbox.drain(restarted.extensions["espomcp"].fga)
    assert outbox.depth() == 0
    assert world.ok("alice", "get_record", {"entity_type": "Contact", "id": rid})
    assert world.ok("bob", "get_record", {"entity_type": "Contact", "id": rid})
    world.error("carol", "get_record", {"entity_type": "Contact", "id": rid})
