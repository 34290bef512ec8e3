"""Fake-EspoCRM behaviour pinned to the reference: auth, validation bodies, list semantics,
duplicates, stream notes, team roles, webhooks (signing, batching, retries), faults and
persistence."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from flask import Flask, request

from fakes.espocrm import FakeEspoCRM, user_id
from fakes.espocrm.responses import php_params
from fakes.server import free_port

KEY = {"X-Api-Key": "demo-api-key"}


def api(server, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {**KEY, **kwargs.pop("headers", {})}
    return requests.request(method, f"{server.url}/api/v1/{path}", headers=headers, timeout=10,
                            **kwargs)


def listing(server, entity_type: str, **params: Any) -> dict[str, Any]:
    response = api(server, "GET", entity_type,
                   params={"searchParams": json.dumps({"maxSize": 200, **params})})
    assert response.status_code == 200, response.headers.get("X-Status-Reason")
    return response.json()


# --- authentication ---------------------------------------------------------------------
def _hmac(method: str, path: str, key: str = "demo-api-key", secret: str = "demo-secret",
          raw: bool = False) -> str:
    mac = hmac.new(secret.encode(), f"{method} {path}".encode(), hashlib.sha256)
    digest = mac.digest() if raw else mac.hexdigest().encode()
    return base64.b64encode(key.encode() + b":" + digest).decode()


def test_auth_failures_are_401_with_empty_body(espocrm_server):
    url = f"{espocrm_server.url}/api/v1/App/user"
    cases = [
        {"X-Api-Key": "nope"},
        {"X-Hmac-Authorization": _hmac("GET", "/App/user", secret="bad")},
        {"X-Hmac-Authorization": _hmac("GET", "/App/user?x=1")},  # query must not be signed
        {"X-Hmac-Authorization": _hmac("GET", "/api/v1/App/user")},
        {"X-Hmac-Authorization": "!!!not-base64"},
        {"X-Hmac-Authorization": base64.b64encode(b"no-colon").decode()},
        {"X-Api-Key": ""},
    ]
    for headers in cases:
        response = requests.get(url, headers=headers, params={"x": "1"}, timeout=5)
        assert (response.status_code, response.content) == (401, b""), headers
    assert requests.get(url, timeout=5).headers["WWW-Authenticate"] == 'Basic realm=""'


def test_hmac_accepts_hex_and_legacy_binary_digests(espocrm_server):
    url = f"{espocrm_server.url}/api/v1/Lead"
    for raw in (False, True):
        response = requests.get(url, params={"maxSize": 1},
                                headers={"X-Hmac-Authorization": _hmac("GET", "/Lead", raw=raw)},
                                timeout=5)
        assert response.status_code == 200


def test_auth_method_must_match_the_users_auth_method(espocrm_server):
    state = espocrm_server.state
    state.records["User"][user_id("espomcp-hmac")]["apiKey"] = "only-hmac"
    assert requests.get(f"{espocrm_server.url}/api/v1/App/user", timeout=5,
                        headers={"X-Api-Key": "only-hmac"}).status_code == 401
    header = _hmac("GET", "/App/user", key="only-hmac")
    assert requests.get(f"{espocrm_server.url}/api/v1/App/user", timeout=5,
                        headers={"X-Hmac-Authorization": header}).status_code == 200


# --- records ------------------------------------------------------------------------------
def test_create_returns_200_with_espocrm_attributes(espocrm_server):
    alice = user_id("alice")
    response = api(espocrm_server, "POST", "Contact", json={
        "firstName": "Ada", "lastName": "Lovelace", "assignedUserId": alice,
        "teamsIds": [espocrm_server.state.records["User"][alice]["teamsIds"][0]],
        "emailAddress": "ada@example.org", "id": "forged", "createdAt": "2000-01-01 00:00:00"})
    assert response.status_code == 200
    record = response.json()
    assert re.fullmatch(r"[0-9a-f]{17}", record["id"])
    assert record["name"] == "Ada Lovelace" and record["assignedUserName"] == "Alice Anders"
    assert record["teamsNames"] == {record["teamsIds"][0]: "Sales"}
    assert record["createdById"] == user_id("espomcp") and record["createdAt"] != "2000-01-01 00:00:00"
    assert record["emailAddressData"][0]["primary"] is True
    assert api(espocrm_server, "DELETE", f"Contact/{record['id']}").json() is True
    assert api(espocrm_server, "GET", f"Contact/{record['id']}").status_code == 404


@pytest.mark.parametrize("entity_type, data, field, kind", [
    ("Lead", {"firstName": "x"}, "lastName", "required"),
    ("Account", {"website": "x"}, "name", "required"),
    ("Opportunity", {"name": "o", "amount": 1}, "closeDate", "required"),
    ("Opportunity", {"name": "o", "amount": 1, "closeDate": "31.12.2026"}, "closeDate", "valid"),
    ("Case", {"name": "c", "status": "Open"}, "status", "valid"),
    ("Meeting", {"name": "m", "dateStart": "2026-01-01 10:00:00",
                 "dateEnd": "2026-01-01 11:00:00"}, "assignedUser", "required"),
    ("Task", {"name": "t", "assignedUserId": "00000000000000000"}, "assignedUser", "valid"),
    ("Contact", {"lastName": "x", "emailAddress": "not-an-email"}, "emailAddress", "valid"),
    ("Opportunity", {"name": "o", "amount": 1, "closeDate": "2026-01-01", "probability": 101},
     "probability", "max"),
    ("Account", {"name": "x" * 300}, "name", "maxLength"),
])
def test_validation_failures_use_espocrms_body_and_reason(espocrm_server, entity_type, data,
                                                          field, kind):
    response = api(espocrm_server, "POST", entity_type, json=data)
    assert response.status_code == 400
    assert response.json() == {"messageTranslation": {"label": "validationFailure", "scope": None,
                                                      "data": {"field": field, "type": kind}}}
    assert response.headers["X-Status-Reason"] == (
        f"Field validation failure; entityType: {entity_type}, field: {field}, type: {kind}.")


def test_lead_last_name_is_required_only_without_contact_details(espocrm_server):
    assert api(espocrm_server, "POST", "Lead", json={"emailAddress": "l@x.org"}).status_code == 200
    assert api(espocrm_server, "POST", "Lead", json={"accountName": "Z"}).status_code == 200
    assert api(espocrm_server, "POST", "Lead", json={"title": "CEO"}).status_code == 400


def test_defaults_and_update_semantics(espocrm_server):
    opp = api(espocrm_server, "POST", "Opportunity", json={
        "name": "D", "amount": 10, "closeDate": "2027-01-01", "stage": "Negotiation"}).json()
    assert (opp["probability"], opp["amountCurrency"]) == (80, None)
    case = api(espocrm_server, "POST", "Case", json={"name": "C"}).json()
    assert (case["status"], case["priority"], case["number"]) == ("New", "Normal", 61)
    updated = api(espocrm_server, "PATCH", f"Case/{case['id']}", json={"priority": "High"}).json()
    assert updated["priority"] == "High" and updated["name"] == "C"
    assert api(espocrm_server, "PUT", f"Case/{case['id']}", json={"name": ""}).status_code == 400


def test_duplicates_409_with_array_body_and_skip_header(espocrm_server):
    contact = next(iter(espocrm_server.state.records["Contact"].values()))
    data = {"firstName": contact["firstName"], "lastName": contact["lastName"]}
    response = api(espocrm_server, "POST", "Contact", json=data)
    assert response.status_code == 409 and response.headers["X-Status-Reason"] == "duplicate"
    assert contact["id"] in [r["id"] for r in response.json()]
    by_email = api(espocrm_server, "POST", "Lead", json={"lastName": "Other",
                                                         "emailAddress": contact["emailAddress"].upper()})
    assert by_email.status_code == 200  # Lead duplicates are checked among Leads only
    skipped = api(espocrm_server, "POST", "Contact", json=data,
                  headers={"X-Skip-Duplicate-Check": "true"})
    assert skipped.status_code == 200


def test_unknown_controller_and_link(espocrm_server):
    response = api(espocrm_server, "GET", "Foo")
    assert response.status_code == 404
    assert response.headers["X-Status-Reason"] == "Controller 'Foo' does not exist."
    account = next(iter(espocrm_server.state.records["Account"]))
    assert api(espocrm_server, "GET", f"Account/{account}/nonsense").status_code == 404
    assert api(espocrm_server, "GET", "Account/..%2FUser%2F1").status_code == 404


# --- lists ----------------------------------------------------------------------------------
WHERE_CASES = [
    ("Lead", {"type": "equals", "attribute": "status", "value": "new"}, lambda r: r["status"] == "New"),
    ("Lead", {"type": "notEquals", "attribute": "status", "value": "New"},
     lambda r: r["status"] != "New"),
    ("Lead", {"type": "in", "attribute": "status", "value": ["Dead", "Recycled"]},
     lambda r: r["status"] in ("Dead", "Recycled")),
    ("Lead", {"type": "notIn", "attribute": "status", "value": ["New"]}, lambda r: r["status"] != "New"),
    ("Contact", {"type": "contains", "attribute": "emailAddress", "value": "ACME"},
     lambda r: "acme" in r["emailAddress"]),
    ("Contact", {"type": "startsWith", "attribute": "lastName", "value": "Sm"},
     lambda r: r["lastName"].startswith("Sm")),
    ("Contact", {"type": "endsWith", "attribute": "firstName", "value": "a"},
     lambda r: r["firstName"].endswith("a")),
    ("Contact", {"type": "like", "attribute": "firstName", "value": "J%n"},
     lambda r: r["firstName"].startswith("J") and r["firstName"].endswith("n")),
    ("Contact", {"type": "notLike", "attribute": "firstName", "value": "%a%"},
     lambda r: "a" not in r["firstName"].lower()),
    ("Case", {"type": "isNull", "attribute": "contactId"}, lambda r: r["contactId"] is None),
    ("Case", {"type": "isNotNull", "attribute": "contactId"}, lambda r: r["contactId"] is not None),
    ("Contact", {"type": "isTrue", "attribute": "doNotCall"}, lambda r: r["doNotCall"] is True),
    ("Contact", {"type": "isFalse", "attribute": "doNotCall"}, lambda r: r["doNotCall"] is False),
    ("Opportunity", {"type": "greaterThan", "attribute": "amount", "value": 100000},
     lambda r: r["amount"] > 100000),
    ("Opportunity", {"type": "lessThan", "attribute": "amount", "value": 50000},
     lambda r: r["amount"] < 50000),
    ("Opportunity", {"type": "greaterThanOrEquals", "attribute": "probability", "value": 80},
     lambda r: r["probability"] >= 80),
    ("Opportunity", {"type": "lessThanOrEquals", "attribute": "probability", "value": 20},
     lambda r: r["probability"] <= 20),
    ("Opportunity", {"type": "between", "attribute": "closeDate", "value": ["2026-11-01", "2026-12-31"]},
     lambda r: "2026-11-01" <= r["closeDate"] <= "2026-12-31"),
    ("Opportunity", {"type": "before", "attribute": "closeDate", "value": "2026-09-01"},
     lambda r: r["closeDate"] < "2026-09-01"),
    ("Opportunity", {"type": "after", "attribute": "closeDate", "value": "2027-01-01"},
     lambda r: r["closeDate"] > "2027-01-01"),
    ("Meeting", {"type": "on", "attribute": "dateStart", "value": "2026-11-01"},
     lambda r: r["dateStart"].startswith("2026-11-01")),
    ("Meeting", {"type": "between", "attribute": "dateStart", "value": ["2026-10-01", "2026-10-31"]},
     lambda r: "2026-10-01" <= r["dateStart"][:10] <= "2026-10-31"),
    ("Lead", {"type": "and", "value": [{"type": "equals", "attribute": "status", "value": "New"},
                                       {"type": "equals", "attribute": "source", "value": "Call"}]},
     lambda r: r["status"] == "New" and r["source"] == "Call"),
    ("Lead", {"type": "or", "value": [{"type": "equals", "attribute": "status", "value": "Dead"},
                                      {"type": "equals", "attribute": "source", "value": "Call"}]},
     lambda r: r["status"] == "Dead" or r["source"] == "Call"),
    ("Lead", {"type": "not", "value": [{"type": "equals", "attribute": "status", "value": "New"}]},
     lambda r: r["status"] != "New"),
    ("Account", {"type": "linkedWith", "attribute": "teams", "value": ["TEAM_SUPPORT"]},
     lambda r: "Support" in r["teamsNames"].values()),
    ("Account", {"type": "notLinkedWith", "attribute": "teams", "value": ["TEAM_SUPPORT"]},
     lambda r: "Support" not in r["teamsNames"].values()),
    ("Team", {"type": "arrayAnyOf", "attribute": "positionList", "value": ["Sales Rep"]},
     lambda r: r["name"] == "Sales"),
]


@pytest.mark.parametrize("entity_type, item, pred", WHERE_CASES,
                         ids=[f"{c[0]}-{c[1]['type']}" for c in WHERE_CASES])
def test_where_types(espocrm_server, entity_type, item, pred):
    support = next(t for t in espocrm_server.state.records["Team"].values() if t["name"] == "Support")
    item = json.loads(json.dumps(item).replace("TEAM_SUPPORT", support["id"]))
    everything = listing(espocrm_server, entity_type)
    page = listing(espocrm_server, entity_type, where=[item])
    assert page["list"] and all(pred(r) for r in page["list"])
    assert page["total"] < everything["total"]
    assert sum(map(pred, everything["list"])) == page["total"]


def test_where_refusals(espocrm_server):
    def reason(where: Any) -> tuple[int, str]:
        response = api(espocrm_server, "GET", "Lead", params={"searchParams": json.dumps(
            {"where": where})})
        return response.status_code, response.headers.get("X-Status-Reason", "")
    assert reason([{"type": "equals", "attribute": "x", "value": 1}]) == (
        400, "Not existing attribute 'x' in where.")
    assert reason([{"type": "equals", "attribute": "status", "value": 1, "foo": 1}])[0] == 400
    assert reason([{"attribute": "status", "value": 1}])[0] == 400
    assert reason([{"type": "subQueryIn", "attribute": "id", "value": []}])[0] == 403


def test_bracket_params_and_the_silently_dropped_json_where(espocrm_server):
    total = listing(espocrm_server, "Lead")["total"]
    flat = api(espocrm_server, "GET", "Lead", params={
        "where[0][type]": "in", "where[0][attribute]": "status", "where[0][value][]": ["New", "Dead"],
        "maxSize": "5", "select": "name,status", "orderBy": "name", "order": "ASC"}).json()
    assert flat["total"] < total and len(flat["list"]) == 5
    assert all(set(r) == {"id", "name", "status"} and r["status"] in ("New", "Dead")
               for r in flat["list"])
    dropped = api(espocrm_server, "GET", "Lead", params={"where": json.dumps(
        [{"type": "equals", "attribute": "status", "value": "New"}])}).json()
    assert dropped["total"] == total
    assert php_params("a[0][b][]=1&a[0][b][]=2&c=3") == {"a": [{"b": ["1", "2"]}], "c": "3"}


@pytest.mark.parametrize("params, status, reason", [
    ({"searchParams": "{nope"}, 400, "Invalid search params JSON."),
    ({"searchParams": json.dumps({"maxSize": 201})}, 403,
     "Max size should not exceed 200. Use offset and limit."),
    ({"maxSize": "201"}, 403, "Max size should not exceed 200. Use offset and limit."),
    ({"maxSize": "ten"}, 400, "Bad maxSize."),
    ({"searchParams": json.dumps({"maxSize": "10"})}, 400, "Bad maxSize."),
    ({"searchParams": json.dumps({"select": "name"})}, 400, "Bad select."),
    ({"order": "up"}, 400, "Bad order parameter."),
    ({"primaryFilter": "hot"}, 400, "No primary filter 'hot' for 'Lead'."),
    ({"boolFilterList[]": "mine"}, 400, "No bool filter 'mine' for 'Lead'."),
])
def test_list_param_errors(espocrm_server, params, status, reason):
    response = api(espocrm_server, "GET", "Lead", params=params)
    assert (response.status_code, response.headers.get("X-Status-Reason")) == (status, reason)


def test_default_orders_text_filter_and_no_total(espocrm_server):
    cases = listing(espocrm_server, "Case")["list"]
    assert [c["number"] for c in cases] == sorted((c["number"] for c in cases), reverse=True)
    meetings = listing(espocrm_server, "Meeting")["list"]
    assert [m["dateStart"] for m in meetings] == sorted((m["dateStart"] for m in meetings),
                                                        reverse=True)
    leads = listing(espocrm_server, "Lead")["list"]
    assert [r["createdAt"] for r in leads] == sorted((r["createdAt"] for r in leads), reverse=True)
    wild = listing(espocrm_server, "Account", textFilter="*mesa")["list"]
    assert wild and all("mesa" in r["name"].lower() for r in wild)
    assert listing(espocrm_server, "Contact", textFilter="mesa")["list"] == []
    response = api(espocrm_server, "GET", "Lead", params={"maxSize": 5},
                   headers={"X-No-Total": "true"})
    assert response.json()["total"] == -1


@pytest.mark.parametrize("entity_type, name, pred", [
    ("Lead", "converted", lambda r: r["status"] == "Converted"),
    ("Opportunity", "open", lambda r: r["stage"] not in ("Closed Won", "Closed Lost")),
    ("Opportunity", "won", lambda r: r["stage"] == "Closed Won"),
    ("Case", "open", lambda r: r["status"] not in ("Closed", "Rejected", "Duplicate")),
    ("Case", "closed", lambda r: r["status"] == "Closed"),
    ("Task", "actual", lambda r: r["status"] not in ("Completed", "Canceled", "Deferred")),
    ("Task", "completed", lambda r: r["status"] == "Completed"),
    ("Meeting", "held", lambda r: r["status"] == "Held"),
    ("Call", "planned", lambda r: r["status"] == "Planned"),
    ("Account", "customers", lambda r: r["type"] == "Customer"),
    ("Account", "partners", lambda r: r["type"] == "Partner"),
])
def test_primary_filters(espocrm_server, entity_type, name, pred):
    if name == "converted":
        lead = next(iter(espocrm_server.state.records["Lead"]))
        espocrm_server.state.update("Lead", lead, {"status": "Converted"}, user_id("alice"))
    page = listing(espocrm_server, entity_type, primaryFilter=name)
    assert page["list"] and all(pred(r) for r in page["list"])
    assert page["total"] == sum(map(pred, listing(espocrm_server, entity_type)["list"]))


def test_related_lists_link_unlink_and_team_roles(espocrm_server):
    state = espocrm_server.state
    account = next(iter(state.records["Account"].values()))
    related = api(espocrm_server, "GET", f"Account/{account['id']}/contacts").json()
    assert related["total"] == sum(c.get("accountId") == account["id"]
                                   for c in state.records["Contact"].values())
    lonely = api(espocrm_server, "POST", "Contact", json={"lastName": "Lonely"}).json()
    assert api(espocrm_server, "POST", f"Account/{account['id']}/contacts",
               json={"id": lonely["id"]}).json() is True
    assert api(espocrm_server, "GET", f"Contact/{lonely['id']}").json()["accountId"] == account["id"]
    api(espocrm_server, "DELETE", f"Account/{account['id']}/contacts", json={"ids": [lonely["id"]]})
    assert api(espocrm_server, "GET", f"Contact/{lonely['id']}").json()["accountId"] is None
    sales = next(t for t in state.records["Team"].values() if t["name"] == "Sales")
    users = api(espocrm_server, "GET", f"Team/{sales['id']}/users").json()["list"]
    roles = {u["userName"]: u["teamRole"] for u in users}
    assert roles == {"alice": "Sales Rep", "bob": "Manager", "dave": "Sales Rep", "frank": "Sales Rep"}
    bob = api(espocrm_server, "GET", f"User/{user_id('bob')}").json()
    assert bob["teamsColumns"] == {sales["id"]: {"role": "Manager"}}
    assert bob["emailAddress"] == "bob@example.com" and "apiKey" not in bob
    assert sales["positionList"] == ["Manager", "Sales Rep"]


# --- stream, convert, mass action, search, metadata ----------------------------------------
def test_stream_notes_follow_changes(espocrm_server):
    lead = api(espocrm_server, "POST", "Lead", json={"lastName": "Stream"}).json()
    api(espocrm_server, "PUT", f"Lead/{lead['id']}", json={"assignedUserId": user_id("carol")})
    api(espocrm_server, "PUT", f"Lead/{lead['id']}", json={"status": "In Process"})
    post = api(espocrm_server, "POST", "Note", json={"type": "Post", "parentType": "Lead",
                                                     "parentId": lead["id"], "post": "Hello"})
    assert post.status_code == 200
    notes = api(espocrm_server, "GET", f"Lead/{lead['id']}/stream").json()
    assert [n["type"] for n in notes["list"]] == ["Post", "Update", "Assign", "Create"]
    update = notes["list"][1]["data"]
    assert update["attributes"] == {"was": {"status": "New"}, "became": {"status": "In Process"}}
    assert api(espocrm_server, "POST", "Note", json={"type": "Create", "parentType": "Lead",
                                                     "parentId": lead["id"]}).status_code == 403
    assert api(espocrm_server, "POST", "Note", json={"parentType": "Lead", "parentId": lead["id"],
                                                     "post": " "}).status_code == 400


def test_convert_lead_creates_and_links_records(espocrm_server):
    lead = api(espocrm_server, "POST", "Lead",
               json={"lastName": "Conv", "assignedUserId": user_id("bob")}).json()
    body = {"id": lead["id"], "records": {
        "Account": {"name": "Conv Inc"}, "Contact": {"lastName": "Conv"},
        "Opportunity": {"name": "Conv deal", "amount": 10, "closeDate": "2027-01-01"}}}
    converted = api(espocrm_server, "POST", "Lead/action/convert", json=body).json()
    assert converted["status"] == "Converted" and converted["convertedAt"]
    opp = api(espocrm_server, "GET", f"Opportunity/{converted['createdOpportunityId']}").json()
    assert opp["accountId"] == converted["createdAccountId"]
    assert opp["contactsIds"] == [converted["createdContactId"]]
    assert opp["assignedUserId"] == user_id("bob")
    again = api(espocrm_server, "POST", "Lead/action/convert", json=body)
    assert again.status_code == 409
    assert {d["_entityType"] for d in again.json()} == {"Account", "Contact"}
    assert api(espocrm_server, "POST", "Lead/action/convert", json={"records": {}}).status_code == 400


def test_mass_action_global_search_and_metadata(espocrm_server):
    response = api(espocrm_server, "POST", "MassAction", json={
        "entityType": "Lead", "action": "update", "data": {"status": "Recycled"},
        "params": {"where": [{"type": "equals", "attribute": "status", "value": "Dead"}]}})
    dead = response.json()["count"]
    assert dead > 0
    assert listing(espocrm_server, "Lead", where=[{"type": "equals", "attribute": "status",
                                                   "value": "Dead"}])["total"] == 0
    bad = api(espocrm_server, "POST", "MassAction", json={"entityType": "Lead", "action": "update"})
    assert bad.headers["X-Status-Reason"] == "Bad search params for mass action."
    missing = api(espocrm_server, "GET", "GlobalSearch", params={"q": ""})
    assert (missing.status_code, missing.headers["X-Status-Reason"]) == (400, "No `q` parameter.")
    found = api(espocrm_server, "GET", "GlobalSearch", params={"q": "globex", "maxSize": 50}).json()
    assert found["list"] and all(r["name"].lower().startswith("globex") or r["_scope"] != "Account"
                                 for r in found["list"])
    industry = api(espocrm_server, "GET", "Metadata",
                   params={"key": "entityDefs.Account.fields.industry.options"}).json()
    assert "Advertising" in industry and len(industry) > 45
    links = api(espocrm_server, "GET", "Metadata", params={"key": "entityDefs.Team.links"}).json()
    assert links["users"]["type"] == "hasMany"


# --- webhooks -----------------------------------------------------------------------------
@pytest.fixture
def receiver(serve):
    app = Flask("receiver")
    app.received = []  # type: ignore[attr-defined]
    app.statuses = []  # type: ignore[attr-defined]

    @app.post("/hook")
    def hook() -> Any:
        app.received.append((request.get_data(), dict(request.headers)))  # type: ignore[attr-defined]
        return ("", app.statuses.pop(0) if app.statuses else 200)  # type: ignore[attr-defined]

    server = serve(app)
    server.received = app.received  # type: ignore[attr-defined]
    server.statuses = app.statuses  # type: ignore[attr-defined]
    return server


def _register(server, event: str, url: str, skip_own: bool = True) -> dict[str, Any]:
    response = api(server, "POST", "Webhook", json={"event": event, "url": url, "skipOwn": skip_own})
    assert response.status_code == 200, response.headers.get("X-Status-Reason")
    return response.json()


def test_webhook_registration_rules(espocrm_server):
    def status(body):
        response = api(espocrm_server, "POST", "Webhook", json=body)
        return response.status_code, response.headers.get("X-Status-Reason")
    url = "http://127.0.0.1:9/h"
    assert status({"event": "Foo.create", "url": url}) == (
        403, "Entity type is not available for Webhooks.")
    assert status({"event": "Lead.explode", "url": url}) == (403, "Not supported event.")
    assert status({"event": "Lead.fieldUpdate.assignedUserId", "url": url}) == (
        403, "Field does not exist.")
    assert status({"event": "Lead.create"})[0] == 400
    hook = _register(espocrm_server, "Lead.fieldUpdate.assignedUser", url)
    assert re.fullmatch(r"[0-9a-f]{32}", hook["secretKey"]) and hook["field"] == "assignedUser"
    assert api(espocrm_server, "DELETE", f"Webhook/{hook['id']}").json() is True
    assert api(espocrm_server, "DELETE", f"Webhook/{hook['id']}").status_code == 404


def test_webhook_delivery_is_signed_php_json(espocrm_server, receiver):
    hook = _register(espocrm_server, "Account.create", f"{receiver.url}/hook")
    state = espocrm_server.state
    api(espocrm_server, "POST", "Account", json={"name": "Own change"})  # skipOwn: not sent
    state.create("Account", {"name": "Ünïcode / Slash", "website": "https://x.example/a"},
                 user_id("alice"))
    log = espocrm_server.sender.deliver_pending()
    assert [e["outcome"] for e in log] == ["success"]
    body, headers = receiver.received[0]
    assert b"https:\\/\\/x.example\\/a" in body and b"\\u00dcn\\u00efcode" in body
    assert b", " not in body and b'": ' not in body
    items = json.loads(body)
    assert [i["name"] for i in items] == ["Ünïcode / Slash"]
    mac = hmac.new(hook["secretKey"].encode(), body, hashlib.sha256)
    assert headers["Signature"] == base64.b64encode(f"{hook['id']}:{mac.hexdigest()}".encode()).decode()
    assert base64.b64decode(headers["X-Signature"]) == hook["id"].encode() + b":" + mac.digest()
    assert headers["Content-Type"] == "application/json"
    assert espocrm_server.sender.deliver_pending() == []


def test_webhook_update_field_update_and_delete_payloads(espocrm_server, receiver):
    url = f"{receiver.url}/hook"
    for event in ("Lead.update", "Lead.fieldUpdate.assignedUser", "Lead.delete"):
        _register(espocrm_server, event, url)
    lead = next(iter(espocrm_server.state.records["Lead"]))
    response = requests.post(f"{espocrm_server.url}/_fake/ui", timeout=5, json={
        "user": "bob", "action": "update", "entityType": "Lead", "id": lead,
        "data": {"assignedUserId": user_id("carol"), "title": "Boss"}})
    assert response.status_code == 200
    espocrm_server.state.update("Lead", lead, {"title": "Boss"}, user_id("bob"))  # no change
    espocrm_server.state.delete("Lead", lead, user_id("bob"))
    espocrm_server.sender.deliver_pending()
    payloads = sorted((json.loads(body) for body, _ in receiver.received), key=len)
    by_keys = {frozenset(p[0]): p for p in payloads}
    assert by_keys[frozenset({"id"})] == [{"id": lead}]
    assert by_keys[frozenset({"id", "assignedUserId", "assignedUserName"})] == [
        {"id": lead, "assignedUserId": user_id("carol"), "assignedUserName": "Carol Chen"}]
    update = next(p for p in payloads if "title" in p[0])
    assert len(update) == 1 and {"id", "title", "assignedUserId", "modifiedAt"} <= set(update[0])
    assert "lastName" not in update[0]


def test_webhook_batches_of_50_and_retry_rules(espocrm_server, receiver):
    state = espocrm_server.state
    hook = _register(espocrm_server, "Task.create", f"{receiver.url}/hook")
    alice = user_id("alice")
    for i in range(60):
        state.create("Task", {"name": f"T{i}", "assignedUserId": alice}, alice)
    sender = espocrm_server.sender
    assert [e["count"] for e in sender.deliver_pending()] == [50]
    assert [e["count"] for e in sender.deliver_pending()] == [10]
    state.create("Task", {"name": "retry", "assignedUserId": alice}, alice)
    receiver.statuses.extend([503, 500, 404, 401])
    now = time.time()
    outcomes = [sender.deliver_pending(now + i * 601)[0]["outcome"] for i in range(4)]
    assert outcomes == ["retry", "retry", "retry", "retry"]
    assert sender.deliver_pending(now + 10_000) == []  # failed after 4 attempts
    assert state.webhook_queue == []
    state.create("Task", {"name": "bad", "assignedUserId": alice}, alice)
    receiver.statuses.append(400)
    assert sender.deliver_pending()[0]["outcome"] == "failed"
    assert sender.deliver_pending(now + 10_000) == []
    state.create("Task", {"name": "gone", "assignedUserId": alice}, alice)
    receiver.statuses.append(410)
    assert sender.deliver_pending()[0]["outcome"] == "deleted"
    assert hook["id"] not in state.webhooks


def test_webhook_retry_waits_for_the_retry_period(espocrm_server, receiver):
    _register(espocrm_server, "Case.create", f"{receiver.url}/hook")
    espocrm_server.state.create("Case", {"name": "x"}, user_id("carol"))
    receiver.statuses.append(503)
    assert espocrm_server.sender.deliver_pending()[0]["outcome"] == "retry"
    assert espocrm_server.sender.deliver_pending() == []
    assert espocrm_server.sender.deliver_pending(time.time() + 601)[0]["outcome"] == "success"
    assert len(receiver.received) == 2


def test_unreachable_webhook_target_is_retried(espocrm_server):
    _register(espocrm_server, "Case.create", f"http://127.0.0.1:{free_port()}/hook")
    espocrm_server.state.create("Case", {"name": "x"}, user_id("carol"))
    entry = espocrm_server.sender.deliver_pending()[0]
    assert (entry["status"], entry["outcome"]) == (0, "retry")


def test_acl_knobs(espocrm_server):
    leads = listing(espocrm_server, "Lead")
    hidden = leads["list"][0]["id"]
    requests.post(f"{espocrm_server.url}/_fake/acl", timeout=5,
                  json={"deny": {"Case": ["edit", "delete"]}, "hidden": [f"Lead:{hidden}"]})
    after = listing(espocrm_server, "Lead")
    assert after["total"] == leads["total"] - 1 and hidden not in [r["id"] for r in after["list"]]
    for method in ("GET", "PUT", "DELETE"):
        response = api(espocrm_server, method, f"Lead/{hidden}", json={})
        assert response.status_code == 403
    case = next(iter(espocrm_server.state.records["Case"]))
    response = api(espocrm_server, "PUT", f"Case/{case}", json={"name": "x"})
    assert (response.status_code, response.headers["X-Status-Reason"]) == (403, "No edit access.")
    assert api(espocrm_server, "GET", f"Case/{case}").status_code == 200
    requests.post(f"{espocrm_server.url}/_fake/acl", json={}, timeout=5)
    assert api(espocrm_server, "GET", f"Lead/{hidden}").status_code == 200


# --- faults, persistence, CLI -------------------------------------------------------------
def test_fault_hooks_over_http(espocrm_server):
    fault = f"{espocrm_server.url}/_fake/fault"
    requests.post(fault, json={"mode": "down", "count": 1}, timeout=5)
    assert api(espocrm_server, "GET", "App/user").status_code == 503
    assert api(espocrm_server, "GET", "App/user").status_code == 200
    requests.post(fault, json={"mode": "garbage"}, timeout=5)
    assert api(espocrm_server, "GET", "App/user").content.startswith(b"<html>")
    requests.post(fault, json={"mode": "off"}, timeout=5)
    assert requests.post(fault, json={"mode": "weird"}, timeout=5).status_code == 400
    log = requests.get(f"{espocrm_server.url}/_fake/requests", timeout=5).json()
    assert [e["status"] for e in log] == [503, 200, 200]
    requests.delete(f"{espocrm_server.url}/_fake/requests", timeout=5)
    assert espocrm_server.requests() == []


def test_persistence_survives_restart(tmp_path):
    data = tmp_path / "espocrm.json"
    first = FakeEspoCRM(data)
    created = first.state.create("Account", {"name": "Persisted"}, user_id("alice"))
    hook = {"event": "Account.update", "url": "http://127.0.0.1:9/x"}
    from fakes.espocrm.webhooks import register
    register(first.state, hook, first.state.records["User"][user_id("espomcp")])
    second = FakeEspoCRM(data)
    assert second.state.records["Account"][created["id"]]["name"] == "Persisted"
    assert len(second.state.webhooks) == 1
    assert len(second.state.records["Contact"]) == 150


def test_seed_is_deterministic():
    a, b = FakeEspoCRM(), FakeEspoCRM()
    assert a.state.records == b.state.records
    users = a.state.records["User"]
    assert users[user_id("admin")]["type"] == "admin"
    assert {u["userName"] for u in users.values()} >= {"alice", "bob", "carol", "admin"}
    assigned = {r["assignedUserId"] for r in a.state.records["Opportunity"].values()}
    assert len(assigned) > 2


def test_runs_as_a_module(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakes.espocrm", "--port", str(port),
                             "--data", str(tmp_path / "d.json"), "--webhook-interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                response = requests.get(f"http://127.0.0.1:{port}/api/v1/App/user", headers=KEY,
                                        timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert response.json()["user"]["userName"] == "espomcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert (tmp_path / "d.json").exists()


def test_api_changes_reach_webhooks_without_skip_own(espocrm_server, receiver):
    _register(espocrm_server, "Lead.update", f"{receiver.url}/hook", skip_own=False)
    leads = [r["id"] for r in listing(espocrm_server, "Lead", maxSize=2)["list"]]
    response = api(espocrm_server, "POST", "MassAction", json={
        "entityType": "Lead", "action": "update", "params": {"ids": leads},
        "data": {"title": "Mass"}})
    assert response.json() == {"count": 2, "ids": leads}
    espocrm_server.sender.deliver_pending()
    items = json.loads(receiver.received[0][0])
    assert sorted(i["id"] for i in items) == sorted(leads)
    assert all(i["title"] == "Mass" for i in items)
