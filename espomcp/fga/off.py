"""Scope-only mode (``ESPOMCP_FGA_BACKEND=off``): no record-level authorization at all.

Every decision allows, writes are dropped, lists use OpenFGA's typed wildcard ``type:*``
("every object of the type"). ``build_backend`` logs a loud WARNING when it selects this, and
``health()`` says so on /readyz. Callers that filter lists should test ``enforcing`` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from espomcp.fga.backend import TupleLike
from espomcp.fga.tuples import TupleKey

DETAIL = "FGA disabled (scope-only)"


class OffBackend:
    """An FgaBackend that allows everything; only OAuth scopes restrict access."""

    name = "off"
    enforcing = False

    def __init__(self, model: dict[str, Any]) -> None:
        self._model = model

    def check(self, user: str, relation: str, object: str,
              context: dict[str, Any] | None = None) -> bool:
        return True

    def batch_check(self, checks: list[tuple[str, str, str]]) -> list[bool]:
        return [True] * len(checks)

    def list_objects(self, user: str, relation: str, type: str) -> list[str]:
        return [f"{type}:*"]

    def list_users(self, object: str, relation: str,
                   user_filters: list[tuple[str, str | None]]) -> list[str]:
        return [f"{type_}:*" for type_, rel in user_filters if rel is None]

    def write(self, writes: Iterable[TupleLike] = (), deletes: Iterable[TupleLike] = ()) -> None:
        return None

    def read(self, user: str | None = None, relation: str | None = None,
             object: str | None = None, page_size: int = 100,
             continuation_token: str | None = None) -> tuple[list[TupleKey], str]:
        return [], ""

    def expand(self, relation: str, object: str) -> dict[str, Any]:
        return {"root": {"name": f"{object}#{relation}", "leaf": {"users": {"users": ["user:*"]}}}}

    def model(self) -> dict[str, Any]:
        return self._model

    def health(self) -> tuple[bool, str]:
        return True, DETAIL
