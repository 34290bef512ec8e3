"""The authenticated caller as every layer after authentication sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, its scopes and selected claims (never the token)."""

    sub: str
    scopes: frozenset[str] = frozenset()
    email: str | None = None
    client_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def has_scopes(self, needed: frozenset[str] | set[str]) -> bool:
        return needed <= self.scopes

    def missing_scopes(self, needed: frozenset[str] | set[str]) -> frozenset[str]:
        return frozenset(needed) - self.scopes
