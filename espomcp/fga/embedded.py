"""The default FGA backend: the in-process OpenFGA-compatible engine over a SQLite store."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from espomcp.fga.backend import (
    BATCH_CHECK_CHUNK,
    BrokenBackend,
    FgaBackend,
    TupleLike,
    load_model,
    unique_keys,
    write_chunks,
)
from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError, FgaUnavailable
from espomcp.fga.tuples import TupleKey

if TYPE_CHECKING:
    from espomcp.settings import Settings

log = logging.getLogger("espomcp.fga")
T = TypeVar("T")


class EmbeddedBackend:
    """FgaBackend over an :class:`Engine`; FgaError passes through, storage errors become
    FgaUnavailable."""

    name = "embedded"
    enforcing = True

    def __init__(self, engine: Engine, *, location: str = "memory") -> None:
        self.engine = engine
        self.location = location

    @classmethod
    def from_settings(cls, settings: Settings) -> FgaBackend:
        """Open ``settings.store_path`` with the configured model; a broken backend when the
        model or the store cannot be opened."""
        path = settings.store_path
        try:
            model = load_model(settings.fga_model_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = Engine.open_sqlite(path, model)
        except FgaError as exc:
            return BrokenBackend("embedded", f"embedded FGA model invalid: {exc.message}")
        except (OSError, sqlite3.Error) as exc:
            return BrokenBackend("embedded", f"embedded FGA store {path} cannot be opened: {exc}")
        return cls(engine, location=str(path))

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except FgaError:
            raise
        except (OSError, sqlite3.Error) as exc:
            log.error("embedded FGA store failed: %s", exc)
            raise FgaUnavailable(f"embedded FGA store failed: {exc}") from exc

    def check(self, user: str, relation: str, object: str,
              context: dict[str, Any] | None = None) -> bool:
        return self._call(lambda: self.engine.check(user, relation, object, context=context))

    def batch_check(self, checks: list[tuple[str, str, str]]) -> list[bool]:
        items = [{"user": u, "relation": r, "object": o, "correlation_id": str(i)}
                 for i, (u, r, o) in enumerate(checks)]
        results: dict[str, bool | FgaError] = {}
        for start in range(0, len(items), BATCH_CHECK_CHUNK):
            chunk = items[start:start + BATCH_CHECK_CHUNK]
            results.update(self._call(lambda c=chunk: self.engine.batch_check(c)))
        answers = []
        for i, (u, r, o) in enumerate(checks):
            result = results.get(str(i))
            if isinstance(result, FgaError) or result is None:
                log.warning("batch check item denied on error: %s %s %s: %s", u, r, o, result)
                answers.append(False)
            else:
                answers.append(bool(result))
        return answers

    def list_objects(self, user: str, relation: str, type: str) -> list[str]:
        return self._call(lambda: self.engine.list_objects(user, relation, type))

    def list_users(self, object: str, relation: str,
                   user_filters: list[tuple[str, str | None]]) -> list[str]:
        return self._call(lambda: self.engine.list_users(object, relation, list(user_filters)))

    def write(self, writes: Iterable[TupleLike] = (), deletes: Iterable[TupleLike] = ()) -> None:
        for chunk_writes, chunk_deletes in write_chunks(unique_keys(writes), unique_keys(deletes)):
            self._call(lambda w=chunk_writes, d=chunk_deletes: self.engine.write(
                w, d, on_duplicate="ignore", on_missing="ignore"))

    def read(self, user: str | None = None, relation: str | None = None,
             object: str | None = None, page_size: int = 100,
             continuation_token: str | None = None) -> tuple[list[TupleKey], str]:
        rows, token = self._call(lambda: self.engine.read(
            user, relation, object, page_size=page_size, continuation_token=continuation_token))
        return [key for key, _ in rows], token

    def expand(self, relation: str, object: str) -> dict[str, Any]:
        return self._call(lambda: self.engine.expand(relation, object))

    def model(self) -> dict[str, Any]:
        return self.engine.model

    def health(self) -> tuple[bool, str]:
        try:
            count = self._call(self.engine.tuple_count)
        except (FgaError, FgaUnavailable) as exc:
            return False, str(exc)
        return True, f"embedded FGA store ({self.location}), {count} tuples"
