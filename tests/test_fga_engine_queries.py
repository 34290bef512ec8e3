"""ListObjects, ListUsers and Expand of the embedded engine (openfga.md §6)."""

from __future__ import annotations

import pytest

from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError
from tests.test_fga_engine import GROUPS, make

LISTS = """
type group
  relations
    define member: [user, user:*, group#member]
type doc
  relations
    define parent: [folder]
    define blocked: [user]
    define viewer: [user, user:*, group#member] or viewer from parent
    define visible: viewer but not blocked
    define both: viewer and member_of
    define member_of: [user]
type folder
  relations
    define parent: [folder]
    define viewer: [user, group#member] or viewer from parent
"""


@pytest.fixture
def lists() -> Engine:
    return make(LISTS, [
        ("user:ann", "member", "group:eng"),
        ("group:eng#member", "viewer", "doc:1"),
        ("user:ann", "viewer", "doc:1"),          # a second path to the same object
        ("folder:root", "parent", "folder:sub"),
        ("folder:sub", "parent", "doc:2"),
        ("user:bob", "viewer", "folder:root"),
        ("group:eng#member", "viewer", "folder:root"),
        ("user:*", "viewer", "doc:pub"),
        ("user:ann", "blocked", "doc:2"),
        ("user:ann", "member_of", "doc:1"),
    ])


@pytest.mark.parametrize(("user", "relation", "expected"), [
    ("user:ann", "viewer", ["doc:1", "doc:2", "doc:pub"]),   # deduplicated; recursive parents; wildcard
    ("user:bob", "viewer", ["doc:2", "doc:pub"]),
    ("user:zed", "viewer", ["doc:pub"]),
    ("user:*", "viewer", ["doc:pub"]),                       # wildcard as user
    ("group:eng#member", "viewer", ["doc:1", "doc:2"]),     # userset as user
    ("user:ann", "visible", ["doc:1", "doc:pub"]),           # exclusion
    ("user:ann", "both", ["doc:1"]),                         # intersection
    ("user:bob", "both", []),
])
def test_list_objects(lists: Engine, user: str, relation: str, expected: list[str]) -> None:
    assert sorted(lists.list_objects(user, relation, "doc")) == expected
    for obj in expected:
        assert lists.check(user, relation, obj)


def test_list_objects_limit_and_errors(lists: Engine) -> None:
    assert len(lists.list_objects("user:ann", "viewer", "doc", limit=2)) == 2
    with pytest.raises(Exception) as info:
        lists.list_objects("user:ann", "viewer", "nope")
    assert getattr(info.value, "code", None) == 2021
    with pytest.raises(Exception) as info:
        lists.list_objects("user:ann", "nope", "doc")
    assert getattr(info.value, "code", None) == 2022


def test_list_objects_with_conditions() -> None:
    engine = make("""
type doc
  relations
    define viewer: [user with small, user]
condition small(x: int) {
  x < 10
}
""", [{"user": "user:ann", "relation": "viewer", "object": "doc:1", "condition": {"name": "small"}},
      {"user": "user:ann", "relation": "viewer", "object": "doc:2", "condition": {"name": "small",
                                                                                     "context": {"x": 50}}},
      ("user:ann", "viewer", "doc:3")])
    assert sorted(engine.list_objects("user:ann", "viewer", "doc", context={"x": 1})) == ["doc:1", "doc:3"]
    assert sorted(engine.list_objects("user:ann", "viewer", "doc", context={"x": 11})) == ["doc:3"]


@pytest.mark.parametrize(("obj", "relation", "filters", "expected"), [
    ("doc:1", "viewer", [("user", None)], ["user:ann"]),                      # usersets expanded
    ("doc:1", "viewer", [("group", "member")], ["group:eng#member"]),
    ("doc:2", "viewer", [("user", None)], ["user:ann", "user:bob"]),
    ("doc:2", "visible", [("user", None)], ["user:bob"]),                    # excluded user absent
    ("doc:pub", "viewer", [("user", None)], ["user:*"]),
    ("doc:1", "both", [("user", None)], ["user:ann"]),
    ("group:eng", "member", [("group", "member")], ["group:eng#member"]),
    ("doc:1", "viewer", [("folder", None)], []),
])
def test_list_users(lists: Engine, obj: str, relation: str, filters: list, expected: list[str]) -> None:
    assert sorted(lists.list_users(obj, relation, filters)) == expected


def test_list_users_keeps_granted_wildcard_despite_exclusion() -> None:
    engine = make("""
type doc
  relations
    define blocked: [user]
    define viewer: [user:*, user] but not blocked
""", [("user:*", "viewer", "doc:1"), ("user:bob", "blocked", "doc:1"), ("user:bob", "viewer", "doc:1"),
      ("user:ann", "viewer", "doc:1")])
    assert engine.list_users("doc:1", "viewer", [{"type": "user"}]) == ["user:*", "user:ann"]


def test_list_users_validates_filters(lists: Engine) -> None:
    for filters, code in (([], 2000), ([("nope", None)], 2021), ([("group", "nope")], 2022)):
        with pytest.raises(Exception) as info:
            lists.list_users("doc:1", "viewer", filters)
        assert getattr(info.value, "code", None) == code


def test_expand_one_level() -> None:
    engine = make(GROUPS, [("user:ann", "viewer", "doc:1"), ("group:eng#member", "viewer", "doc:1"),
                           ("folder:f", "parent", "doc:1")])
    tree = engine.expand("viewer", "doc:1")
    assert tree == {"root": {"name": "doc:1#viewer", "union": {"nodes": [
        {"name": "doc:1#viewer", "leaf": {"users": {"users": ["user:ann", "group:eng#member"]}}},
        {"name": "doc:1#viewer", "leaf": {"computed": {"userset": "doc:1#editor"}}},
        {"name": "doc:1#viewer", "leaf": {"tupleToUserset": {
            "tupleset": "doc:1#parent", "computed": [{"userset": "folder:f#viewer"}]}}},
    ]}}}


def test_expand_difference_and_intersection() -> None:
    engine = make("""
type doc
  relations
    define a: [user]
    define b: [user]
    define c: (a and b) but not b
""")
    assert engine.expand("c", "doc:1")["root"] == {"name": "doc:1#c", "difference": {
        "base": {"name": "doc:1#c", "intersection": {"nodes": [
            {"name": "doc:1#c", "leaf": {"computed": {"userset": "doc:1#a"}}},
            {"name": "doc:1#c", "leaf": {"computed": {"userset": "doc:1#b"}}}]}},
        "subtract": {"name": "doc:1#c", "leaf": {"computed": {"userset": "doc:1#b"}}}}}


def test_list_objects_fails_when_a_condition_cannot_be_evaluated() -> None:
    engine = make("""
type doc
  relations
    define viewer: [user with small, user]
condition small(x: int) {
  x < 10
}
""", [{"user": "user:ann", "relation": "viewer", "object": "doc:1", "condition": {"name": "small"}},
      ("user:ann", "viewer", "doc:2")])
    with pytest.raises(FgaError) as info:
        engine.list_objects("user:ann", "viewer", "doc")
    assert info.value.code == 2000


def test_list_users_follows_long_userset_chains() -> None:
    engine = make("""
type group
  relations
    define member: [user, group#member]
""", [("user:ann", "member", "group:g0")] +
        [(f"group:g{i}#member", "member", f"group:g{i + 1}") for i in range(1500)])
    assert engine.list_users("group:g1500", "member", [("user", None)]) == ["user:ann"]
    assert len(engine.list_users("group:g1500", "member", [("group", "member")])) == 1501
