"""Security review: tools must not let a caller touch or reveal records they may not read.

Link attributes in ``data`` (``parentId``, ``accountId``, ``contactsIds``…) relate a record
to others just like ``link_records`` does, so they need read permission on every referenced
record; and every way of creating a record applies the same assignment rule.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from espomcp.tools.related import changes_related_record

SALES = "ae4280d213874742d"
SUPPORT = "1a2cc2df330e840b5"


def ids_of(world: Any, entity_type: str, **match: Any) -> list[str]:
    return [rid for rid, r in world.crm.state.table(entity_type).items()
            if all(r.get(k) == v for k, v in match.items())]


def sales_only(world: Any, entity_type: str) -> tuple[str, str]:
    rid = ids_of(world, entity_type, teamsIds=[SALES])[0]
    return rid, world.crm.state.name_of(entity_type, rid) or ""


def test_create_cannot_attach_to_a_hidden_parent_or_reveal_its_name(embedded_world):
    account, name = sales_only(embedded_world, "Account")
    embedded_world.error("carol", "get_record", {"entity_type": "Account", "id": account})
    before = set(embedded_world.crm.state.table("Task"))
    result = embedded_world.call("carol", "create_record", {"entity_type": "Task", "data": {
        "name": "probe", "parentType": "Account", "parentId": account}})
    text = result.content[0].text
    assert result.is_error is True, text
    assert "can_read" in text and name not in text
    assert set(embedded_world.crm.state.table("Task")) == before


def test_update_cannot_link_hidden_records_through_link_multiple_fields(embedded_world):
    carol = embedded_world.user_id("carol")
    case = ids_of(embedded_world, "Case", assignedUserId=carol)[0]
    contact, name = sales_only(embedded_world, "Contact")
    before = dict(embedded_world.crm.state.table("Case")[case])
    result = embedded_world.call("carol", "update_record", {"entity_type": "Case", "id": case,
                                                            "data": {"contactsIds": [contact]}})
    text = result.content[0].text
    assert result.is_error is True, text
    assert "can_read" in text and name not in text
    assert embedded_world.crm.state.table("Case")[case].get("contactsIds") == \
        before.get("contactsIds")


def test_update_may_still_link_readable_records(embedded_world):
    carol = embedded_world.user_id("carol")
    case = ids_of(embedded_world, "Case", assignedUserId=carol)[1]
    readable = next(rid for rid, r in embedded_world.crm.state.table("Contact").items()
                    if "1a2cc2df330e840b5" in (r.get("teamsIds") or []))
    updated = embedded_world.ok("carol", "update_record", {
        "entity_type": "Case", "id": case, "data": {"contactsIds": [readable]}})
    assert updated["record"]["contactsIds"] == [readable]


def test_convert_lead_applies_the_assignment_rule(embedded_world):
    alice = embedded_world.user_id("alice")
    lead = next(rid for rid, r in embedded_world.crm.state.table("Lead").items()
                if r.get("assignedUserId") == alice and r.get("status") != "Converted")
    result = embedded_world.call("alice", "convert_lead", {
        "lead_id": lead, "contact": {"lastName": "Pushed", "assignedUserId":
                                     embedded_world.user_id("carol")},
        "skip_duplicate_check": True})
    assert result.is_error is True, result.content[0].text
    assert "assign" in result.content[0].text
    assert embedded_world.crm.state.table("Lead")[lead].get("status") != "Converted"


def test_convert_lead_cannot_attach_to_a_hidden_account(embedded_world):
    # Every demo account is Sales, so the admin makes one alice cannot read.
    hidden = embedded_world.ok("admin", "create_record", {"entity_type": "Account", "data": {
        "name": "Support Secret Inc", "assignedUserId": embedded_world.user_id("carol"),
        "teamsIds": ["1a2cc2df330e840b5"]}, "skip_duplicate_check": True})["record"]["id"]
    embedded_world.error("alice", "get_record", {"entity_type": "Account", "id": hidden})
    alice = embedded_world.user_id("alice")
    lead = [rid for rid, r in embedded_world.crm.state.table("Lead").items()
                  if r.get("assignedUserId") == alice and r.get("status") != "Converted"][-1]
    result = embedded_world.call("alice", "convert_lead", {
        "lead_id": lead, "contact": {"lastName": "Attached", "accountId": hidden},
        "skip_duplicate_check": True})
    text = result.content[0].text
    assert result.is_error is True, text
    assert "Support Secret Inc" not in text
    assert embedded_world.crm.state.table("Lead")[lead].get("status") != "Converted"


def test_stream_hides_notes_about_records_the_reader_cannot_see(embedded_world):
    shared = next(rid for rid, r in embedded_world.crm.state.table("Account").items()
                  if r.get("teamsIds") == [SALES, SUPPORT])
    task = embedded_world.ok("bob", "create_record", {"entity_type": "Task", "data": {
        "name": "Secret renegotiation plan", "parentType": "Account", "parentId": shared,
        "teamsIds": [SALES]}})["record"]["id"]
    embedded_world.error("carol", "get_record", {"entity_type": "Task", "id": task})
    bobs_view = embedded_world.ok("bob", "get_stream", {"entity_type": "Account", "id": shared})
    assert any(n.get("relatedId") == task for n in bobs_view["notes"])
    carols_view = embedded_world.ok("carol", "get_stream", {"entity_type": "Account",
                                                            "id": shared})
    text = str(carols_view)
    assert task not in text and "Secret renegotiation plan" not in text
    # the hidden note is not counted either: totals and paging cover readable notes only
    assert carols_view["total"] == len(carols_view["notes"]) < bobs_view["total"]
    assert carols_view["total_is_exact"] is True and carols_view["next_offset"] is None


def test_link_records_cannot_reassign_or_reshare_without_can_assign(embedded_world):
    alice, carol = embedded_world.user_id("alice"), embedded_world.user_id("carol")
    account = next(rid for rid, r in embedded_world.crm.state.table("Account").items()
                   if r.get("assignedUserId") == alice and r.get("teamsIds") == [SALES])
    for tool, link, target in (("link_records", "teams", SUPPORT),
                               ("unlink_records", "teams", SALES),
                               ("link_records", "assignedUser", carol)):
        text = embedded_world.error("alice", tool, {"entity_type": "Account", "id": account,
                                                    "link": link, "related_ids": [target]})
        assert "can_assign" in text, (tool, link, text)
    record = embedded_world.crm.state.table("Account")[account]
    assert record["teamsIds"] == [SALES] and record["assignedUserId"] == alice


def test_link_records_cannot_set_the_creator(embedded_world):
    # createdById makes its user the record's owner (can_write for good); update_record
    # refuses it, and so must linking through the createdBy link.
    dave, bob = embedded_world.user_id("dave"), embedded_world.user_id("bob")
    account = next(rid for rid, r in embedded_world.crm.state.table("Account").items()
                   if r.get("assignedUserId") == dave and r.get("createdById") != bob)
    creator = embedded_world.crm.state.table("Account")[account]["createdById"]
    result = embedded_world.call("bob", "link_records", {
        "entity_type": "Account", "id": account, "link": "createdBy", "related_ids": [bob]})
    assert result.is_error is True, result.content[0].text
    assert embedded_world.crm.state.table("Account")[account]["createdById"] == creator


def test_search_paging_reveals_nothing_about_unreadable_matches(embedded_world, monkeypatch):
    # Over-fetch mode (large readable sets): next_offset used to be the raw EspoCRM position,
    # so hidden records matching any filter shifted it: an oracle on their attributes.
    from espomcp.tools import search

    monkeypatch.setattr(search, "PUSHDOWN_LIMIT", 0)
    contacts = embedded_world.crm.state.table("Contact")
    readable = sorted(rid for rid, r in contacts.items() if SUPPORT in (r.get("teamsIds") or []))
    first, second = readable[1], readable[2]
    hidden = min(rid for rid, r in contacts.items() if r.get("teamsIds") == [SALES])
    assert hidden < first

    def page(extra_ids: list[str], offset: int) -> dict:
        where = [{"type": "in", "attribute": "id", "value": [first, second, *extra_ids]}]
        return embedded_world.ok("carol", "search_records", {
            "entity_type": "Contact", "where": where, "order_by": "id", "order": "asc",
            "limit": 1, "offset": offset, "select": ["name"]})

    plain, probed = page([], 0), page([hidden], 0)
    assert [r["id"] for r in probed["records"]] == [first]
    assert (probed["total"], probed["next_offset"]) == (plain["total"], plain["next_offset"])
    assert [r["id"] for r in page([hidden], probed["next_offset"])["records"]] == [second]


def test_overfetch_paging_still_walks_every_readable_record_once(embedded_world, monkeypatch):
    from espomcp.tools import search

    monkeypatch.setattr(search, "PUSHDOWN_LIMIT", 0)
    expected = {rid for rid, r in embedded_world.crm.state.table("Contact").items()
                if SUPPORT in (r.get("teamsIds") or [])}
    seen: list[str] = []
    offset = 0
    while offset is not None:
        page = embedded_world.ok("carol", "search_records", {
            "entity_type": "Contact", "limit": 3, "offset": offset, "select": ["name"]})
        seen += [r["id"] for r in page["records"]]
        offset = page["next_offset"]
    assert sorted(seen) == sorted(expected) and page["total"] == len(expected)


def test_create_cannot_share_with_other_teams_without_assign_rights(embedded_world):
    # update_record needs can_assign to change teamsIds; creating straight into another
    # team must not be the way around it (a rep pushing records into Support's lists).
    before = set(embedded_world.crm.state.table("Task"))
    text = embedded_world.error("alice", "create_record", {"entity_type": "Task", "data": {
        "name": "pushed into support", "teamsIds": [SUPPORT]}})
    assert "team" in text
    assert set(embedded_world.crm.state.table("Task")) == before
    own = embedded_world.ok("alice", "create_record", {"entity_type": "Task", "data": {
        "name": "own team is fine", "teamsIds": [SALES]}})
    assert own["created"] is True
    managed = embedded_world.ok("bob", "create_record", {"entity_type": "Task", "data": {
        "name": "manager may share", "teamsIds": [SALES, SUPPORT]}})
    assert managed["created"] is True


def test_create_applies_the_assignment_rule_to_assigned_users_lists(embedded_world):
    # Entity types with several assigned users (assignedUsersIds) map each to an assignee.
    alice, carol = embedded_world.user_id("alice"), embedded_world.user_id("carol")
    text = embedded_world.error("alice", "create_record", {"entity_type": "Task", "data": {
        "name": "many assignees", "assignedUserId": alice, "assignedUsersIds": [carol]}})
    assert "assigning to others" in text


def test_stream_notes_about_other_types_need_that_types_read_scope(embedded_world):
    account = next(rid for rid, r in embedded_world.crm.state.table("Account").items()
                   if r.get("assignedUserId") == embedded_world.user_id("alice"))
    task = embedded_world.ok("alice", "create_record", {"entity_type": "Task", "data": {
        "name": "Scoped task note", "parentType": "Account", "parentId": account}})["record"]["id"]
    full = embedded_world.ok("alice", "get_stream", {"entity_type": "Account", "id": account})
    assert any(n.get("relatedId") == task for n in full["notes"])
    narrow = embedded_world.call("alice", "get_stream", {"entity_type": "Account", "id": account},
                                 scopes=["espocrm:accounts:read"])
    assert narrow.is_error is False
    assert task not in narrow.content[0].text


def test_global_search_paging_reveals_nothing_about_unreadable_matches(embedded_world):
    import requests

    crm = embedded_world.crm

    def raw_hits(query: str) -> list[dict]:
        return requests.get(f"{crm.url}/api/v1/GlobalSearch", params={"q": query, "maxSize": 50},
                            headers={"X-Api-Key": "demo-api-key"}, timeout=10).json()["list"]

    def hidden_from_carol(hit: dict) -> bool:
        record = crm.state.table(hit["_scope"]).get(hit["id"]) or {}
        return SUPPORT not in (record.get("teamsIds") or [])

    names = sorted({r["name"].split()[0] for r in crm.state.table("Account").values()})
    query = next(q for q in names
                 if len(hits := raw_hits(q)) >= 2 and all(map(hidden_from_carol, hits)))
    probed = embedded_world.ok("carol", "global_search", {"query": query, "limit": 1})
    nothing = embedded_world.ok("carol", "global_search", {"query": "zzzz-none", "limit": 1})
    assert probed["records"] == [] and probed["next_offset"] == nothing["next_offset"]


def test_search_has_no_next_page_when_only_hidden_matches_follow(embedded_world, monkeypatch):
    from espomcp.tools import search

    monkeypatch.setattr(search, "PUSHDOWN_LIMIT", 0)
    contacts = embedded_world.crm.state.table("Contact")
    mine = min(rid for rid, r in contacts.items() if SUPPORT in (r.get("teamsIds") or []))
    hidden = max(rid for rid, r in contacts.items() if r.get("teamsIds") == [SALES])
    assert mine < hidden
    result = embedded_world.ok("carol", "search_records", {
        "entity_type": "Contact", "limit": 1, "order_by": "id", "order": "asc",
        "where": [{"type": "in", "attribute": "id", "value": [mine, hidden]}]})
    assert [r["id"] for r in result["records"]] == [mine]
    assert result["next_offset"] is None and result["total"] == 1



def _hidden_contact(world: Any, first: str, last: str) -> str:
    """A Support-only contact of carol's that alice (Sales) cannot read."""
    rid = world.ok("admin", "create_record", {"entity_type": "Contact", "data": {
        "firstName": first, "lastName": last, "assignedUserId": world.user_id("carol"),
        "teamsIds": [SUPPORT]}, "skip_duplicate_check": True})["record"]["id"]
    world.error("alice", "get_record", {"entity_type": "Contact", "id": rid})
    return rid


def test_create_does_not_count_duplicates_the_caller_cannot_read(embedded_world):
    # Creating a contact like hidden ones must not tell alice how many such records exist:
    # the answer is the same whatever their number.
    hidden = _hidden_contact(embedded_world, "Quentin", "Hiddenfield")
    args = {"entity_type": "Contact", "data": {"firstName": "Quentin", "lastName": "Hiddenfield"}}
    first = embedded_world.ok("alice", "create_record", args)
    assert first["created"] is False and first["duplicates"] == []
    assert "hidden_duplicates" not in first and hidden not in str(first)
    assert "cannot see" in first["message"] and "skip_duplicate_check" in first["message"]
    _hidden_contact(embedded_world, "Quentin", "Hiddenfield")
    assert embedded_world.ok("alice", "create_record", args) == first


def test_readable_duplicates_are_listed_without_a_hint_of_hidden_ones(embedded_world):
    hidden = _hidden_contact(embedded_world, "Rosalind", "Hiddenfield")
    data = {"firstName": "Rosalind", "lastName": "Hiddenfield"}
    mine = embedded_world.ok("alice", "create_record", {"entity_type": "Contact", "data": data,
                                                        "skip_duplicate_check": True})
    answer = embedded_world.ok("alice", "create_record", {"entity_type": "Contact", "data": data})
    assert answer["created"] is False
    assert [d["id"] for d in answer["duplicates"]] == [mine["record"]["id"]]
    assert "hidden_duplicates" not in answer and hidden not in str(answer)
    assert "cannot see" not in answer["message"]


def test_convert_lead_does_not_count_duplicates_the_caller_cannot_read(embedded_world):
    alice = embedded_world.user_id("alice")
    lead = next(rid for rid, r in embedded_world.crm.state.table("Lead").items()
                if r.get("assignedUserId") == alice and r.get("status") != "Converted")
    _hidden_contact(embedded_world, "Ulrich", "Hiddenfield")
    args = {"lead_id": lead, "contact": {"firstName": "Ulrich", "lastName": "Hiddenfield"}}
    first = embedded_world.ok("alice", "convert_lead", args)
    assert first["converted"] is False
    _hidden_contact(embedded_world, "Ulrich", "Hiddenfield")
    assert embedded_world.ok("alice", "convert_lead", args) == first


def test_convert_lead_lists_readable_duplicates(embedded_world):
    alice = embedded_world.user_id("alice")
    lead = [rid for rid, r in embedded_world.crm.state.table("Lead").items()
            if r.get("assignedUserId") == alice and r.get("status") != "Converted"][1]
    data = {"firstName": "Vera", "lastName": "Hiddenfield"}
    hidden = _hidden_contact(embedded_world, "Vera", "Hiddenfield")
    mine = embedded_world.ok("alice", "create_record", {"entity_type": "Contact", "data": data,
                                                        "skip_duplicate_check": True})
    answer = embedded_world.ok("alice", "convert_lead", {"lead_id": lead, "contact": data})
    assert answer["converted"] is False and hidden not in str(answer)
    assert [d["id"] for d in answer["duplicates"]] == [mine["record"]["id"]]
    assert "cannot see" not in answer["message"]


def _readable_not_writable(world: Any, entity_type: str, **match: Any) -> str:
    """A record of dave's that alice reads (shared Sales team) but may not edit."""
    dave = world.user_id("dave")
    rid = next(rid for rid, r in world.crm.state.table(entity_type).items()
               if r.get("assignedUserId") == dave and r.get("createdById") != world.user_id("alice")
               and SALES in (r.get("teamsIds") or []) and all(r.get(k) == v for k, v in match.items()))
    world.ok("alice", "get_record", {"entity_type": entity_type, "id": rid})
    world.error("alice", "update_record", {"entity_type": entity_type, "id": rid,
                                           "data": {"description": "probe"}})
    return rid


def _alices_account(world: Any) -> str:
    alice = world.user_id("alice")
    return next(rid for rid, r in world.crm.state.table("Account").items()
                if r.get("assignedUserId") == alice)


def test_one_to_many_link_needs_edit_permission_on_the_related_record(embedded_world):
    # Account.contacts sets each contact's accountId: that edits the contact (and lets the
    # account's editors read it), so can_read on the contact is not enough.
    account = _alices_account(embedded_world)
    contact = _readable_not_writable(embedded_world, "Contact")
    before = dict(embedded_world.crm.state.table("Contact")[contact])
    text = embedded_world.error("alice", "link_records", {
        "entity_type": "Account", "id": account, "link": "contacts", "related_ids": [contact]})
    assert "can_write" in text and contact in text
    assert embedded_world.crm.state.table("Contact")[contact] == before


def test_one_to_many_unlink_needs_edit_permission_on_the_related_record(embedded_world):
    account = _alices_account(embedded_world)
    contact = _readable_not_writable(embedded_world, "Contact")
    embedded_world.ok("admin", "link_records", {"entity_type": "Account", "id": account,
                                                "link": "contacts", "related_ids": [contact]})
    text = embedded_world.error("alice", "unlink_records", {
        "entity_type": "Account", "id": account, "link": "contacts", "related_ids": [contact]})
    assert "can_write" in text
    assert embedded_world.crm.state.table("Contact")[contact]["accountId"] == account


def test_children_link_needs_edit_permission_on_the_child(embedded_world):
    account = _alices_account(embedded_world)
    task = _readable_not_writable(embedded_world, "Task")
    before = dict(embedded_world.crm.state.table("Task")[task])
    text = embedded_world.error("alice", "link_records", {
        "entity_type": "Account", "id": account, "link": "tasks", "related_ids": [task]})
    assert "can_write" in text
    assert embedded_world.crm.state.table("Task")[task] == before


def test_many_to_many_link_still_needs_only_read_permission(embedded_world):
    alice = embedded_world.user_id("alice")
    opportunity = next(rid for rid, r in embedded_world.crm.state.table("Opportunity").items()
                       if r.get("assignedUserId") == alice)
    contact = _readable_not_writable(embedded_world, "Contact")
    for tool in ("link_records", "unlink_records"):
        done = embedded_world.ok("alice", tool, {"entity_type": "Opportunity", "id": opportunity,
                                                 "link": "contacts", "related_ids": [contact]})
        assert done["record"]["id"] == opportunity


def test_writing_link_needs_the_write_scope_of_the_related_type(embedded_world):
    alice = embedded_world.user_id("alice")
    account = _alices_account(embedded_world)
    contact = next(rid for rid, r in embedded_world.crm.state.table("Contact").items()
                   if r.get("assignedUserId") == alice)
    token = embedded_world.token("alice", ["espocrm:accounts:read", "espocrm:accounts:write",
                                           "espocrm:contacts:read"])
    response = requests.post(embedded_world.url, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "link_records", "arguments": {"entity_type": "Account", "id": account,
                                                  "link": "contacts", "related_ids": [contact]}}},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                 "MCP-Protocol-Version": "2025-11-25"}, timeout=10)
    assert response.status_code == 403, response.text
    assert "espocrm:contacts:write" in response.headers["WWW-Authenticate"]


# EspoCRM's own metadata (not the fake's): Account.contacts is many-to-many there, but its
# Contact side (accountsIds) makes the account the contact's FGA parent.
REAL_DEFS: dict[str, Any] = {
    "Account": {"fields": {}, "links": {
        "contacts": {"type": "hasMany", "entity": "Contact", "foreign": "accounts",
                     "relationName": "accountContact"},
        "opportunities": {"type": "hasMany", "entity": "Opportunity", "foreign": "account"},
        "tasks": {"type": "hasChildren", "entity": "Task", "foreign": "parent"},
        "campaign": {"type": "belongsTo", "entity": "Campaign"}}},
    "Contact": {"fields": {"accounts": {"type": "linkMultiple"}}, "links": {
        "accounts": {"type": "hasMany", "entity": "Account", "foreign": "contacts",
                     "relationName": "accountContact"},
        "opportunities": {"type": "hasMany", "entity": "Opportunity", "foreign": "contacts",
                          "relationName": "contactOpportunity"}}},
    "Opportunity": {"fields": {"contacts": {"type": "linkMultiple"}}, "links": {
        "account": {"type": "belongsTo", "entity": "Account", "foreign": "opportunities"},
        "contacts": {"type": "hasMany", "entity": "Contact", "foreign": "opportunities",
                     "relationName": "contactOpportunity"}}},
    "Task": {"fields": {}, "links": {"parent": {"type": "belongsToParent"}}},
}


@pytest.mark.parametrize("source, link, target, writes", [
    ("Account", "opportunities", "Opportunity", True),   # one-to-many: Opportunity.accountId
    ("Account", "tasks", "Task", True),                  # the task's parent
    ("Account", "contacts", "Contact", True),            # many-to-many, but an FGA parent
    ("Opportunity", "contacts", "Contact", False),       # many-to-many, join table only
    ("Contact", "opportunities", "Opportunity", False),
    ("Opportunity", "account", "Account", False),        # the source's own accountId
    ("Account", "nope", "Contact", True),                # unknown: fail closed
])
def test_which_links_change_the_related_record(source, link, target, writes):
    assert changes_related_record(REAL_DEFS[source], link, REAL_DEFS[target], target) is writes


def test_link_tools_declare_every_permission_they_check(mcp_app):
    registry = mcp_app.extensions["espomcp"].registry
    for name in ("link_records", "unlink_records"):
        tool = next(t for t in registry if t.name == name)
        assert {"can_read", "can_write", "can_assign"} <= set(tool.relations)
