"""The embedded OpenFGA-compatible engine: one authorization model over one tuple store.

``Engine(model, store=None)`` evaluates Check, BatchCheck, ListObjects, ListUsers and Expand with
OpenFGA's semantics (openfga.md §2 to §6) and applies writes with OpenFGA's rules (§5). The model is
compiled once per ``set_model`` (``TypeSystem`` + ``ConditionEvaluator``); tuples live in the
store's index (``store.MemoryStore`` in memory, ``store_sqlite.SqliteStore`` persisted and shared
between processes). Every public call holds the store's lock, so one engine (or several engines
sharing a store) is safe under threaded servers. Errors are ``FgaError`` with OpenFGA codes.

OpenFGA's limits apply: resolution depth 25 for Check, ListObjects and ListUsers (FgaError 2002,
"authorization model resolution too complex"); ListObjects returns at most 1000 objects; both
list calls have a deadline (default 3 s, like ``listObjectsDeadline``/``listUsersDeadline``)
after which they return the results confirmed so far instead of failing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from espomcp.fga.check import Checker
from espomcp.fga.conditions import ConditionEvaluator
from espomcp.fga.errors import EXCEEDED_ENTITY_LIMIT, INVALID_TUPLE, VALIDATION_ERROR, FgaError
from espomcp.fga.expand import expand as expand_tree
from espomcp.fga.list_objects import ObjectLister
from espomcp.fga.list_users import UserLister
from espomcp.fga.store import Index, MemoryStore, StoredTuple, TupleStore
from espomcp.fga.store_sqlite import SqliteStore
from espomcp.fga.tuples import TupleKey, parse_object, parse_user
from espomcp.fga.typesystem import TypeSystem
from espomcp.fga.validation import validate_model

MAX_TUPLES_PER_WRITE = 100
MAX_CONTEXTUAL_TUPLES = 100
MAX_BATCH_CHECK = 50
MAX_LIST_OBJECTS = 1000
LIST_DEADLINE_SECONDS = 3.0  # OpenFGA's listObjectsDeadline and listUsersDeadline defaults
CORRELATION_ID_RE = re.compile(r"^[\w\d-]{1,36}$")


class _Compiled:
    """Everything derived from one model, swapped as a unit by ``set_model``."""

    __slots__ = ("checker", "model", "objects", "ts", "users")

    def __init__(self, model: dict[str, Any]) -> None:
        validate_model(model)
        self.model = model
        self.ts = TypeSystem(model)
        self.checker = Checker(self.ts, ConditionEvaluator(model.get("conditions")))
        self.objects = ObjectLister(self.ts, self.checker)
        self.users = UserLister(self.ts, self.checker)


def _deadline(value: Any) -> float | None:
    """A list deadline in seconds; None or 0 (OpenFGA's "no deadline") disables it."""
    if value is None or (type(value) in (int, float) and value == 0):
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"a list deadline must be a positive number of seconds or None, not {value!r}")
    return float(value)


def _context(context: Any) -> dict[str, Any] | None:
    if context is not None and not isinstance(context, dict):
        raise FgaError(VALIDATION_ERROR, "context must be an object")
    return context


class Engine:
    """OpenFGA evaluation over a tuple store (see module docstring for the contract).

    ``list_objects_deadline`` and ``list_users_deadline`` are seconds of evaluation per call
    (None or 0: no deadline); they can also be changed on the instance.
    """

    def __init__(self, model: dict[str, Any], store: TupleStore | None = None, *,
                 list_objects_deadline: float | None = LIST_DEADLINE_SECONDS,
                 list_users_deadline: float | None = LIST_DEADLINE_SECONDS) -> None:
        self._setup(_Compiled(model), store if store is not None else MemoryStore(),
                    list_objects_deadline, list_users_deadline)

    def _setup(self, compiled: _Compiled, store: TupleStore, list_objects_deadline: float | None,
               list_users_deadline: float | None) -> None:
        self._compiled = compiled
        self.store = store
        self._lock = store.lock
        self.list_objects_deadline = list_objects_deadline
        self.list_users_deadline = list_users_deadline

    @classmethod
    def open_sqlite(cls, path: str | Path, model: dict[str, Any], *,
                    list_objects_deadline: float | None = LIST_DEADLINE_SECONDS,
                    list_users_deadline: float | None = LIST_DEADLINE_SECONDS) -> Engine:
        """An engine over the SQLite store at ``path`` (created if missing; survives restarts)."""
        compiled = _Compiled(model)  # fail on a bad model before touching the file
        engine = cls.__new__(cls)
        engine._setup(compiled, SqliteStore(path), list_objects_deadline, list_users_deadline)
        return engine

    @property
    def list_objects_deadline(self) -> float | None:
        return self._list_objects_deadline

    @list_objects_deadline.setter
    def list_objects_deadline(self, value: float | None) -> None:
        self._list_objects_deadline = _deadline(value)

    @property
    def list_users_deadline(self) -> float | None:
        return self._list_users_deadline

    @list_users_deadline.setter
    def list_users_deadline(self, value: float | None) -> None:
        self._list_users_deadline = _deadline(value)

    @property
    def model(self) -> dict[str, Any]:
        return self._compiled.model

    def set_model(self, model: dict[str, Any]) -> None:
        """Replace the model (validated: FgaError 2056); stored tuples it no longer allows are ignored."""
        compiled = _Compiled(model)
        with self._lock:
            self._compiled = compiled

    def close(self) -> None:
        with self._lock:
            self.store.close()

    # -- queries -----------------------------------------------------------------------------

    def check(self, user: str, relation: str, object: str, *, context: dict[str, Any] | None = None,
              contextual_tuples: Iterable[Any] = ()) -> bool:
        """Whether ``user`` has ``relation`` on ``object``."""
        with self._lock:
            compiled = self._compiled
            compiled.ts.validate_request(user, relation, object)
            indexes = self._indexes(compiled, contextual_tuples)
            return compiled.checker.check(user, relation, object, indexes, _context(context))

    def batch_check(self, items: list[dict[str, Any]]) -> dict[str, bool | FgaError]:
        """Up to 50 checks, each ``{user, relation, object, correlation_id, context?,
        contextual_tuples?}``; per correlation id the answer or the item's FgaError."""
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_CHECK:
            raise FgaError(VALIDATION_ERROR, f"batch check needs 1 to {MAX_BATCH_CHECK} checks")
        ids = [item.get("correlation_id") if isinstance(item, dict) else None for item in items]
        for cid in ids:
            if not isinstance(cid, str) or not CORRELATION_ID_RE.match(cid):
                raise FgaError(VALIDATION_ERROR, f"invalid correlation_id {cid!r}")
        if len(set(ids)) != len(ids):
            raise FgaError(VALIDATION_ERROR, "correlation ids must be unique")
        out: dict[str, bool | FgaError] = {}
        for item in items:
            try:
                out[item["correlation_id"]] = self.check(
                    item.get("user", ""), item.get("relation", ""), item.get("object", ""),
                    context=item.get("context"), contextual_tuples=item.get("contextual_tuples") or ())
            except FgaError as exc:
                out[item["correlation_id"]] = exc
        return out

    def list_objects(self, user: str, relation: str, type: str, *, context: dict[str, Any] | None = None,
                     contextual_tuples: Iterable[Any] = (), limit: int = MAX_LIST_OBJECTS) -> list[str]:
        """Objects of ``type`` on which ``user`` has ``relation`` (deduplicated, unordered, ≤ limit).

        FgaError 2002 when an object lies 25 or more hops from the user; once
        ``list_objects_deadline`` passes, the objects confirmed so far (possibly none), no error.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise FgaError(VALIDATION_ERROR, "limit must be a positive integer")
        with self._lock:
            compiled = self._compiled
            compiled.ts.validate_request(user, relation, None, type)
            indexes = self._indexes(compiled, contextual_tuples)
            return compiled.objects.list_objects(user, relation, type, indexes, _context(context), limit,
                                                 self._list_objects_deadline)

    def list_users(self, object: str, relation: str, user_filters: Sequence[Any], *,
                   context: dict[str, Any] | None = None, contextual_tuples: Iterable[Any] = ()) -> list[str]:
        """Subjects matching ``user_filters`` (``(type, relation | None)`` pairs or ``{type, relation?}``)
        that have ``relation`` on ``object``: ``type:id``, ``type:*`` or ``type:id#relation``.

        FgaError 2002 when the expansion reaches 25 hops from ``object``; once
        ``list_users_deadline`` passes, the subjects confirmed so far (possibly none), no error.
        """
        with self._lock:
            compiled = self._compiled
            type_name, _ = parse_object(object)
            compiled.ts.relation(type_name, relation)
            filters = self._filters(compiled, user_filters)
            indexes = self._indexes(compiled, contextual_tuples)
            return compiled.users.list_users(object, relation, filters, indexes, _context(context),
                                             self._list_users_deadline)

    def expand(self, relation: str, object: str) -> dict[str, Any]:
        """One level of the userset tree: ``{"root": {"name": "object#relation", ...}}``."""
        with self._lock:
            compiled = self._compiled
            type_name, _ = parse_object(object)
            compiled.ts.relation(type_name, relation)
            return expand_tree(compiled.ts, [self.store.index()], relation, object)

    # -- tuples ------------------------------------------------------------------------------

    def write(self, writes: Iterable[Any] = (), deletes: Iterable[Any] = (), *, on_duplicate: str = "error",
              on_missing: str = "error") -> None:
        """Write and delete tuples atomically (all or nothing), at most 100 keys in total.

        Writes must match the model (2027); deletes only need well-formed keys, so tuples a newer
        model no longer allows can still be removed.
        """
        write_keys = [TupleKey.from_dict(item) for item in writes]
        delete_keys = [TupleKey.from_dict(item) for item in deletes]
        if len(write_keys) + len(delete_keys) > MAX_TUPLES_PER_WRITE:
            raise FgaError(EXCEEDED_ENTITY_LIMIT,
                           f"a write may hold at most {MAX_TUPLES_PER_WRITE} tuple keys")
        if not write_keys and not delete_keys:
            return
        with self._lock:
            ts = self._compiled.ts
            for tk in write_keys:
                ts.validate_tuple(tk)
            for tk in delete_keys:
                try:
                    parse_object(tk.object)
                    parse_user(tk.user)
                except FgaError as exc:
                    raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: {exc.message}") from None
            self.store.write(write_keys, [TupleKey(t.user, t.relation, t.object) for t in delete_keys],
                             on_duplicate=on_duplicate, on_missing=on_missing)

    def read(self, user: str | None = None, relation: str | None = None, object: str | None = None, *,
             page_size: int = 50,
             continuation_token: str | None = None) -> tuple[list[tuple[TupleKey, str]], str]:
        """Stored tuples matching the filter (object ``type:id``, or ``type:`` with a user), in write
        order, with their write timestamps; the token is "" after the last page."""
        with self._lock:
            return self.store.index().read(user, relation, object, page_size, continuation_token)

    def read_changes(self, type: str | None = None, *, page_size: int = 50,
                     continuation_token: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Change-log entries ``{tuple_key, operation, timestamp}`` after the token, oldest first;
        the returned token resumes after this page (it stays usable for polling at the end)."""
        with self._lock:
            return self.store.read_changes(type, page_size, continuation_token)

    def tuple_count(self) -> int:
        with self._lock:
            return len(self.store.index())

    # -- helpers -----------------------------------------------------------------------------

    def _indexes(self, compiled: _Compiled, contextual_tuples: Iterable[Any]) -> list[Index]:
        """The stored index, plus an index of the request's contextual tuples (validated like writes)."""
        stored = self.store.index()
        keys = [TupleKey.from_dict(item) for item in contextual_tuples or ()]
        if not keys:
            return [stored]
        if len(keys) > MAX_CONTEXTUAL_TUPLES:
            raise FgaError(VALIDATION_ERROR, f"at most {MAX_CONTEXTUAL_TUPLES} contextual tuples")
        for tk in keys:
            compiled.ts.validate_tuple(tk)
        return [stored, Index(StoredTuple.from_key(tk) for tk in keys)]

    @staticmethod
    def _filters(compiled: _Compiled, user_filters: Sequence[Any]) -> list[tuple[str, str | None]]:
        if not user_filters:
            raise FgaError(VALIDATION_ERROR, "list_users needs at least one user filter")
        out: list[tuple[str, str | None]] = []
        for item in user_filters:
            if isinstance(item, dict):
                kind, rel = item.get("type"), item.get("relation") or None
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                kind, rel = item[0], item[1] or None
            else:
                raise FgaError(VALIDATION_ERROR, f"invalid user filter {item!r}")
            if not isinstance(kind, str) or not kind:
                raise FgaError(VALIDATION_ERROR, f"invalid user filter {item!r}")
            if rel is None:
                compiled.ts.relation_type(kind)
            else:
                compiled.ts.relation(kind, rel)
            out.append((kind, rel))
        return out
