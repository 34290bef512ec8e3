"""Test doubles for the sync tests: an in-memory FGA backend that can be taken down."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from espomcp.fga.errors import INVALID_TUPLE, FgaError, FgaUnavailable
from espomcp.fga.tuples import TupleKey


class MemoryBackend:
    """FgaBackend double: a set of tuples; ``down`` makes every call raise FgaUnavailable;
    relation ``bogus`` is rejected like a tuple the model forbids; ``calls`` logs writes."""

    name = "memory"
    enforcing = True

    def __init__(self, tuples: Iterable[TupleKey] = ()) -> None:
        self.tuples: set[TupleKey] = set(tuples)
        self.down = False
        self.calls: list[tuple[list[TupleKey], list[TupleKey]]] = []

    def _guard(self) -> None:
        if self.down:
            raise FgaUnavailable("memory backend is down")

    def write(self, writes: Iterable[TupleKey] = (), deletes: Iterable[TupleKey] = ()) -> None:
        self._guard()
        writes, deletes = list(writes), list(deletes)
        assert len(writes) + len(deletes) <= 100, "more than 100 keys in one write"
        for key in writes + deletes:
            if key.relation == "bogus":
                raise FgaError(INVALID_TUPLE, f"invalid tuple {key}")
        self.calls.append((writes, deletes))
        self.tuples |= set(writes)
        self.tuples -= set(deletes)

    def read(self, user: str | None = None, relation: str | None = None,
             object: str | None = None, page_size: int = 100,
             continuation_token: str | None = None) -> tuple[list[TupleKey], str]:
        self._guard()

        def match(key: TupleKey) -> bool:
            if (user and key.user != user) or (relation and key.relation != relation):
                return False
            if object:
                return key.object.startswith(object) if object.endswith(":") else key.object == object
            return True

        rows = sorted((k for k in self.tuples if match(k)), key=lambda k: k.key)
        start = int(continuation_token or 0)
        page = rows[start:start + page_size]
        end = start + len(page)
        return page, (str(end) if end < len(rows) else "")

    def model(self) -> dict[str, Any]:
        return {"schema_version": "1.1", "type_definitions": []}

    def health(self) -> tuple[bool, str]:
        return (not self.down), ("down" if self.down else "memory backend")
