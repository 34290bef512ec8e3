"""ListObjects, ListUsers and Expand of the embedded engine (openfga.md §6)."""

from __future__ import annotations

import pytest

from espomcp.fga.dsl import parse_dsl
from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError
from tests.test_fga_engine import GROUPS, HEADER, make

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


def test_list_users_stops_long_userset_chains_at_the_depth_limit() -> None:
    """A chain far beyond the limit fails fast with 2002 (no recursion, no walk of all 1500 links)."""
    engine = make("""
type group
  relations
    define member: [user, group#member]
""", [("user:ann", "member", "group:g0")] +
        [(f"group:g{i}#member", "member", f"group:g{i + 1}") for i in range(1500)])
    for filters in ([("user", None)], [("group", "member")]):
        with pytest.raises(FgaError) as info:
            engine.list_users("group:g1500", "member", filters)
        assert info.value.code == 2002
    with pytest.raises(FgaError) as info:
        engine.list_objects("user:ann", "member", "group")
    assert info.value.code == 2002


# --- resolution depth: chains measured against fga CLI 0.8.2 (OpenFGA v1.22) ---------------------
# Objects at 25 or more hops (userset tuple, tuple-to-userset or computed userset: one hop each)
# from the query's user (ListObjects) or object (ListUsers) fail with 2002; 24 hops still answer.
CHAINS = {
    "userset": ("""
type group
  relations
    define member: [user, group#member]
""", lambda n: [("user:ann", "member", "group:g0")] +
        [(f"group:g{i}#member", "member", f"group:g{i + 1}") for i in range(n)],
        ("member", "group"), lambda n: f"group:g{n}"),
    "tuple_to_userset": ("""
type folder
  relations
    define parent: [folder]
    define viewer: [user] or viewer from parent
""", lambda n: [("user:ann", "viewer", "folder:f0")] +
        [(f"folder:f{i}", "parent", f"folder:f{i + 1}") for i in range(n)],
        ("viewer", "folder"), lambda n: f"folder:f{n}"),
    "two_types": ("""
type a
  relations
    define member: [user, b#member]
type b
  relations
    define member: [user, a#member]
""", lambda n: [("user:ann", "member", "a:0")] +
        [(f"{'ab'[i % 2]}:{i}#member", "member", f"{'ba'[i % 2]}:{i + 1}") for i in range(n)],
        ("member", "a"), lambda n: f"{'ab'[n % 2]}:{n}"),
}


def _computed_chain(n: int) -> Engine:
    dsl = "type doc\n  relations\n    define r0: [user]\n" + "".join(
        f"    define r{i + 1}: r{i}\n" for i in range(n))
    return make(dsl, [("user:ann", "r0", "doc:1")])


@pytest.mark.parametrize("kind", sorted(CHAINS))
def test_depth_limit_of_list_objects_and_list_users(kind: str) -> None:
    dsl, tuples, (relation, type_name), last = CHAINS[kind]
    ok = make(dsl, tuples(24))
    assert len(ok.list_objects("user:ann", relation, type_name)) == (13 if kind == "two_types" else 25)
    assert ok.list_users(last(24), relation, [("user", None)]) == ["user:ann"]
    deep = make(dsl, tuples(25))
    for call in (lambda: deep.list_objects("user:ann", relation, type_name),
                 lambda: deep.list_users(last(25), relation, [("user", None)])):
        with pytest.raises(FgaError) as info:
            call()
        assert info.value.code == 2002


@pytest.mark.parametrize("kind", sorted(CHAINS))
def test_depth_limit_of_check(kind: str) -> None:
    """Check's boundary on the same chains (tests/test_fga_check_depth.py compares more shapes with
    the CLI): 25 dispatches fail, but OpenFGA walks a simple recursive relation breadth-first for a
    plain user, which matches one hop further, fails after 24 hops without a match even for a user
    off the chain, and answers false at any length for a user holding the relation nowhere."""
    dsl, tuples, (relation, type_name), last = CHAINS[kind]
    reach = 24 if kind == "two_types" else 25

    def check(n: int, user: str) -> bool | int:
        engine = make(dsl, [*tuples(n), ("user:carl", relation, f"{type_name}:elsewhere")])
        try:
            return engine.check(user, relation, last(n))
        except FgaError as exc:
            return exc.code

    assert [check(n, "user:ann") for n in (reach, reach + 1)] == [True, 2002]
    if kind == "two_types":
        assert [check(n, "user:bob") for n in (24, 25)] == [False, 2002]
        assert [check(n, "user:carl") for n in (24, 25)] == [False, 2002]
    else:
        assert [check(n, "user:bob") for n in (25, 26, 60)] == [False, False, False]
        assert [check(n, "user:carl") for n in (23, 24, 26)] == [False, 2002, 2002]


def test_computed_usersets_count_towards_the_list_depth_limit() -> None:
    """Unlike Check, OpenFGA's ListObjects and ListUsers dispatch every computed userset."""
    ok = _computed_chain(24)
    assert ok.list_objects("user:ann", "r24", "doc") == ["doc:1"]
    assert ok.list_users("doc:1", "r24", [("user", None)]) == ["user:ann"]
    deep = _computed_chain(25)
    assert deep.check("user:ann", "r25", "doc:1")
    for call in (lambda: deep.list_objects("user:ann", "r25", "doc"),
                 lambda: deep.list_users("doc:1", "r25", [("user", None)])):
        with pytest.raises(FgaError) as info:
            call()
        assert info.value.code == 2002


def test_list_depth_error_is_the_error_check_gives() -> None:
    dsl, tuples, _, _ = CHAINS["userset"]
    engine = make(dsl, tuples(40))
    errors = []
    for call in (lambda: engine.check("user:ann", "member", "group:g40"),
                 lambda: engine.list_objects("user:ann", "member", "group"),
                 lambda: engine.list_users("group:g40", "member", [("user", None)])):
        with pytest.raises(FgaError) as info:
            call()
        errors.append((info.value.code, info.value.name, info.value.message))
    assert errors[0][:2] == (2002, "authorization_model_resolution_too_complex")
    assert errors[1] == errors[0] and errors[2] == errors[0]


def test_a_short_path_to_a_deep_object_is_within_the_limit() -> None:
    """ListObjects counts an object's shortest derivation: with a shortcut tuple, the end of a long
    chain is answered (OpenFGA, racing both paths, mostly answers too)."""
    dsl, tuples, _, _ = CHAINS["userset"]
    engine = make(dsl, [*tuples(24), ("user:ann", "member", "group:g24")])
    assert len(engine.list_objects("user:ann", "member", "group")) == 25
    engine.write([{"user": "group:g24#member", "relation": "member", "object": "group:g25"},
                  {"user": "user:ann", "relation": "member", "object": "group:g25"}])
    assert len(engine.list_objects("user:ann", "member", "group")) == 26


def test_data_cycles_still_terminate_under_the_depth_limit() -> None:
    engine = make(CHAINS["userset"][0], [("user:ann", "member", "group:g0")] +
                  [(f"group:g{i}#member", "member", f"group:g{(i + 1) % 10}") for i in range(10)])
    assert len(engine.list_objects("user:ann", "member", "group")) == 10
    assert engine.list_users("group:g5", "member", [("user", None)]) == ["user:ann"]


# --- deadlines ----------------------------------------------------------------------------
@pytest.fixture
def crowd() -> Engine:
    """300 docs ann views directly, through a group, a folder or a condition-free exclusion."""
    engine = make(LISTS)
    tuples = [("user:ann", "member", "group:eng")]
    for n in range(100):
        tuples += [("user:ann", "viewer", f"doc:d{n}"), ("group:eng#member", "viewer", f"doc:g{n}"),
                   ("folder:f", "parent", f"doc:f{n}")]
    tuples.append(("user:ann", "viewer", "folder:f"))
    for start in range(0, len(tuples), 100):
        engine.write([{"user": u, "relation": r, "object": o} for u, r, o in tuples[start:start + 100]])
    return engine


def test_list_deadlines_default_to_three_seconds_and_none_disables() -> None:
    engine = Engine(parse_dsl(HEADER + LISTS))
    assert engine.list_objects_deadline == 3.0 and engine.list_users_deadline == 3.0
    quick = Engine(parse_dsl(HEADER + LISTS), list_objects_deadline=0.5, list_users_deadline=None)
    assert quick.list_objects_deadline == 0.5 and quick.list_users_deadline is None
    assert Engine(parse_dsl(HEADER + LISTS), list_users_deadline=0).list_users_deadline is None
    for bad in (-1, "3", True, float("nan")):
        with pytest.raises(ValueError):
            Engine(parse_dsl(HEADER + LISTS), list_objects_deadline=bad)


def test_tiny_deadline_gives_partial_results_without_error(crowd: Engine) -> None:
    full_objects = set(crowd.list_objects("user:ann", "visible", "doc"))
    full_users = set(crowd.list_users("doc:f1", "viewer", [("user", None)]))
    assert len(full_objects) == 300 and full_users == {"user:ann"}
    crowd.list_objects_deadline = crowd.list_users_deadline = 1e-9
    for relation in ("viewer", "visible", "both"):
        assert set(crowd.list_objects("user:ann", relation, "doc")) <= full_objects
    for relation in ("viewer", "visible"):
        assert set(crowd.list_users("doc:f1", relation, [("user", None)])) <= full_users


class _Clock:
    """A monotonic clock that jumps an hour after its first reading (the request's start)."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return 0.0 if self.readings == 1 else 3600.0


@pytest.mark.parametrize("relation", ["viewer", "visible"])
def test_an_expired_deadline_returns_what_was_found_so_far(crowd: Engine, relation: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Set algebra confirms nothing before it finishes, so ListObjects past its deadline answers
    empty; ListUsers returns nothing it has not confirmed either (never a wrong grant)."""
    import espomcp.fga.list_objects
    import espomcp.fga.list_users

    for module in (espomcp.fga.list_objects, espomcp.fga.list_users):
        monkeypatch.setattr(module, "monotonic", _Clock())
    assert crowd.list_objects("user:ann", relation, "doc") == []
    assert crowd.list_users("doc:f1", relation, [("user", None)]) == []
    crowd.list_objects_deadline = crowd.list_users_deadline = None
    for module in (espomcp.fga.list_objects, espomcp.fga.list_users):
        monkeypatch.setattr(module, "monotonic", _Clock())
    assert len(crowd.list_objects("user:ann", relation, "doc")) == 300
    assert crowd.list_users("doc:f1", relation, [("user", None)]) == ["user:ann"]
