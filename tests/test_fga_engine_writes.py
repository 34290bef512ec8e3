"""Write rules, Read and ReadChanges of the embedded engine (openfga.md §5, §6)."""

from __future__ import annotations

from typing import Any

import pytest

from espomcp.fga.engine import Engine
from espomcp.fga.tuples import Condition, TupleKey
from tests.test_fga_engine import GROUPS, error_code, make


def tk(user: str, relation: str, obj: str) -> dict[str, Any]:
    return {"user": user, "relation": relation, "object": obj}


@pytest.fixture
def engine() -> Engine:
    return make(GROUPS + """
type secret
  relations
    define reader: [user with ok]
condition ok(x: int) {
  x > 0
}
""")


@pytest.mark.parametrize("bad", [
    tk("folder:f", "viewer", "doc:1"),            # type not allowed
    tk("group:g", "viewer", "doc:1"),             # plain group (only group#member allowed)
    tk("user:*", "editor", "doc:1"),              # wildcard not allowed
    tk("user:ann", "owner", "nope:1"),            # unknown type
    tk("user:ann", "nope", "doc:1"),              # unknown relation
    tk("doc:1#viewer", "viewer", "doc:1"),        # implicit tuple
    tk("user:ann", "reader", "secret:1"),         # condition required
    {**tk("user:ann", "viewer", "doc:1"), "condition": {"name": "ok"}},   # condition not allowed
    {**tk("user:ann", "reader", "secret:1"), "condition": {"name": "nope"}},
    tk("user ann", "viewer", "doc:1"),
    {**tk("user:ann", "reader", "secret:1"), "condition": {"name": "ok", "context": {"y": 1}}},
    {**tk("user:ann", "reader", "secret:1"), "condition": {"name": "ok", "context": {"x": "abc"}}},
])
def test_write_enforces_restrictions(engine: Engine, bad: dict[str, Any]) -> None:
    assert error_code(lambda: engine.write([bad])) in (2027, 2000)
    assert engine.tuple_count() == 0


def test_write_duplicates_and_missing(engine: Engine) -> None:
    ann = tk("user:ann", "viewer", "doc:1")
    assert error_code(lambda: engine.write([ann, ann])) == 2004
    assert error_code(lambda: engine.write([ann], [ann])) == 2004
    engine.write([ann])
    assert error_code(lambda: engine.write([ann, tk("user:bob", "viewer", "doc:1")])) == 2017
    assert engine.tuple_count() == 1                      # all or nothing
    engine.write([ann, tk("user:bob", "viewer", "doc:1")], on_duplicate="ignore")
    assert engine.tuple_count() == 2
    missing = tk("user:cat", "viewer", "doc:1")
    assert error_code(lambda: engine.write(deletes=[missing, ann])) == 2017
    assert engine.check("user:ann", "viewer", "doc:1")
    engine.write(deletes=[missing, ann], on_missing="ignore")
    assert not engine.check("user:ann", "viewer", "doc:1")
    assert error_code(lambda: engine.write([ann], on_duplicate="maybe")) == 2000


def test_write_limit_of_100_keys(engine: Engine) -> None:
    keys = [tk(f"user:u{i}", "viewer", "doc:1") for i in range(101)]
    assert error_code(lambda: engine.write(keys)) == 2025
    engine.write(keys[:100])
    assert error_code(lambda: engine.write(keys[100:], keys[:100])) == 2025
    assert engine.tuple_count() == 100


def test_conditioned_tuple_round_trip(engine: Engine) -> None:
    engine.write([{**tk("user:ann", "reader", "secret:1"), "condition": {"name": "ok", "context": {"x": 2}}}])
    (key, stamp), = engine.read(object="secret:1")[0]
    assert key == TupleKey("user:ann", "reader", "secret:1", Condition("ok", {"x": 2}))
    assert stamp.endswith("Z")
    assert engine.check("user:ann", "reader", "secret:1")


def test_delete_stale_tuple_after_model_change(engine: Engine) -> None:
    engine.write([tk("user:ann", "viewer", "doc:1")])
    model = engine.model
    kept = [t for t in model["type_definitions"] if t["type"] != "doc"]
    engine.set_model({**model, "type_definitions": kept})
    engine.write(deletes=[tk("user:ann", "viewer", "doc:1")])
    assert engine.tuple_count() == 0


def test_read_filters_and_pages(engine: Engine) -> None:
    engine.write([tk(f"user:u{i}", "viewer", "doc:1") for i in range(7)] +
                 [tk("user:u0", "editor", "doc:1"), tk("user:u0", "viewer", "doc:2"),
                  tk("user:u0", "member", "group:g")])
    users = [key.user for key, _ in engine.read(object="doc:1", relation="viewer", page_size=100)[0]]
    assert users == [f"user:u{i}" for i in range(7)]
    assert len(engine.read(object="doc:1")[0]) == 8
    by_type = engine.read(user="user:u0", object="doc:")[0]
    assert sorted(str(key) for key, _ in by_type) == ["doc:1#editor@user:u0", "doc:1#viewer@user:u0",
                                                       "doc:2#viewer@user:u0"]
    assert [str(k) for k, _ in engine.read(user="user:u0", relation="viewer", object="doc:")[0]] == [
        "doc:1#viewer@user:u0", "doc:2#viewer@user:u0"]
    seen, token = [], None
    while True:
        page, token = engine.read(page_size=3, continuation_token=token)
        seen += [str(key) for key, _ in page]
        assert len(page) <= 3
        if not token:
            break
    assert len(seen) == len(set(seen)) == 10
    for bad in (lambda: engine.read(object="doc:"), lambda: engine.read(user="user:u0"),
                lambda: engine.read(page_size=101), lambda: engine.read(continuation_token="x")):
        assert error_code(bad) == 2000


def test_read_changes(engine: Engine) -> None:
    engine.write([tk("user:ann", "viewer", "doc:1"), tk("user:ann", "member", "group:g")])
    engine.write(deletes=[tk("user:ann", "viewer", "doc:1")])
    changes, token = engine.read_changes()
    assert [(c["operation"], c["tuple_key"]["object"]) for c in changes] == [
        ("TUPLE_OPERATION_WRITE", "doc:1"), ("TUPLE_OPERATION_WRITE", "group:g"),
        ("TUPLE_OPERATION_DELETE", "doc:1")]
    assert engine.read_changes(continuation_token=token) == ([], token)
    docs, _ = engine.read_changes("doc", page_size=1)
    assert len(docs) == 1 and docs[0]["tuple_key"]["object"] == "doc:1"
    engine.write([tk("user:bob", "viewer", "doc:3")])
    later, _ = engine.read_changes(continuation_token=token)
    assert [c["tuple_key"]["user"] for c in later] == ["user:bob"]
