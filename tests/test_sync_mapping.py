"""The EspoCRM → tuple mapping, and that it never writes a tuple the model forbids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from espomcp.fga.tuples import TupleKey
from espomcp.sync import mapping
from espomcp.sync.mapping import (
    ORGANIZATION,
    MappingError,
    diff,
    is_managed,
    object_id,
    tuples_for_record,
    tuples_for_team,
    tuples_for_user,
)

MODEL = json.loads((Path(__file__).resolve().parents[1] / "fga" / "model.json").read_text())
TYPES = {td["type"]: td for td in MODEL["type_definitions"]}

# One record per type with every attribute the mapping reads filled in.
FULL = {
    "id": "r1", "createdById": "u1", "assignedUserId": "u2", "assignedUsersIds": ["u3"],
    "teamsIds": ["t1", "t2"], "collaboratorsIds": ["u4"], "usersIds": ["u5"],
    "accountId": "a1", "accountsIds": ["a2"], "contactId": "c1",
}
PARENTS = {"Meeting": "Opportunity", "Call": "Lead", "Task": "Case", "Note": "Task"}
RECORD_TYPES = ["Account", "Contact", "Lead", "Opportunity", "Case", "Meeting", "Call", "Task",
                "Note"]


def _allowed(key: TupleKey) -> bool:
    """Whether the model lets ``key`` be written: type, relation and user-type restriction."""
    td = TYPES.get(key.object.split(":", 1)[0])
    if td is None or key.relation not in td.get("relations", {}):
        return False
    if "this" not in json.dumps(td["relations"][key.relation]):
        return False
    restrictions = td["metadata"]["relations"][key.relation].get("directly_related_user_types", [])
    user_type = key.user.split(":", 1)[0]
    return any(r["type"] == user_type and "relation" not in r and "wildcard" not in r
               and "condition" not in r for r in restrictions)


def _all_tuples() -> set[TupleKey]:
    out: set[TupleKey] = set()
    for entity_type in RECORD_TYPES:
        record = dict(FULL, parentType=PARENTS.get(entity_type), parentId="p1")
        out |= tuples_for_record(entity_type, record)
    out |= tuples_for_user({"id": "u1", "type": "admin", "teamsIds": ["t1"],
                            "teamsColumns": {"t1": {"role": "Manager"}}})
    out |= tuples_for_team({"id": "t1"}, [{"id": "u1", "teamRole": "Manager"}])
    return out


def test_every_written_tuple_is_allowed_by_the_model() -> None:
    written = _all_tuples()
    assert {k.relation for k in written} >= {"organization", "owner", "assignee", "team",
                                              "collaborator", "parent", "member", "manager", "admin"}
    forbidden = sorted(str(k) for k in written if not _allowed(k))
    assert forbidden == []


@pytest.mark.parametrize("kind", sorted(mapping.MANAGED_RELATIONS))
def test_declared_relations_exist_in_the_model(kind: str) -> None:
    assert kind in TYPES, f"type {kind} missing from fga/model.json"
    for relation in mapping.MANAGED_RELATIONS[kind]:
        assert relation in TYPES[kind]["relations"], f"{kind}#{relation} missing from the model"
        assert TYPES[kind]["metadata"]["relations"][relation].get("directly_related_user_types")
    for kind_, parents in mapping.PARENT_TYPES.items():
        allowed = {r["type"] for r in TYPES[kind_]["metadata"]["relations"]["parent"]
                   ["directly_related_user_types"]}
        assert set(parents) == allowed, f"{kind_}#parent types differ from the model"


def test_contact_record_tuples() -> None:
    contact = {"id": "c9", "createdById": "alice", "assignedUserId": "carol",
               "teamsIds": ["sales"], "accountId": "acme", "accountsIds": ["acme", "globex"],
               "parentType": "Account", "parentId": "ignored"}
    assert tuples_for_record("Contact", contact) == {
        TupleKey(ORGANIZATION, "organization", "contact:c9"),
        TupleKey("user:alice", "owner", "contact:c9"),
        TupleKey("user:carol", "assignee", "contact:c9"),
        TupleKey("team:sales", "team", "contact:c9"),
        TupleKey("account:acme", "parent", "contact:c9"),
        TupleKey("account:globex", "parent", "contact:c9"),
    }


def test_activity_parent_and_attendees() -> None:
    meeting = {"id": "m1", "assignedUserId": "alice", "usersIds": ["carol", "alice"],
               "parentType": "Opportunity", "parentId": "deal", "accountId": "acme"}
    got = tuples_for_record("Meeting", meeting)
    assert TupleKey("opportunity:deal", "parent", "meeting:m1") in got
    assert TupleKey("account:acme", "parent", "meeting:m1") not in got  # accountId is derived
    assert TupleKey("user:carol", "collaborator", "meeting:m1") in got
    # a parent type the model does not allow is skipped, not written
    task = {"id": "t1", "parentType": "Document", "parentId": "d1"}
    assert {k.relation for k in tuples_for_record("Task", task)} == {"organization"}


def test_case_and_note_specifics() -> None:
    case = {"id": "k1", "accountId": "globex", "contactId": "jane", "collaboratorsIds": ["alice"]}
    got = tuples_for_record("Case", case)
    assert TupleKey("account:globex", "parent", "case:k1") in got
    assert not any(k.user.startswith("contact:") for k in got)
    note = {"id": "n1", "createdById": "bob", "assignedUserId": "x", "parentType": "Account",
            "parentId": "acme", "usersIds": ["carol"], "teamsIds": ["support"]}
    got = tuples_for_record("Note", note)
    assert not any(k.relation == "assignee" for k in got)
    assert TupleKey("user:bob", "owner", "note:n1") in got
    assert TupleKey("account:acme", "parent", "note:n1") in got


def test_junk_references_are_skipped_but_own_id_must_be_valid() -> None:
    record = {"id": "a1", "assignedUserId": "x#y", "teamsIds": [None, "ok", "a:b", "../x"]}
    got = tuples_for_record("Account", record)
    assert {k.user for k in got} == {ORGANIZATION, "team:ok"}
    for bad in ("", None, "a:b", "a#b", "a b", "../etc", "x/y"):
        with pytest.raises(MappingError):
            tuples_for_record("Account", {"id": bad})
    with pytest.raises(MappingError):
        tuples_for_record("Invoice", {"id": "i1"})
    with pytest.raises(MappingError):
        object_id("Con tact", "c1")


def test_object_id() -> None:
    assert object_id("Contact", "66a0c1d2e3f4a5b6c") == "contact:66a0c1d2e3f4a5b6c"
    assert object_id("User", "7d1f0d3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f").startswith("user:7d1f")


def test_users_members_managers_admins() -> None:
    bob = {"id": "bob", "type": "regular", "teamsIds": ["sales", "support"],
           "teamsColumns": {"sales": {"role": "Manager"}, "support": {"role": "Agent"}}}
    assert tuples_for_user(bob) == {
        TupleKey("user:bob", "member", ORGANIZATION),
        TupleKey(ORGANIZATION, "organization", "user:bob"),
        TupleKey("user:bob", "member", "team:sales"),
        TupleKey("user:bob", "manager", "team:sales"),
        TupleKey("user:bob", "member", "team:support"),
    }
    admin = tuples_for_user({"id": "adm", "type": "admin"})
    assert TupleKey("user:adm", "admin", ORGANIZATION) in admin
    assert TupleKey("user:x", "admin", ORGANIZATION) in tuples_for_user({"id": "x", "isAdmin": True})
    for inactive in ({"id": "u", "isActive": False, "teamsIds": ["t"]},
                     {"id": "u", "type": "portal"}, {"id": "u", "type": "api"}):
        assert tuples_for_user(inactive) == set()
    assert tuples_for_record("User", bob) == tuples_for_user(bob)


def test_team_side_membership_matches_user_side() -> None:
    team = tuples_for_team({"id": "sales"}, [{"id": "bob", "teamRole": "Manager"},
                                             {"id": "alice", "teamRole": None},
                                             {"id": "gone", "isActive": False}])
    assert team == {TupleKey(ORGANIZATION, "organization", "team:sales"),
                    TupleKey("user:bob", "member", "team:sales"),
                    TupleKey("user:bob", "manager", "team:sales"),
                    TupleKey("user:alice", "member", "team:sales")}
    assert tuples_for_record("Team", {"id": "sales"}) == {
        TupleKey(ORGANIZATION, "organization", "team:sales")}


def test_diff_and_managed() -> None:
    old = {TupleKey("user:alice", "assignee", "contact:c"), TupleKey("team:s", "team", "contact:c")}
    new = {TupleKey("user:carol", "assignee", "contact:c"), TupleKey("team:s", "team", "contact:c")}
    assert diff(old, new) == ([TupleKey("user:carol", "assignee", "contact:c")],
                              [TupleKey("user:alice", "assignee", "contact:c")])
    assert diff(new, new) == ([], [])
    assert is_managed(TupleKey("user:a", "assignee", "contact:c"))
    assert not is_managed(TupleKey("user:a", "viewer", "contact:c"))
    assert not is_managed(TupleKey("user:a", "assignee", "widget:c"))
