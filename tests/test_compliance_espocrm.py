"""Deviations of the fake EspoCRM from espocrm-api.md (and EspoCRM 9 source) found in review:
webhook registration texts (§8, ``Classes/RecordHooks/Webhook/BeforeSave.php``), delivery
dropping records the owner cannot read (§8, ``Core/Webhook/Queue.php``), lead-convert ACL
(§7)."""

from __future__ import annotations

import json
from typing import Any

import requests

from fakes.espocrm import webhooks

KEY = {"X-Api-Key": "demo-api-key"}


def api(server: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{server.url}/api/v1/{path}", headers=KEY, timeout=10,
                            **kwargs)


def reason(response: requests.Response) -> tuple[int, str | None]:
    return response.status_code, response.headers.get("X-Status-Reason")


def register(server: Any, event: Any, url: str = "http://127.0.0.1:9/h") -> requests.Response:
    return api(server, "POST", "Webhook", json={"event": event, "url": url})


def test_webhook_registration_refusals_use_espocrms_texts(espocrm_server):
    assert reason(register(espocrm_server, "")) == (403, "Event is empty.")
    assert reason(register(espocrm_server, None)) == (403, "Event is empty.")
    assert reason(register(espocrm_server, "Lead")) == (403, "Not supported event.")
    assert reason(register(espocrm_server, "Foo.create")) == (
        403, "Entity type is not available for Webhooks.")
    assert reason(register(espocrm_server, "Lead.fieldUpdate")) == (403, "Field is empty.")
    espocrm_server.fake.deny("Lead", "read")
    assert reason(register(espocrm_server, "Lead.create")) == (403, "Entity type is forbidden.")


def test_webhook_limit_per_api_user_text(espocrm_server, monkeypatch):
    monkeypatch.setattr(webhooks, "MAX_PER_USER", 2)
    for _ in range(2):
        assert register(espocrm_server, "Lead.create").status_code == 200
    assert reason(register(espocrm_server, "Lead.create")) == (
        403, "Webhook number per user exceeded the limit.")


def _deliveries(espocrm_server: Any, serve: Any, event: str) -> list[Any]:
    from flask import Flask, request

    app = Flask("receiver")
    received: list[Any] = []

    @app.post("/hook")
    def hook() -> Any:
        received.extend(json.loads(request.get_data()))
        return ""

    server = serve(app)
    assert register(espocrm_server, event, f"{server.url}/hook").status_code == 200
    return received


def test_delivery_drops_items_the_owner_may_no_longer_read(espocrm_server, serve):
    received = _deliveries(espocrm_server, serve, "Account.update")
    state, fake = espocrm_server.state, espocrm_server.fake
    shown, hidden = sorted(state.table("Account"))[:2]
    for record_id in (shown, hidden):
        requests.post(f"{espocrm_server.url}/_fake/ui", timeout=10, json={
            "user": "alice", "action": "update", "entityType": "Account", "id": record_id,
            "data": {"description": "changed"}}).raise_for_status()
    fake.hide("Account", hidden)
    espocrm_server.sender.deliver_pending()
    assert [item["id"] for item in received] == [shown]
    assert not state.webhook_queue  # dropped items are deleted from the queue, not retried


def test_delivery_drops_everything_of_a_type_the_owner_may_not_read(espocrm_server, serve):
    received = _deliveries(espocrm_server, serve, "Account.update")
    record_id = sorted(espocrm_server.state.table("Account"))[0]
    requests.post(f"{espocrm_server.url}/_fake/ui", timeout=10, json={
        "user": "alice", "action": "update", "entityType": "Account", "id": record_id,
        "data": {"description": "changed"}}).raise_for_status()
    espocrm_server.fake.deny("Account", "read")
    espocrm_server.sender.deliver_pending()
    assert received == []


def test_convert_lead_needs_edit_access_to_the_lead_and_create_access(espocrm_server):
    lead = next(rid for rid, r in espocrm_server.state.table("Lead").items()
                if r.get("status") != "Converted")
    body = {"id": lead, "records": {"Account": {"name": "Convert ACL Co"}},
            "skipDuplicateCheck": True}
    espocrm_server.fake.deny("Account", "create")
    assert reason(api(espocrm_server, "POST", "Lead/action/convert", json=body)) == (
        403, "No 'create' access for Account.")
    espocrm_server.fake.deny("Lead", "edit")
    assert reason(api(espocrm_server, "POST", "Lead/action/convert", json=body)) == (
        403, "No edit access.")
    assert espocrm_server.state.table("Lead")[lead].get("status") != "Converted"


def test_global_search_skips_types_the_caller_may_not_read(espocrm_server):
    """GlobalSearch searches only the listed types the caller has read access to."""
    def scopes() -> set[str]:
        found = api(espocrm_server, "GET", "GlobalSearch", params={"q": "a", "maxSize": 200})
        return {r["_scope"] for r in found.json()["list"]}
    assert "Account" in scopes()
    espocrm_server.fake.deny("Account", "read")
    assert "Account" not in scopes() and scopes()


def test_basic_and_espo_authorization_headers(espocrm_server):
    """espocrm-api §2: a decoded Espo/Basic header without ':' is 400; otherwise a failed login
    is 401 with an empty body and no Basic challenge (credentials were sent)."""
    import base64

    url = f"{espocrm_server.url}/api/v1/App/user"
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    for headers in ({"Espo-Authorization": b64("no-colon")},
                    {"Authorization": "Basic " + b64("no-colon")}):
        assert requests.get(url, headers=headers, timeout=5).status_code == 400, headers
    for headers in ({"Espo-Authorization": b64("alice:wrong")},
                    {"Authorization": "Basic " + b64("alice:wrong")}):
        response = requests.get(url, headers=headers, timeout=5)
        assert (response.status_code, response.content) == (401, b""), headers
        assert "WWW-Authenticate" not in response.headers


def test_client_messages_quote_x_status_reason_as_one_sentence():
    """EspoCRM's X-Status-Reason texts end with a full stop; the client's messages must not
    read 'No read access..'."""
    from espomcp.espocrm.errors import error_from_response

    for status, reason in ((403, "No read access."), (404, "Controller 'X' does not exist."),
                           (400, "Bad order parameter."), (409, "Locked.")):
        message = error_from_response(status, {"X-Status-Reason": reason}, b"").message
        assert message.endswith(reason) and not message.endswith(".."), message
