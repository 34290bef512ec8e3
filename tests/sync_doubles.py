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


class DictClient:
    """EspoClient double over ``records[entity_type] -> [record]`` (oldest first) and
    ``members[team_id] -> [user rows with teamRole]``. ``fail_at`` = number of records after
    which iteration raises Unavailable (once), to simulate an interrupted backfill."""

    def __init__(self, records: dict[str, list[dict]], members: dict[str, list[dict]] | None = None,
                 fail_at: int | None = None) -> None:
        self.records = records
        self.members = members or {}
        self.fail_at = fail_at
        self.served = 0
        self.offsets: list[tuple[str, int]] = []

    def iter_records(self, entity_type: str, *, page_size: int = 200, offset: int = 0,
                     **filters: Any) -> Any:
        from espomcp.espocrm.errors import Unavailable

        self.offsets.append((entity_type, offset))
        for record in self.records.get(entity_type, [])[offset:]:
            if self.fail_at is not None and self.served >= self.fail_at:
                self.fail_at = None
                raise Unavailable("EspoCRM is unavailable (simulated)")
            self.served += 1
            yield dict(record)

    def list_records(self, entity_type: str, **filters: Any) -> Any:
        from espomcp.espocrm.client import ListPage

        rows = self.records.get(entity_type, [])
        return ListPage(len(rows), [dict(r) for r in rows[:filters.get("max_size", 20)]])

    def list_related(self, entity_type: str, record_id: str, link: str, *, offset: int = 0,
                     max_size: int = 20, **filters: Any) -> Any:
        from espomcp.espocrm.client import ListPage

        rows = self.members.get(record_id, []) if (entity_type, link) == ("Team", "users") else []
        return ListPage(len(rows), [dict(r) for r in rows[offset:offset + max_size]])

    def get_record(self, entity_type: str, record_id: str, select: Any = None) -> dict:
        from espomcp.espocrm.errors import NotFound

        for record in self.records.get(entity_type, []):
            if record["id"] == record_id:
                return dict(record)
        raise NotFound("Record not found.")
