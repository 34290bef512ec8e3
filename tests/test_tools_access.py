"""Who sees what, end to end through the official MCP client, on every FGA backend.

alice (Sales rep) sees her and Sales' records; carol (Support) sees none of Sales'; bob
manages Sales records; admin sees everything; new records and reassignments move access.
"""

from __future__ import annotations

from typing import Any

SALES = "ae4280d213874742d"
SUPPORT = "1a2cc2df330e840b5"


def records(world: Any, entity_type: str) -> dict[str, dict[str, Any]]:
    return dict(world.crm.state.table(entity_type))


def visible_to_team_member(world: Any, entity_type: str, user: str, team: str) -> set[str]:
    uid = world.user_id(user)
    return {rid for rid, r in records(world, entity_type).items()
            if team in (r.get("teamsIds") or []) or r.get("assignedUserId") == uid}


def search_all(world: Any, user: str, entity_type: str, **extra: Any) -> tuple[set[str], int]:
    """Page through search_records; return the ids seen and the reported total."""
    seen: list[str] = []
    offset: int | None = 0
    total = -1
    steps = 0
    while offset is not None and steps < 50:
        page = world.ok(user, "search_records", {"entity_type": entity_type, "limit": 200,
                                                 "offset": offset, "select": ["name"], **extra})
        seen += [r["id"] for r in page["records"]]
        total = page["total"]
        offset = page["next_offset"]
        steps += 1
    assert len(seen) == len(set(seen)), "a page repeated a record"
    return set(seen), total


def test_alice_sees_her_and_her_teams_contacts_only(world):
    expected = visible_to_team_member(world, "Contact", "alice", SALES)
    seen, total = search_all(world, "alice", "Contact")
    assert seen == expected
    assert total == len(expected)


def test_carol_sees_none_of_sales_only_records(world):
    for entity_type in ("Contact", "Case", "Account"):
        expected = visible_to_team_member(world, entity_type, "carol", SUPPORT)
        seen, total = search_all(world, "carol", entity_type)
        assert seen == expected, entity_type
        assert total == len(expected)
        sales_only = {rid for rid, r in records(world, entity_type).items()
                      if r.get("teamsIds") == [SALES]}
        assert not seen & sales_only


def test_admin_sees_everything(world):
    seen, total = search_all(world, "admin", "Case")
    assert seen == set(records(world, "Case"))
    assert total == len(seen)


def test_filters_combine_with_permissions(world):
    uid = world.user_id("alice")
    seen, total = search_all(world, "carol", "Case",
                             where=[{"type": "equals", "attribute": "status", "value": "New"}])
    expected = {rid for rid, r in records(world, "Case").items()
                if r.get("status") == "New" and (SUPPORT in (r.get("teamsIds") or [])
                                                 or r.get("assignedUserId") == uid)}
    assert seen == expected and total == len(expected)


def test_get_record_denial_does_not_reveal_existence(world):
    sales_only = next(rid for rid, r in records(world, "Account").items()
                      if r.get("teamsIds") == [SALES])
    message = world.error("carol", "get_record", {"entity_type": "Account", "id": sales_only})
    missing = world.error("carol", "get_record",
                          {"entity_type": "Account", "id": "0123456789abcdef0"})
    assert "can_read" in message and "can_read" in missing
    assert message.replace(sales_only, "X") == missing.replace("0123456789abcdef0", "X")
    record = world.ok("alice", "get_record", {"entity_type": "Account", "id": sales_only})
    assert record["record"]["id"] == sales_only


def test_created_record_is_readable_by_creator_and_manager_only(world):
    created = world.ok("alice", "create_record", {"entity_type": "Contact", "data": {
        "firstName": "Zed", "lastName": f"Newcomer-{world.backend_kind}"}})
    assert created["created"] is True and created["permissions"]["synced"] is True
    rid = created["record"]["id"]
    assert created["record"]["assignedUserId"] == world.user_id("alice")
    for user in ("alice", "bob", "admin"):
        assert world.ok(user, "get_record", {"entity_type": "Contact", "id": rid})
    world.error("carol", "get_record", {"entity_type": "Contact", "id": rid})
    seen, _ = search_all(world, "carol", "Contact")
    assert rid not in seen


def test_team_member_may_read_but_not_edit_a_colleagues_record(world):
    dave = world.user_id("dave")
    rid = next(rid for rid, r in records(world, "Opportunity").items()
               if r.get("assignedUserId") == dave and r.get("teamsIds") == [SALES])
    assert world.ok("alice", "get_record", {"entity_type": "Opportunity", "id": rid})
    message = world.error("alice", "update_record", {"entity_type": "Opportunity", "id": rid,
                                                     "data": {"description": "mine now"}})
    assert "can_write" in message
    assert records(world, "Opportunity")[rid].get("description") != "mine now"
    updated = world.ok("bob", "update_record", {"entity_type": "Opportunity", "id": rid,
                                                "data": {"description": "checked by bob"}})
    assert updated["record"]["description"] == "checked by bob"


def test_reassigning_moves_access(world):
    frank = world.user_id("frank")
    rid = next(rid for rid, r in records(world, "Account").items()
               if r.get("assignedUserId") == frank and r.get("teamsIds") == [SALES])
    world.error("carol", "get_record", {"entity_type": "Account", "id": rid})
    world.error("alice", "assign_record", {"entity_type": "Account", "id": rid,
                                           "assigned_user_id": world.user_id("carol")})
    moved = world.ok("bob", "assign_record", {"entity_type": "Account", "id": rid,
                                              "assigned_user_id": world.user_id("carol"),
                                              "team_ids": [SUPPORT]})
    assert moved["permissions"]["synced"] is True
    assert world.ok("carol", "get_record", {"entity_type": "Account", "id": rid})
    world.error("alice", "get_record", {"entity_type": "Account", "id": rid})


def test_manager_deletes_rep_cannot(world):
    created = world.ok("alice", "create_record", {"entity_type": "Task", "data": {
        "name": f"call back {world.backend_kind}"}})
    rid = created["record"]["id"]
    denied = world.call("alice", "delete_record", {"entity_type": "Task", "id": rid},
                        scopes=["espocrm:tasks:read", "espocrm:tasks:write",
                                "espocrm:tasks:delete"])
    assert denied.is_error and "can_delete" in denied.content[0].text
    assert world.ok("bob", "delete_record", {"entity_type": "Task", "id": rid})["deleted"]
    assert rid not in records(world, "Task")
    world.error("alice", "get_record", {"entity_type": "Task", "id": rid})


def test_bulk_update_checks_every_item(world):
    alice = world.user_id("alice")
    mine = [rid for rid, r in records(world, "Lead").items()
            if r.get("assignedUserId") == alice][:2]
    daves = next(rid for rid, r in records(world, "Lead").items()
                 if r.get("assignedUserId") == world.user_id("dave"))
    result = world.ok("alice", "bulk_update_records", {"entity_type": "Lead", "items": [
        {"id": mine[0], "data": {"description": "bulk 1"}},
        {"id": daves, "data": {"description": "not allowed"}},
        {"id": mine[1], "data": {"description": "bulk 2"}},
    ]})
    assert [r["ok"] for r in result["results"]] == [True, False, True]
    assert "can_write" in result["results"][1]["error"]
    assert result["succeeded"] == 2 and result["failed"] == 1


def test_global_search_is_filtered(world):
    sales_only = next(r for r in records(world, "Account").values()
                      if r.get("teamsIds") == [SALES])
    found = world.ok("carol", "global_search", {"query": sales_only["name"]})
    assert sales_only["id"] not in {r["id"] for r in found["records"]}
    found = world.ok("alice", "global_search", {"query": sales_only["name"]})
    assert sales_only["id"] in {r["id"] for r in found["records"]}
