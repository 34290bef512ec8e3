"""Tuple browsing for the admin console on every backend: filters become backend reads, pages
are exact, cursors resume without gaps or repeats, bad input is refused clearly."""

from __future__ import annotations

import pytest

from espomcp.admin.tuples_query import (
    InputError,
    TupleFilter,
    check_object,
    check_user,
    read_page,
    safe_read_page,
)
from espomcp.fga.backend import FgaBackend
from espomcp.fga.tuples import TupleKey


def all_pages(backend: FgaBackend, flt: TupleFilter, size: int) -> list[list[TupleKey]]:
    pages, cursor = [], ""
    while True:
        rows, cursor = safe_read_page(backend, flt, size, cursor)
        pages.append(rows)
        if not cursor:
            return pages
        assert len(pages) < 100


@pytest.fixture
def store(fga_backend: FgaBackend) -> FgaBackend:
    fga_backend.write(writes=[TupleKey("user:alice", "collaborator", f"contact:c{i:03d}")
                              for i in range(45)])
    fga_backend.write(writes=[TupleKey("user:alice", "owner", f"account:a{i:02d}")
                              for i in range(12)])
    fga_backend.write(writes=[TupleKey("user:bob", "assignee", f"account:b{i:02d}")
                              for i in range(7)])
    fga_backend.write(writes=[TupleKey("user:alice", "member", "team:sales"),
                              TupleKey("user:bob", "manager", "team:sales"),
                              TupleKey("team:sales", "team", "lead:l1"),
                              TupleKey("team:support", "team", "lead:l2")])
    return fga_backend


def test_user_filter_spans_types_in_exact_pages(store: FgaBackend) -> None:
    pages = all_pages(store, TupleFilter(user="user:alice"), 10)
    rows = [k for page in pages for k in page]
    assert [len(p) for p in pages[:-1]] == [10] * (len(pages) - 1)
    assert len(rows) == 45 + 12 + 1 == len({(k.relation, k.object) for k in rows})
    assert {k.user for k in rows} == {"user:alice"}


def test_type_without_user_is_scanned_in_exact_pages(store: FgaBackend) -> None:
    pages = all_pages(store, TupleFilter(object_type="account"), 5)
    rows = [k for page in pages for k in page]
    assert [len(p) for p in pages] == [5, 5, 5, 4]
    assert len({k.object for k in rows}) == 19
    relation_only = [k for p in all_pages(store, TupleFilter(relation="assignee"), 3) for k in p]
    assert {k.object for k in relation_only} == {f"account:b{i:02d}" for i in range(7)}


def test_object_and_relation_filters(store: FgaBackend) -> None:
    (rows,) = all_pages(store, TupleFilter(object_type="team", object_id="sales"), 50)
    assert {(k.user, k.relation) for k in rows} == {("user:alice", "member"),
                                                    ("user:bob", "manager")}
    (rows,) = all_pages(store, TupleFilter(user="user:alice", object_type="account",
                                           relation="owner"), 50)
    assert len(rows) == 12


def test_team_filter_shows_members_and_records(store: FgaBackend) -> None:
    rows = [k for p in all_pages(store, TupleFilter(team="sales"), 50) for k in p]
    assert {(k.user, k.relation, k.object) for k in rows} == {
        ("user:alice", "member", "team:sales"), ("user:bob", "manager", "team:sales"),
        ("team:sales", "team", "lead:l1")}


def test_stale_or_forged_cursors_are_refused(store: FgaBackend) -> None:
    with pytest.raises(InputError):
        read_page(store, [{"user": None, "relation": None, "object": None}], 10, "9.x")
    with pytest.raises(InputError):
        read_page(store, [{"user": None, "relation": None, "object": None}], 10, "abc")


@pytest.mark.parametrize("value", ["", "alice", "user:", "user:a b", "user:a#", "a" * 600])
def test_malformed_users_are_refused(value: str) -> None:
    with pytest.raises(InputError):
        check_user(value)


@pytest.mark.parametrize("value", ["contact", "contact:", ":x", "contact:a#b", "contact:*"])
def test_malformed_objects_are_refused(value: str) -> None:
    with pytest.raises(InputError):
        check_object(value)
