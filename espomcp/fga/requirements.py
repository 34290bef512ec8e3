"""What the tools need from the authorization model, checked before the server starts.

Every allowed entity type's FGA type must define the permissions the tools check
(``can_read`` for all, plus ``can_write``/``can_delete``/``can_assign`` for writable types),
and ``organization#admin`` must exist (admins skip search filtering).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from espomcp.settings import READ_ONLY_ENTITY_TYPES

READ_RELATIONS = ("can_read",)
WRITE_RELATIONS = ("can_read", "can_write", "can_delete", "can_assign")
EXTRA = (("organization", "admin"), ("team", "can_assign"), ("note", "can_read"))


def needed_relations(entity_types: Iterable[str]) -> list[tuple[str, str]]:
    """(fga type, relation) pairs the tools use for ``entity_types``."""
    needed: list[tuple[str, str]] = []
    for entity_type in entity_types:
        relations = READ_RELATIONS if entity_type in READ_ONLY_ENTITY_TYPES else WRITE_RELATIONS
        needed += [(entity_type.lower(), r) for r in relations]
    return needed + list(EXTRA)


def missing_relations(model: dict[str, Any], entity_types: Iterable[str]) -> list[str]:
    """``type#relation`` strings the model lacks (empty = the model serves every tool)."""
    defined = {
        (td.get("type"), rel)
        for td in model.get("type_definitions") or []
        for rel in (td.get("relations") or {})
    }
    return [f"{t}#{r}" for t, r in needed_relations(entity_types) if (t, r) not in defined]
