"""Tuple stores: the in-memory index every evaluator reads, and the in-memory ``MemoryStore``.

``Index`` keeps each tuple once plus three dict indexes:
``by_object[(object, relation)] -> {user: tuple}`` (Check, Expand, ListUsers),
``usersets[(object, relation)] -> {userset user: tuple}`` (the ``type:id#rel`` subset) and
``by_user[(user, relation, object type)]`` / ``by_user_cond[...] -> {object: tuple}`` (reverse
expansion for ListObjects; conditioned tuples apart so unconditioned groups merge at C speed).
A store (``MemoryStore`` here, ``store_sqlite.SqliteStore`` for persistence) owns one index and
applies validated writes atomically; the caller (the engine) serialises access with its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from espomcp.fga.errors import (
    CANNOT_ALLOW_DUPLICATE_TUPLES_IN_ONE_REQUEST,
    VALIDATION_ERROR,
    WRITE_FAILED_DUE_TO_INVALID_INPUT,
    FgaError,
)
from espomcp.fga.tuples import Condition, TupleKey, user_form

WRITE, DELETE = "TUPLE_OPERATION_WRITE", "TUPLE_OPERATION_DELETE"
MAX_PAGE_SIZE = 100


def now_rfc3339() -> str:
    """The current UTC time as an RFC 3339 timestamp with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StoredTuple:
    """A tuple as kept in an index: key fields, condition, change sequence number, write time."""

    __slots__ = ("condition", "context", "form", "object", "relation", "seq", "timestamp", "user")

    def __init__(self, obj: str, relation: str, user: str, condition: str | None,
                 context: dict[str, Any] | None, seq: int, timestamp: str) -> None:
        self.object = obj
        self.relation = relation
        self.user = user
        self.form = user_form(user)
        self.condition = condition
        self.context = context
        self.seq = seq
        self.timestamp = timestamp

    @classmethod
    def from_key(cls, tk: TupleKey, seq: int = 0, timestamp: str = "") -> StoredTuple:
        cond = tk.condition
        return cls(tk.object, tk.relation, tk.user, cond.name if cond else None,
                   cond.context if cond else None, seq, timestamp)

    def tuple_key(self) -> TupleKey:
        cond = Condition(self.condition, self.context) if self.condition else None
        return TupleKey(self.user, self.relation, self.object, cond)


def _add(index: dict, key: Any, sub: str, item: StoredTuple) -> None:
    group = index.get(key)
    if group is None:
        index[key] = {sub: item}
    else:
        group[sub] = item


def _drop(index: dict, key: Any, sub: str) -> None:
    group = index.get(key)
    if group is not None:
        group.pop(sub, None)
        if not group:
            del index[key]


def _decrement(counts: dict, outer: str, inner: Any) -> None:
    group = counts[outer]
    group[inner] -= 1
    if not group[inner]:
        del group[inner]
        if not group:
            del counts[outer]


class Index:
    """Indexed tuples (see module docstring). Not thread-safe by itself."""

    def __init__(self, items: Iterable[StoredTuple] = ()) -> None:
        self.tuples: dict[tuple[str, str, str], StoredTuple] = {}
        self.by_object: dict[tuple[str, str], dict[str, StoredTuple]] = {}
        self.usersets: dict[tuple[str, str], dict[str, StoredTuple]] = {}
        self.by_user: dict[tuple[str, str, str], dict[str, StoredTuple]] = {}
        self.by_user_cond: dict[tuple[str, str, str], dict[str, StoredTuple]] = {}
        self.object_relations: dict[str, dict[str, int]] = {}
        self.user_relations: dict[str, dict[tuple[str, str], int]] = {}  # user -> (relation, type) -> n
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return len(self.tuples)

    def get(self, obj: str, relation: str, user: str) -> StoredTuple | None:
        group = self.by_object.get((obj, relation))
        return group.get(user) if group else None

    def add(self, item: StoredTuple) -> None:
        """Insert or replace the tuple with the same (object, relation, user)."""
        obj, rel, user = item.object, item.relation, item.user
        if (obj, rel, user) in self.tuples:
            self.remove(obj, rel, user)
        self.tuples[(obj, rel, user)] = item
        _add(self.by_object, (obj, rel), user, item)
        if "#" in user:
            _add(self.usersets, (obj, rel), user, item)
        key = (user, rel, obj.partition(":")[0])
        _add(self.by_user_cond if item.condition else self.by_user, key, obj, item)
        counts = self.object_relations.setdefault(obj, {})
        counts[rel] = counts.get(rel, 0) + 1
        by_type = self.user_relations.setdefault(user, {})
        by_type[key[1:]] = by_type.get(key[1:], 0) + 1

    def remove(self, obj: str, relation: str, user: str) -> StoredTuple | None:
        item = self.tuples.pop((obj, relation, user), None)
        if item is None:
            return None
        _drop(self.by_object, (obj, relation), user)
        _drop(self.usersets, (obj, relation), user)
        key = (user, relation, obj.partition(":")[0])
        _drop(self.by_user_cond if item.condition else self.by_user, key, obj)
        _decrement(self.object_relations, obj, relation)
        _decrement(self.user_relations, user, key[1:])
        return item

    # -- write planning ----------------------------------------------------------------------

    def plan_write(self, writes: Sequence[TupleKey], deletes: Sequence[TupleKey], on_duplicate: str,
                   on_missing: str) -> tuple[list[TupleKey], list[TupleKey]]:
        """Apply OpenFGA's write rules against the current state; returns the effective changes.

        Duplicates inside one request → 2004; writing an existing tuple or deleting a missing one
        → 2017 unless ``on_duplicate`` / ``on_missing`` is ``"ignore"`` (then it is skipped).
        """
        for name, value in (("on_duplicate", on_duplicate), ("on_missing", on_missing)):
            if value not in ("error", "ignore"):
                raise FgaError(VALIDATION_ERROR, f"{name} must be 'error' or 'ignore'")
        seen: set[tuple[str, str, str]] = set()
        for tk in (*writes, *deletes):
            if tk.key in seen:
                raise FgaError(CANNOT_ALLOW_DUPLICATE_TUPLES_IN_ONE_REQUEST,
                               f"duplicate tuple in one write request: {tk}")
            seen.add(tk.key)
        add = []
        for tk in writes:
            if tk.key not in self.tuples:
                add.append(tk)
            elif on_duplicate == "error":
                raise FgaError(WRITE_FAILED_DUE_TO_INVALID_INPUT,
                               f"cannot write a tuple which already exists: {tk}")
        remove = []
        for tk in deletes:
            if tk.key in self.tuples:
                remove.append(tk)
            elif on_missing == "error":
                raise FgaError(WRITE_FAILED_DUE_TO_INVALID_INPUT,
                               f"cannot delete a tuple which does not exist: {tk}")
        return add, remove

    # -- read ------------------------------------------------------------------------------

    def read(self, user: str | None, relation: str | None, obj: str | None, page_size: int,
             continuation_token: str | None) -> tuple[list[tuple[TupleKey, str]], str]:
        """Tuples matching the filter, in write order, one page at a time."""
        after = parse_token(continuation_token)
        check_page_size(page_size)
        candidates: Iterable[StoredTuple]
        if not obj:
            if user or relation:
                raise FgaError(VALIDATION_ERROR, "reading by user or relation needs an object type")
            candidates = self.tuples.values()
        else:
            kind, _, ident = obj.partition(":")
            if not kind or ":" not in obj:
                raise FgaError(VALIDATION_ERROR, f"invalid object filter {obj!r}")
            if ident:
                rels = [relation] if relation else list(self.object_relations.get(obj, ()))
                candidates = [t for r in rels for t in self.by_object.get((obj, r), {}).values()]
            elif not user:
                raise FgaError(VALIDATION_ERROR, "reading by object type needs a user")
            else:
                candidates = [t for r, k in self.user_relations.get(user, ())
                              if k == kind and (not relation or r == relation)
                              for index in (self.by_user, self.by_user_cond)
                              for t in index.get((user, r, k), {}).values()]
            if user:
                candidates = [t for t in candidates if t.user == user]
            candidates = sorted(candidates, key=lambda t: t.seq)
        page: list[tuple[TupleKey, str]] = []
        last = 0
        for item in candidates:
            if item.seq <= after:
                continue
            if len(page) == page_size:
                return page, str(last)
            page.append((item.tuple_key(), item.timestamp))
            last = item.seq
        return page, ""


def parse_token(token: str | None) -> int:
    """A continuation token is the last sequence number seen ("" or None = from the start)."""
    if not token:
        return 0
    if not isinstance(token, str) or not token.isdigit():
        raise FgaError(VALIDATION_ERROR, "invalid continuation token")
    return int(token)


def check_page_size(page_size: int) -> None:
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise FgaError(VALIDATION_ERROR, f"page_size must be between 1 and {MAX_PAGE_SIZE}")


def change_entry(tk: TupleKey, operation: str, timestamp: str) -> dict[str, Any]:
    """One ReadChanges entry in the REST shape."""
    return {"tuple_key": tk.to_dict(), "operation": operation, "timestamp": timestamp}


class TupleStore(Protocol):
    """What the engine needs from a store. Callers hold ``lock`` (re-entrant) around every call."""

    lock: threading.RLock

    def index(self) -> Index:
        """The current index (a persistent store first catches up with other processes)."""

    def write(self, writes: Sequence[TupleKey], deletes: Sequence[TupleKey], *,
              on_duplicate: str = "error", on_missing: str = "error") -> None:
        """Apply validated tuples atomically (all or nothing)."""

    def read_changes(self, type_name: str | None, page_size: int,
                     continuation_token: str | None) -> tuple[list[dict[str, Any]], str]:
        """The change log after ``continuation_token``; the token returned resumes after the page."""

    def close(self) -> None:
        """Release resources."""


class MemoryStore:
    """A process-local store: an index plus an in-memory change log."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._index = Index()
        self._changes: list[tuple[int, TupleKey, str, str]] = []
        self._seq = 0

    def index(self) -> Index:
        return self._index

    def write(self, writes: Sequence[TupleKey], deletes: Sequence[TupleKey], *,
              on_duplicate: str = "error", on_missing: str = "error") -> None:
        add, remove = self._index.plan_write(writes, deletes, on_duplicate, on_missing)
        stamp = now_rfc3339()
        for tk in remove:
            self._seq += 1
            self._index.remove(*tk.key)
            self._changes.append((self._seq, tk, DELETE, stamp))
        for tk in add:
            self._seq += 1
            self._index.add(StoredTuple.from_key(tk, self._seq, stamp))
            self._changes.append((self._seq, tk, WRITE, stamp))

    def read_changes(self, type_name: str | None, page_size: int,
                     continuation_token: str | None) -> tuple[list[dict[str, Any]], str]:
        after = parse_token(continuation_token)
        check_page_size(page_size)
        out: list[dict[str, Any]] = []
        last = after
        for seq, tk, operation, stamp in self._changes:
            if seq <= after or (type_name and tk.object.partition(":")[0] != type_name):
                continue
            out.append(change_entry(tk, operation, stamp))
            last = seq
            if len(out) == page_size:
                break
        return out, str(last) if last else ""

    def close(self) -> None:
        """Nothing to release."""
