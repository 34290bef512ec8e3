"""Check semantics of the embedded engine, one construct at a time (openfga.md §2 to §4)."""

from __future__ import annotations

from typing import Any

import pytest

from espomcp.fga.dsl import parse_dsl
from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError

HEADER = "model\n  schema 1.1\ntype user\n"


def make(dsl: str, tuples: list[tuple[str, str, str]] | list[Any] = ()) -> Engine:
    engine = Engine(parse_dsl(HEADER + dsl))
    writes = [t if isinstance(t, dict) else {"user": t[0], "relation": t[1], "object": t[2]} for t in tuples]
    for start in range(0, len(writes), 100):
        engine.write(writes[start:start + 100])
    return engine


def error_code(call: Any) -> int:
    with pytest.raises(FgaError) as info:
        call()
    return info.value.code


GROUPS = """
type group
  relations
    define member: [user, user:*, group#member]
type doc
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user, group#member] or owner
    define viewer: [user, user:*, group#member] or editor or viewer from parent
type folder
  relations
    define viewer: [user, group#member]
"""


@pytest.fixture
def groups() -> Engine:
    return make(GROUPS, [
        ("user:ann", "member", "group:eng"),
        ("group:eng#member", "member", "group:all"),
        ("group:all#member", "editor", "doc:1"),
        ("user:bob", "owner", "doc:2"),
        ("folder:f", "parent", "doc:3"),
        ("user:cat", "viewer", "folder:f"),
        ("user:*", "viewer", "doc:pub"),
    ])


@pytest.mark.parametrize(("user", "relation", "obj", "expected"), [
    ("user:ann", "editor", "doc:1", True),          # nested usersets
    ("user:ann", "viewer", "doc:1", True),          # computed userset
    ("user:bob", "viewer", "doc:1", False),
    ("user:bob", "editor", "doc:2", True),          # union with computed owner
    ("user:cat", "viewer", "doc:3", True),          # tuple-to-userset
    ("user:ann", "viewer", "doc:3", False),
    ("user:zed", "viewer", "doc:pub", True),        # wildcard grant
    ("user:zed", "editor", "doc:pub", False),
    ("user:*", "viewer", "doc:pub", True),          # wildcard as user: granted itself
    ("user:*", "viewer", "doc:1", False),
    ("group:eng#member", "editor", "doc:1", True),  # userset as user
    ("group:all#member", "viewer", "doc:1", True),
    ("group:eng#member", "viewer", "doc:2", False),
    ("doc:9#viewer", "viewer", "doc:9", True),      # check(O#R, R, O)
    ("doc:9#editor", "viewer", "doc:9", True),
])
def test_check_constructs(groups: Engine, user: str, relation: str, obj: str, expected: bool) -> None:
    assert groups.check(user, relation, obj) is expected


def test_wildcard_member_of_userset_grants_concrete_users() -> None:
    engine = make(GROUPS, [("user:*", "member", "group:open"), ("group:open#member", "viewer", "doc:1")])
    assert engine.check("user:anyone", "viewer", "doc:1")
    assert engine.check("user:*", "viewer", "doc:1")


def test_ttu_skips_parents_without_the_relation() -> None:
    engine = make("""
type team
  relations
    define member: [user]
type org
type doc
  relations
    define parent: [team, org]
    define viewer: member from parent
""", [("org:o", "parent", "doc:1"), ("team:t", "parent", "doc:1"), ("user:ann", "member", "team:t")])
    assert engine.check("user:ann", "viewer", "doc:1")
    assert not engine.check("user:bob", "viewer", "doc:1")


SETOPS = """
type doc
  relations
    define a: [user]
    define b: [user]
    define both: a and b
    define either: a or b
    define only_a: a but not b
"""


@pytest.mark.parametrize(("tuples", "expected"), [
    ([], {"both": False, "either": False, "only_a": False}),
    ([("user:u", "a", "doc:1")], {"both": False, "either": True, "only_a": True}),
    ([("user:u", "b", "doc:1")], {"both": False, "either": True, "only_a": False}),
    ([("user:u", "a", "doc:1"), ("user:u", "b", "doc:1")], {"both": True, "either": True, "only_a": False}),
])
def test_union_intersection_exclusion(tuples: list, expected: dict[str, bool]) -> None:
    engine = make(SETOPS, tuples)
    assert {rel: engine.check("user:u", rel, "doc:1") for rel in expected} == expected


def test_stale_tuples_ignored_after_model_change() -> None:
    engine = make("""
type group
  relations
    define member: [user]
type doc
  relations
    define viewer: [user, user:*, group#member]
""", [("user:ann", "viewer", "doc:1"), ("user:*", "viewer", "doc:2"), ("group:g#member", "viewer", "doc:3"),
      ("user:bob", "member", "group:g")])
    assert engine.check("user:bob", "viewer", "doc:3")
    engine.set_model(parse_dsl(HEADER + """
type group
  relations
    define member: [user]
type doc
  relations
    define viewer: [group]
"""))
    assert not engine.check("user:ann", "viewer", "doc:1")
    assert not engine.check("user:zed", "viewer", "doc:2")
    assert not engine.check("user:bob", "viewer", "doc:3")
    assert engine.list_objects("user:ann", "viewer", "doc") == []
    assert engine.list_users("doc:1", "viewer", [("user", None)]) == []
    assert engine.tuple_count() == 4


CONDITIONS = """
type doc
  relations
    define blocked: [user with flag]
    define viewer: [user with in_hours, user]
    define allowed: viewer and not_blocked
    define not_blocked: [user]
    define open: viewer but not blocked
condition in_hours(hour: int, start: int) {
  hour >= start
}
condition flag(on: bool) {
  on
}
"""


def test_conditions_tuple_context_wins_and_missing_parameter_errors() -> None:
    engine = make(CONDITIONS, [{"user": "user:ann", "relation": "viewer", "object": "doc:1",
                                "condition": {"name": "in_hours", "context": {"start": 9}}}])
    assert engine.check("user:ann", "viewer", "doc:1", context={"hour": 10})
    assert not engine.check("user:ann", "viewer", "doc:1", context={"hour": 8})
    assert engine.check("user:ann", "viewer", "doc:1", context={"hour": 10, "start": 11})
    assert error_code(lambda: engine.check("user:ann", "viewer", "doc:1")) == 2000


def test_missing_parameter_only_errors_when_nothing_else_decides() -> None:
    engine = make(CONDITIONS, [
        {"user": "user:ann", "relation": "viewer", "object": "doc:1",
         "condition": {"name": "in_hours", "context": {"start": 9}}},
        ("user:bob", "viewer", "doc:1"),
        {"user": "user:bob", "relation": "blocked", "object": "doc:1", "condition": {"name": "flag"}},
    ])
    # intersection: a false operand decides even though the other one fails
    assert not engine.check("user:ann", "allowed", "doc:1")
    # exclusion: base false decides; base true + failing subtract is an error
    assert not engine.check("user:cat", "open", "doc:1")
    assert error_code(lambda: engine.check("user:bob", "open", "doc:1")) == 2000
    assert engine.check("user:bob", "open", "doc:1", context={"on": False})


def test_union_error_hidden_by_true_branch() -> None:
    engine = make("""
type doc
  relations
    define a: [user with c]
    define b: [user]
    define v: a or b
condition c(x: int) {
  x > 1
}
""", [{"user": "user:u", "relation": "a", "object": "doc:1", "condition": {"name": "c"}},
      ("user:u", "b", "doc:1")])
    assert engine.check("user:u", "v", "doc:1")
    assert error_code(lambda: engine.check("user:u", "a", "doc:1")) == 2000


def test_contextual_tuples_answer_like_stored_ones(groups: Engine) -> None:
    extra = [{"user": "user:dan", "relation": "member", "object": "group:eng"}]
    assert groups.check("user:dan", "viewer", "doc:1", contextual_tuples=extra)
    assert not groups.check("user:dan", "viewer", "doc:1")
    assert "doc:1" in groups.list_objects("user:dan", "viewer", "doc", contextual_tuples=extra)
    assert "user:dan" in groups.list_users("doc:1", "viewer", [("user", None)], contextual_tuples=extra)
    duplicate = extra * 2 + [{"user": "user:ann", "relation": "member", "object": "group:eng"}]
    assert groups.check("user:dan", "viewer", "doc:1", contextual_tuples=duplicate)


def test_contextual_tuples_validated_and_limited(groups: Engine) -> None:
    bad = [{"user": "folder:f", "relation": "member", "object": "group:eng"}]
    assert error_code(lambda: groups.check("user:ann", "viewer", "doc:1", contextual_tuples=bad)) == 2027
    many = [{"user": f"user:u{i}", "relation": "member", "object": "group:eng"} for i in range(101)]
    assert error_code(lambda: groups.check("user:ann", "viewer", "doc:1", contextual_tuples=many)) == 2000


def test_cycles_resolve_to_false() -> None:
    engine = make("""
type group
  relations
    define member: [user, group#member]
""", [("group:a#member", "member", "group:b"), ("group:b#member", "member", "group:a")])
    assert not engine.check("user:u", "member", "group:a")
    assert engine.list_objects("user:u", "member", "group") == []
    engine.write([{"user": "user:u", "relation": "member", "object": "group:b"}])
    assert engine.check("user:u", "member", "group:a")
    assert sorted(engine.list_objects("user:u", "member", "group")) == ["group:a", "group:b"]
    assert engine.list_users("group:a", "member", [("user", None)]) == ["user:u"]


def test_cycle_in_subtract_branch_makes_exclusion_false() -> None:
    engine = make("""
type document
  relations
    define restricted: [user, document#viewer]
    define viewer: [user] but not restricted
""", [("user:ann", "viewer", "document:1"), ("document:1#viewer", "restricted", "document:1")])
    assert not engine.check("user:ann", "viewer", "document:1")
    assert engine.list_objects("user:ann", "viewer", "document") == []
    assert engine.list_users("document:1", "viewer", [("user", None)]) == []


def test_depth_limit_is_error_2002() -> None:
    engine = make("""
type group
  relations
    define member: [user, group#member]
""", [("user:ann", "member", "group:g0")] +
        [(f"group:g{i}#member", "member", f"group:g{i + 1}") for i in range(30)])
    assert engine.check("user:ann", "member", "group:g20")
    assert error_code(lambda: engine.check("user:ann", "member", "group:g30")) == 2002


@pytest.mark.parametrize(("user", "relation", "obj", "code"), [
    ("user:ann", "viewer", "nope:1", 2021),
    ("user:ann", "nope", "doc:1", 2022),
    ("nope:ann", "viewer", "doc:1", 2021),
    ("group:eng#nope", "viewer", "doc:1", 2022),
    ("ann", "viewer", "doc:1", 2000),
    ("user:ann", "viewer", "doc", 2000),
    ("user:*#member", "viewer", "doc:1", 2000),
])
def test_request_validation(groups: Engine, user: str, relation: str, obj: str, code: int) -> None:
    assert error_code(lambda: groups.check(user, relation, obj)) == code


def test_batch_check_reports_per_item(groups: Engine) -> None:
    result = groups.batch_check([
        {"user": "user:ann", "relation": "viewer", "object": "doc:1", "correlation_id": "a"},
        {"user": "user:bob", "relation": "viewer", "object": "doc:1", "correlation_id": "b"},
        {"user": "user:ann", "relation": "nope", "object": "doc:1", "correlation_id": "c"},
    ])
    assert result["a"] is True and result["b"] is False
    assert isinstance(result["c"], FgaError) and result["c"].code == 2022
    same = {"user": "user:ann", "relation": "viewer", "object": "doc:1", "correlation_id": "x"}
    assert error_code(lambda: groups.batch_check([same, same])) == 2000
    assert error_code(lambda: groups.batch_check([{**same, "correlation_id": "bad id"}])) == 2000
    assert error_code(lambda: groups.batch_check([same] * 51)) == 2000


def test_set_model_rejects_invalid_model(groups: Engine) -> None:
    bad = parse_dsl(HEADER + "type doc\n  relations\n    define viewer: editor\n")
    assert error_code(lambda: groups.set_model(bad)) == 2056
    assert groups.check("user:ann", "viewer", "doc:1")


@pytest.mark.parametrize(("relations", "tuples", "expected"), [
    # a relation whose only cycle is itself is resolved iteratively by OpenFGA: its cycle is just false
    ("define blocked: [user] or blocked from parent",
     [("doc:1", "parent", "doc:2"), ("doc:2", "parent", "doc:1")], True),
    ("define blocked: [user, doc#blocked]",
     [("doc:1#blocked", "blocked", "doc:2"), ("doc:2#blocked", "blocked", "doc:1")], True),
    # any other cycle in the subtract branch makes the exclusion false (checked against fga CLI 0.8.2)
    ("define blocked: [user] or b2 from parent\n    define b2: [user] or blocked from parent",
     [("doc:1", "parent", "doc:2"), ("doc:2", "parent", "doc:1")], False),
    ("define blocked: [user, doc#blocked, doc#other]\n    define other: [user]",
     [("doc:1#blocked", "blocked", "doc:2"), ("doc:2#blocked", "blocked", "doc:1")], False),
])
def test_cycle_in_subtract_branch(relations: str, tuples: list, expected: bool) -> None:
    engine = make(f"""
type doc
  relations
    define parent: [doc]
    {relations}
    define viewer: [user] but not blocked
""", [*tuples, ("user:ann", "viewer", "doc:1")])
    assert engine.check("user:ann", "viewer", "doc:1") is expected
    assert engine.list_objects("user:ann", "viewer", "doc") == (["doc:1"] if expected else [])


def test_immediate_cycle_in_an_operand_beats_a_plain_false() -> None:
    # OpenFGA evaluates operands concurrently: a cycle found without reading tuples arrives first
    engine = make("""
type doc
  relations
    define r0: [user, user:*] but not r1
    define r1: [user, doc#r2]
    define r2: [user] and r0
""", [("user:*", "r0", "doc:1"), ("doc:1#r2", "r1", "doc:1"), ("user:*", "r0", "doc:2")])
    assert not engine.check("user:ann", "r0", "doc:1")
    assert not engine.check("user:*", "r0", "doc:1")
    assert engine.check("user:ann", "r0", "doc:2")
    assert engine.list_objects("user:ann", "r0", "doc") == ["doc:2"]
