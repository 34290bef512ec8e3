"""Every CRM tool end to end (official client → server → client library → fake EspoCRM),
including error paths, hostile input and outages."""

from __future__ import annotations

from typing import Any

import pytest
import requests

SALES = "ae4280d213874742d"
HOSTILE_IDS = ["../User/1", "abc?x=1", "a/b", "a%2Fb", "..", "a#b", " 1ed60b680ef8461eb",
               "x" * 65, "1ed60b680ef8461eb\n", "%2e%2e"]


def ids_of(world: Any, entity_type: str, **match: Any) -> list[str]:
    return [rid for rid, r in world.crm.state.table(entity_type).items()
            if all(r.get(k) == v for k, v in match.items())]


def test_list_entity_types_follows_scopes(embedded_world):
    types = embedded_world.ok("alice", "list_entity_types")["entity_types"]
    alice = {t["entity_type"]: t for t in types}
    assert alice["Contact"]["you_may_write"] is True and alice["Case"]["you_may_read"] is False
    assert alice["User"]["read_only"] is True and alice["User"]["you_may_write"] is False


def test_read_only_token_sees_no_write_tools(embedded_world):
    token = embedded_world.token("alice", ["espocrm:contacts:read"])
    response = requests.post(embedded_world.url, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json",
        "MCP-Protocol-Version": "2025-11-25"}, timeout=10)
    names = {t["name"] for t in response.json()["result"]["tools"]}
    assert {"search_records", "get_record", "whoami"} <= names
    assert not names & {"create_record", "delete_record", "bulk_delete_records"}


def test_describe_entity(embedded_world):
    described = embedded_world.ok("alice", "describe_entity", {"entity_type": "Opportunity"})
    assert described["fields"]["stage"]["type"] == "enum"
    assert "Closed Won" in described["fields"]["stage"]["options"]
    assert described["links"]["account"]["entity"] == "Account"


def test_unknown_entity_type_is_refused_before_espocrm(embedded_world):
    embedded_world.crm.state.request_log.clear()
    for bad in ("Webhook", "User/../Team", "contact", "Preferences"):
        text = embedded_world.error("admin", "search_records", {"entity_type": bad})
        assert "entity_type" in text
    assert not [r for r in embedded_world.crm.api_requests("") if "Webhook" in r["path"]
                or "Preferences" in r["path"] or ".." in r["path"]]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_hostile_ids_never_reach_espocrm(embedded_world, bad_id):
    embedded_world.crm.state.request_log.clear()
    for tool, args in [("get_record", {"entity_type": "Contact", "id": bad_id}),
                       ("update_record", {"entity_type": "Contact", "id": bad_id,
                                          "data": {"title": "x"}}),
                       ("delete_record", {"entity_type": "Contact", "id": bad_id}),
                       ("list_related", {"entity_type": "Account", "id": bad_id,
                                         "link": "contacts"}),
                       ("get_stream", {"entity_type": "Contact", "id": bad_id})]:
        embedded_world.error("admin", tool, args)
    paths = [r["path"] for r in embedded_world.crm.api_requests("")]
    assert not [p for p in paths if bad_id.strip() in p or ".." in p or "%" in p], paths


def test_search_filters_select_order_paging(embedded_world):
    page = embedded_world.ok("bob", "search_records", {
        "entity_type": "Opportunity", "primary_filter": "open", "order_by": "amount",
        "order": "desc", "select": ["name", "amount", "stage"], "limit": 5})
    amounts = [r["amount"] for r in page["records"]]
    assert amounts == sorted(amounts, reverse=True) and len(amounts) == 5
    assert all(r["stage"] not in ("Closed Won", "Closed Lost") for r in page["records"])
    assert set(page["records"][0]) >= {"id", "name", "amount", "stage", "link"}
    nxt = embedded_world.ok("bob", "search_records", {
        "entity_type": "Opportunity", "primary_filter": "open", "order_by": "amount",
        "order": "desc", "select": ["amount"], "limit": 5, "offset": page["next_offset"]})
    assert not {r["id"] for r in nxt["records"]} & {r["id"] for r in page["records"]}


def test_search_bad_where_is_a_clear_error(embedded_world):
    text = embedded_world.error("bob", "search_records", {
        "entity_type": "Lead", "where": [{"type": "equals", "attribute": "nope", "value": 1}]})
    assert "nope" in text
    text = embedded_world.error("bob", "search_records", {
        "entity_type": "Lead", "where": [{"type": "subQueryIn", "attribute": "id"}]})
    assert "subQueryIn" in text
    text = embedded_world.error("bob", "search_records", {"entity_type": "Lead", "limit": 500})
    assert "limit" in text


def test_create_with_validation_error_names_the_field(embedded_world):
    text = embedded_world.error("alice", "create_record", {"entity_type": "Opportunity",
                                                           "data": {"name": "No amount"}})
    assert "amount" in text or "closeDate" in text


def test_duplicates_are_returned_then_skip_creates(embedded_world):
    existing = embedded_world.crm.state.table("Contact")[ids_of(
        embedded_world, "Contact", assignedUserId=embedded_world.user_id("alice"))[0]]
    data = {"firstName": existing["firstName"], "lastName": existing["lastName"]}
    first = embedded_world.ok("alice", "create_record", {"entity_type": "Contact", "data": data})
    assert first["created"] is False
    assert existing["id"] in {d["id"] for d in first["duplicates"]}
    second = embedded_world.ok("alice", "create_record", {"entity_type": "Contact", "data": data,
                                                          "skip_duplicate_check": True})
    assert second["created"] is True


def test_related_link_unlink(embedded_world):
    alice = embedded_world.user_id("alice")
    account = ids_of(embedded_world, "Account", assignedUserId=alice)[0]
    contact = embedded_world.ok("alice", "create_record", {"entity_type": "Contact", "data": {
        "lastName": "Linkable"}})["record"]["id"]
    linked = embedded_world.ok("alice", "link_records", {
        "entity_type": "Account", "id": account, "link": "contacts", "related_ids": [contact]})
    assert linked["linked"] == [contact]
    related = embedded_world.ok("alice", "list_related", {"entity_type": "Account", "id": account,
                                                          "link": "contacts", "limit": 200})
    assert contact in {r["id"] for r in related["records"]}
    embedded_world.ok("alice", "unlink_records", {
        "entity_type": "Account", "id": account, "link": "contacts", "related_ids": [contact]})
    related = embedded_world.ok("alice", "list_related", {"entity_type": "Account", "id": account,
                                                          "link": "contacts", "limit": 200})
    assert contact not in {r["id"] for r in related["records"]}
    text = embedded_world.error("alice", "list_related", {"entity_type": "Account",
                                                          "id": account, "link": "nope"})
    assert "nope" in text


def test_stream_and_notes(embedded_world):
    alice = embedded_world.user_id("alice")
    lead = ids_of(embedded_world, "Lead", assignedUserId=alice)[0]
    posted = embedded_world.ok("alice", "post_note", {"entity_type": "Lead", "id": lead,
                                                      "post": "Called, interested."})
    assert posted["note"]["post"] == "Called, interested."
    stream = embedded_world.ok("alice", "get_stream", {"entity_type": "Lead", "id": lead})
    assert stream["notes"][0]["post"] == "Called, interested."
    sales_task = ids_of(embedded_world, "Task", teamsIds=[SALES])[0]
    text = embedded_world.error("carol", "get_stream", {"entity_type": "Task", "id": sales_task})
    assert "can_read" in text


def test_convert_lead(embedded_world):
    alice = embedded_world.user_id("alice")
    lead = [rid for rid, r in embedded_world.crm.state.table("Lead").items()
            if r.get("assignedUserId") == alice and r.get("status") != "Converted"][-1]
    result = embedded_world.ok("alice", "convert_lead", {
        "lead_id": lead, "account": {"name": "Converted Co"},
        "contact": {"firstName": "Con", "lastName": "Verted"},
        "opportunity": {"name": "First deal", "amount": 1200, "closeDate": "2027-01-31"},
        "skip_duplicate_check": True})
    assert result["converted"] is True and result["lead"]["status"] == "Converted"
    for kind in ("account", "contact", "opportunity"):
        rid = result["created"][kind]["id"]
        assert embedded_world.ok("alice", "get_record", {"entity_type": kind.capitalize(),
                                                         "id": rid})
        if kind != "opportunity":  # carol has no opportunities scope at all
            embedded_world.error("carol", "get_record", {"entity_type": kind.capitalize(),
                                                         "id": rid})


def test_bulk_create_and_delete_report_per_item(embedded_world):
    created = embedded_world.ok("bob", "bulk_create_records", {"entity_type": "Task", "records": [
        {"name": "bulk one"}, {"description": "no name"}, {"name": "bulk three"}]})
    assert [r["ok"] for r in created["results"]] == [True, False, True]
    assert "name" in created["results"][1]["error"]
    ids = [r["id"] for r in created["results"] if r["ok"]]
    deleted = embedded_world.ok("bob", "bulk_delete_records", {"entity_type": "Task",
                                                               "ids": [*ids, "../bad"]})
    assert [r["ok"] for r in deleted["results"]] == [True, True, False]
    assert not set(ids) & set(embedded_world.crm.state.table("Task"))


def test_espocrm_down_is_a_clear_error_and_nothing_changes(embedded_world):
    before = len(embedded_world.crm.state.table("Contact"))
    embedded_world.crm.set_fault("down")
    try:
        text = embedded_world.error("bob", "create_record", {"entity_type": "Contact",
                                                             "data": {"lastName": "Down"}})
        assert "unavailable" in text.lower()
        text = embedded_world.error("bob", "search_records", {"entity_type": "Contact"})
        assert "unavailable" in text.lower()
    finally:
        embedded_world.crm.set_fault("off")
    assert len(embedded_world.crm.state.table("Contact")) == before


def test_fga_outage_denies_never_allows(world):
    alice = world.user_id("alice")
    contact = ids_of(world, "Contact", assignedUserId=alice)[0]
    backend = world.services.fga
    saved = backend.check, backend.list_objects, backend.batch_check

    def down(*args: Any, **kwargs: Any) -> Any:
        from espomcp.fga.errors import FgaUnavailable

        raise FgaUnavailable("FGA backend unreachable")

    if world.openfga is not None:
        requests.post(world.settings.fga_api_url + "/_fake/fault", json={"mode": "down"},
                      timeout=5).raise_for_status()
    else:
        backend.check = backend.list_objects = backend.batch_check = down
    try:
        for tool, args in [("get_record", {"entity_type": "Contact", "id": contact}),
                           ("search_records", {"entity_type": "Contact"}),
                           ("update_record", {"entity_type": "Contact", "id": contact,
                                              "data": {"title": "during outage"}})]:
            result = world.call("alice", tool, args)
            assert result.is_error is True
            assert "permission service is unavailable" in result.content[0].text
            assert result.structured_content is None
    finally:
        if world.openfga is not None:
            requests.post(world.settings.fga_api_url + "/_fake/fault", json={"mode": "ok"},
                          timeout=5).raise_for_status()
        else:
            backend.check, backend.list_objects, backend.batch_check = saved
    assert world.crm.state.table("Contact")[contact].get("title") != "during outage"


def test_search_falls_back_when_the_id_list_is_too_long_for_espocrm(embedded_world):
    expected = embedded_world.ok("carol", "search_records", {"entity_type": "Contact",
                                                             "limit": 5, "select": ["name"]})
    embedded_world.crm.set_fault("status", status=414, count=1, reason="Request-URI Too Long")
    try:
        embedded_world.crm.state.request_log.clear()
        fallback = embedded_world.ok("carol", "search_records", {"entity_type": "Contact",
                                                                 "limit": 5, "select": ["name"]})
        statuses = [r["status"] for r in embedded_world.crm.api_requests("/Contact")]
    finally:
        embedded_world.crm.set_fault("off")
    assert statuses[0] == 414 and all(s == 200 for s in statuses[1:])
    assert fallback == expected
