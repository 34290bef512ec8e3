"""EspoCRM → FGA through signed webhooks: real deliveries by the fake's sender reach the store;
forged, unsigned, replayed and oversized deliveries change nothing; out-of-order and
duplicate deliveries end in EspoCRM's current state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from espomcp import create_app
from espomcp.sync import webhooks
from espomcp.sync.backfill import Backfill
from espomcp.sync.refresh import held_for
from espomcp.sync.status import sync_status
from fakes.espocrm.webhooks import encode_body, signature_headers
from fakes.server import ServerThread, free_port


@dataclass
class World:
    """The espomcp server (with its services) and the fake EspoCRM it syncs from."""

    server: ServerThread
    svc: Any
    crm_url: str
    users: dict[str, str]

    @property
    def hook_url(self) -> str:
        return self.server.url + webhooks.WEBHOOK_PATH

    def ui(self, user: str, action: str, entity_type: str, record_id: str | None = None,
           **data: Any) -> Any:
        """A person changes EspoCRM directly (queues webhook events, delivers nothing)."""
        body = {"user": user, "action": action, "entityType": entity_type, "id": record_id,
                "data": data}
        response = requests.post(f"{self.crm_url}/_fake/ui", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def deliver(self) -> list[dict[str, Any]]:
        """Run the fake EspoCRM's webhook sender once (it POSTs to our receiver)."""
        response = requests.post(f"{self.crm_url}/_fake/deliver", json={}, timeout=30)
        response.raise_for_status()
        return response.json()

    def assignees(self, entity_type: str, record_id: str) -> set[str]:
        return {k.user for k in held_for(self.svc.fga, entity_type, record_id)
                if k.relation == "assignee"}

    def hook(self, event: str) -> tuple[str, str]:
        """(webhook id, secret) of the registered webhook for ``event``."""
        for webhook_id, entry in webhooks.WebhookSecrets(self.svc.settings.data_dir).load().items():
            if entry["event"] == event:
                return webhook_id, entry["secret"]
        raise AssertionError(f"no webhook for {event}")

    def post(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(self.hook_url, data=body, timeout=10,
                             headers={"Content-Type": "application/json", **headers})

    def signed(self, event: str, items: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        webhook_id, secret = self.hook(event)
        body = encode_body(items)
        return body, signature_headers(webhook_id, secret, body)


class NoAuth:
    """The receiver needs no bearer token; /mcp is not exercised here."""

    def authenticate(self, authorization: str | None) -> Any:
        raise AssertionError("not used")


@pytest.fixture
def world(espocrm_server: Any, tmp_path: Path) -> Iterator[World]:
    port = free_port()
    settings = espocrm_server.settings(public_url=f"http://127.0.0.1:{port}",
                                       data_dir=tmp_path / "data", fga_backend="embedded")
    app = create_app(settings, authenticator=NoAuth())
    svc = app.extensions["espomcp"]
    users = requests.get(f"{espocrm_server.url}/_fake/users", timeout=10).json()
    rows = webhooks.register_webhooks(svc.crm, svc.settings)
    assert len(rows) == len(webhooks.planned_events(svc.settings.entity_types)) <= 50
    summary = Backfill(svc.crm, svc.fga, svc.outbox, svc.settings.data_dir,
                       entity_types=svc.settings.entity_types).run()
    assert summary.complete, summary.message
    server = ServerThread(app, port=port).start()
    try:
        yield World(server, svc, espocrm_server.url, users)
    finally:
        server.stop()
        svc.extras["outbox"].stop_drainer()


def _alice_contact(world: World) -> str:
    page = world.svc.crm.list_records(
        "Contact", where=[{"type": "equals", "attribute": "assignedUserId",
                           "value": world.users["alice"]}], max_size=1)
    return page.list[0]["id"]


def test_registration_stores_secrets_privately_and_is_idempotent(world: World) -> None:
    path = webhooks.WebhookSecrets(world.svc.settings.data_dir).path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = webhooks.register_webhooks(world.svc.crm, world.svc.settings)
    assert {row["status"] for row in again} == {"exists"}
    listed = webhooks.list_webhooks(world.svc.crm, world.svc.settings)
    assert {"Contact.update", "Contact.fieldUpdate.assignedUser", "User.fieldUpdate.teams",
            "Team.delete"} <= {row["event"] for row in listed}
    assert all(row["secret_stored"] for row in listed)
    removed = webhooks.unregister_webhooks(world.svc.crm, world.svc.settings)
    assert len(removed) == len(listed)
    assert webhooks.list_webhooks(world.svc.crm, world.svc.settings) == []
    assert webhooks.WebhookSecrets(world.svc.settings.data_dir).load() == {}


def test_reassignment_in_espocrm_reaches_fga_through_the_fake_sender(world: World) -> None:
    contact = _alice_contact(world)
    alice, carol = world.users["alice"], world.users["carol"]
    assert world.assignees("Contact", contact) == {f"user:{alice}"}
    assert not world.svc.fga.check(f"user:{carol}", "can_write", f"contact:{contact}")
    world.ui("bob", "update", "Contact", contact, assignedUserId=carol)
    results = world.deliver()
    assert results and all(r["status"] == 200 for r in results)
    assert world.assignees("Contact", contact) == {f"user:{carol}"}
    assert world.svc.fga.check(f"user:{carol}", "can_write", f"contact:{contact}")
    status = sync_status(world.svc.settings)
    assert status["webhooks"]["accepted"] == len(results) and status["webhooks"]["rejected"] == 0
    # team membership follows too: carol joins Sales as a manager
    sales = next(iter(world.svc.crm.get_record("User", alice)["teamsIds"]))
    user = world.svc.crm.get_record("User", carol)
    world.ui("admin", "update", "User", carol, teamsIds=[*user["teamsIds"], sales],
             teamsColumns={sales: {"role": "Manager"}})
    world.deliver()
    assert world.svc.fga.check(f"user:{carol}", "manager", f"team:{sales}")
    # a deleted record loses every tuple
    world.ui("admin", "delete", "Contact", contact)
    world.deliver()
    assert held_for(world.svc.fga, "Contact", contact) == set()


def test_forged_unsigned_replayed_and_oversized_deliveries_change_nothing(world: World) -> None:
    contact = _alice_contact(world)
    alice, carol = world.users["alice"], world.users["carol"]
    world.ui("bob", "update", "Contact", contact, assignedUserId=carol)  # not delivered
    body, headers = world.signed("Contact.update", [{"id": contact, "assignedUserId": carol}])
    webhook_id, _ = world.hook("Contact.update")
    forged_hex = base64.b64encode(f"{webhook_id}:{'0' * 64}".encode()).decode()
    wrong_key = hmac.new(b"not-the-secret", body, hashlib.sha256)
    attempts = {
        "unsigned": (401, {}),
        "forged hex": (403, {"Signature": forged_hex}),
        "wrong key": (403, {"Signature": base64.b64encode(
            f"{webhook_id}:{wrong_key.hexdigest()}".encode()).decode()}),
        "wrong key legacy": (403, {"X-Signature": base64.b64encode(
            webhook_id.encode() + b":" + wrong_key.digest()).decode()}),
        "unknown webhook": (403, {"Signature": base64.b64encode(
            b"0123456789abcdef0:" + wrong_key.hexdigest().encode()).decode()}),
        "garbage": (403, {"Signature": "%%%not-base64"}),
        "signature of another body": (403, {"Signature": headers["Signature"]}),
    }
    for name, (expected, extra) in attempts.items():
        payload = body + b" " if name == "signature of another body" else body
        response = world.post(payload, extra)
        assert response.status_code == expected, name
        assert world.assignees("Contact", contact) == {f"user:{alice}"}, name
    big = b"[" + b" " * (world.svc.settings.max_body_bytes + 10) + b"]"
    assert world.post(big, signature_headers(webhook_id, "x", big)).status_code == 413
    # the genuine delivery (only the legacy header, as older EspoCRM sends) is accepted ...
    assert world.post(body, {"X-Signature": headers["X-Signature"]}).status_code == 200
    assert world.assignees("Contact", contact) == {f"user:{carol}"}
    # ... and replaying it later changes nothing, even though EspoCRM has moved on
    world.ui("bob", "update", "Contact", contact, assignedUserId=alice)
    replay = world.post(body, headers)
    assert replay.status_code == 409 and replay.json()["error"] == "replay"
    assert world.assignees("Contact", contact) == {f"user:{carol}"}
    rejected = sync_status(world.svc.settings)["webhooks"]["rejected_by_reason"]
    assert rejected == {"unsigned": 1, "forged": 6, "oversized": 1, "replay": 1}


def test_out_of_order_and_duplicate_deliveries_end_right(world: World) -> None:
    contact = _alice_contact(world)
    carol, dave = world.users["carol"], world.users["dave"]
    world.ui("bob", "update", "Contact", contact, assignedUserId=carol)
    first = world.signed("Contact.update", [{"id": contact, "assignedUserId": carol}])
    world.ui("bob", "update", "Contact", contact, assignedUserId=dave)
    second = world.signed("Contact.update", [{"id": contact, "assignedUserId": dave},
                                             {"id": contact}])
    field = world.signed("Contact.fieldUpdate.assignedUser",
                         [{"id": contact, "assignedUserId": dave}])
    for body, headers in (second, field, first):  # newest first, plus the field event
        assert world.post(body, headers).status_code == 200
    assert world.assignees("Contact", contact) == {f"user:{dave}"}
    world.deliver()  # the fake's own (duplicate) deliveries of the same changes
    assert world.assignees("Contact", contact) == {f"user:{dave}"}
    # a stale update arriving after the delete must not resurrect the record
    world.ui("admin", "delete", "Contact", contact)
    deleted = world.signed("Contact.delete", [{"id": contact}])
    assert world.post(*deleted).status_code == 200
    assert world.post(*first).status_code == 409
    stale = world.signed("Contact.update", [{"id": contact, "assignedUserId": carol, "x": 1}])
    assert world.post(*stale).status_code == 200
    assert held_for(world.svc.fga, "Contact", contact) == set()


def test_malformed_batches_are_refused_before_anything_applies(world: World) -> None:
    contact = _alice_contact(world)
    for items in ([{"id": "../etc"}], [{"name": "no id"}], [{"id": contact}, "x"]):
        body, headers = world.signed("Contact.update", items)  # type: ignore[arg-type]
        assert world.post(body, headers).status_code == 400
    body = b'{"id": "x"}'
    webhook_id, secret = world.hook("Contact.update")
    assert world.post(body, signature_headers(webhook_id, secret, body)).status_code == 400


def test_espocrm_down_asks_for_a_retry_and_the_retry_applies(world: World, espocrm_server: Any
                                                             ) -> None:
    contact = _alice_contact(world)
    carol = world.users["carol"]
    world.ui("bob", "update", "Contact", contact, assignedUserId=carol)
    body, headers = world.signed("Contact.update", [{"id": contact}])
    requests.post(f"{world.crm_url}/_fake/fault", json={"mode": "down"}, timeout=10)
    try:
        assert world.post(body, headers).status_code == 503
    finally:
        requests.post(f"{world.crm_url}/_fake/fault", json={"mode": "off"}, timeout=10)
    assert world.post(body, headers).status_code == 200  # EspoCRM's retry is not a replay
    assert world.assignees("Contact", contact) == {f"user:{carol}"}


def test_event_budget_keeps_the_essential_events() -> None:
    default = webhooks.planned_events(["Account", "Contact", "Lead", "Opportunity", "Case",
                                       "Meeting", "Call", "Task", "User", "Team"])
    assert len(default) == 47 and "Team.fieldUpdate.teams" not in default
    assert "User.fieldUpdate.teams" in default and "Task.fieldUpdate.assignedUser" in default
    many = [f"Type{i}" for i in range(20)]
    assert webhooks.planned_events(many) == []  # unknown to the model: nothing to sync
    wide = ["User", "Team", "Account", "Contact", "Lead", "Opportunity", "Case", "Meeting",
            "Call", "Task"]
    planned = webhooks.planned_events(wide, budget=32)
    assert len(planned) == 32 and all(".fieldUpdate." not in e for e in planned[:30])
