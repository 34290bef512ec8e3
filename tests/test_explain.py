"""fga/explain.py over a small model exercising every rewrite kind, on every backend
(embedded engine in-process, and the openfga backend against the fake OpenFGA server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from espomcp.fga.backend import FgaBackend, build_backend
from espomcp.fga.dsl import parse_dsl
from espomcp.fga.embedded import EmbeddedBackend
from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError
from espomcp.fga.explain import MAX_TUPLES_PER_READ, explain
from espomcp.fga.tuples import Condition, TupleKey
from espomcp.settings import Settings

MODEL = parse_dsl("""
model
  schema 1.1
type user
type team
  relations
    define member: [user, team#member]
type folder
  relations
    define viewer: [user, user:*]
type doc
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user, team#member] or owner
    define blocked: [user]
    define approver: [user]
    define viewer: (editor or viewer from parent) but not blocked
    define publisher: editor and approver
    define guest: [user with before]
condition before(now: timestamp, until: timestamp) {
  now < until
}
""")

TUPLES = [
    ("user:alice", "member", "team:eng"),
    ("team:eng#member", "editor", "doc:1"),
    ("team:eng#member", "member", "team:all"),
    ("team:all#member", "editor", "doc:2"),
    ("user:*", "viewer", "folder:public"),
    ("folder:public", "parent", "doc:3"),
    ("user:carol", "owner", "doc:4"),
    ("user:carol", "blocked", "doc:4"),
    ("user:dave", "editor", "doc:5"),
    ("user:dave", "approver", "doc:5"),
    ("user:erin", "approver", "doc:5"),
]


@pytest.fixture(params=["embedded", "openfga"])
def backend(request: pytest.FixtureRequest, fga_settings: Callable[..., Settings]) -> FgaBackend:
    if request.param == "embedded":
        store: Any = EmbeddedBackend(Engine(MODEL))
    else:
        fake = request.getfixturevalue("fake_openfga")
        store_id, model_id = fake.new_store(MODEL)
        store = build_backend(fga_settings(fga_backend="openfga", fga_api_url=fake.url,
                                           fga_store_id=store_id, fga_model_id=model_id))
    store.write(writes=[TupleKey(*t) for t in TUPLES])
    store.write(writes=[TupleKey("user:frank", "guest", "doc:6",
                                 Condition("before", {"until": "2030-01-01T00:00:00Z"}))])
    return store


def test_userset_path(backend: FgaBackend) -> None:
    result = explain(backend, "user:alice", "viewer", "doc:1")
    assert result.allowed and not result.note
    assert result.path_texts() == ["user:alice → member of team:eng → editor of doc:1 → viewer"]


def test_nested_usersets(backend: FgaBackend) -> None:
    result = explain(backend, "user:alice", "editor", "doc:2")
    assert result.path_texts() == [
        "user:alice → member of team:eng → member of team:all → editor of doc:2"]


def test_wildcard_through_tuple_to_userset(backend: FgaBackend) -> None:
    result = explain(backend, "user:zoe", "viewer", "doc:3")
    assert result.allowed
    assert result.path_texts() == [
        "user:zoe → viewer of folder:public via user:* → parent of doc:3 → viewer"]


def test_computed_userset_path(backend: FgaBackend) -> None:
    result = explain(backend, "user:carol", "editor", "doc:4")
    assert result.path_texts() == ["user:carol → owner of doc:4 → editor"]


def test_exclusion_is_explained(backend: FgaBackend) -> None:
    result = explain(backend, "user:carol", "viewer", "doc:4")
    assert not result.allowed and result.paths == []
    assert result.reasons == ["excluded by the 'but not' part: user:carol → blocked of doc:4"]


def test_intersection_needs_every_part(backend: FgaBackend) -> None:
    both = explain(backend, "user:dave", "publisher", "doc:5")
    assert both.allowed
    assert both.path_texts() == ["user:dave → editor of doc:5 → publisher",
                                 "user:dave → approver of doc:5 → publisher"]
    one = explain(backend, "user:erin", "publisher", "doc:5")
    assert not one.allowed
    assert "no tuple makes user:erin editor of doc:5" in one.reasons
    assert "no tuple makes user:erin owner of doc:5" in one.reasons


def test_denial_lists_every_failed_way(backend: FgaBackend) -> None:
    result = explain(backend, "user:bob", "viewer", "doc:1")
    assert not result.allowed
    assert result.reasons == ["no tuple makes user:bob member of team:eng",
                              "no tuple makes user:bob owner of doc:1",
                              "doc:1 has no parent"]


def test_conditions_use_the_request_context(backend: FgaBackend) -> None:
    before = explain(backend, "user:frank", "guest", "doc:6",
                     context={"now": "2029-06-01T00:00:00Z"})
    assert before.allowed
    assert before.path_texts() == ["user:frank → guest of doc:6 (condition before holds)"]
    after = explain(backend, "user:frank", "guest", "doc:6",
                    context={"now": "2031-06-01T00:00:00Z"})
    assert not after.allowed
    assert any("condition before does not hold" in r for r in after.reasons)


def test_unknown_type_or_relation_is_an_fga_error(backend: FgaBackend) -> None:
    with pytest.raises(FgaError) as exc:
        explain(backend, "user:alice", "viewer", "planet:x")
    assert exc.value.code == 2021
    with pytest.raises(FgaError) as exc:
        explain(backend, "user:alice", "fly", "doc:1")
    assert exc.value.code == 2022


def test_the_tree_records_each_branch(backend: FgaBackend) -> None:
    tree = explain(backend, "user:alice", "viewer", "doc:1").tree
    assert tree.label == "viewer on doc:1" and tree.allowed
    (rewrite,) = tree.children
    assert rewrite.label == "base but not subtract"
    assert [c.label for c in rewrite.children] == ["any of", "but not"]


def test_huge_usersets_are_bounded_and_say_so() -> None:
    store = EmbeddedBackend(Engine(MODEL))
    store.write(writes=[TupleKey(f"team:t{i}#member", "editor", "doc:big")
                        for i in range(MAX_TUPLES_PER_READ + 50)])
    result = explain(store, "user:nobody", "editor", "doc:big")
    assert not result.allowed
    assert f"only the first {MAX_TUPLES_PER_READ} were examined" in result.note
