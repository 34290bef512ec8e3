"""What the tools need from the authorization model, checked before the server starts.

Each tool declares the FGA permissions it checks (``Tool.relations``) on the entity types its
``entity_type`` argument accepts (tools without one act on any allowed type). The model must
define each of them, plus ``organization#admin`` (admins skip search filtering) and
``team#can_assign`` (who may assign records to others).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from espomcp.mcp.registry import Tool

EXTRA = (("organization", "admin"), ("team", "can_assign"))


def needed_relations(tools: Iterable[Tool], entity_types: Iterable[str]) -> list[tuple[str, str]]:
    """(fga type, relation) pairs the registered tools use, in a stable order."""
    allowed = list(entity_types)
    needed: dict[tuple[str, str], None] = {}
    for tool in tools:
        for entity_type in tool.entity_types() or allowed:
            for relation in tool.relations:
                needed[(entity_type.lower(), relation)] = None
    for pair in EXTRA:
        needed[pair] = None
    return list(needed)


def missing_relations(model: dict[str, Any], tools: Iterable[Tool],
                      entity_types: Iterable[str]) -> list[str]:
    """``type#relation`` strings the model lacks (empty = the model serves every tool)."""
    defined = {
        (td.get("type"), rel)
        for td in model.get("type_definitions") or []
        for rel in (td.get("relations") or {})
    }
    return [f"{t}#{r}" for t, r in needed_relations(tools, entity_types) if (t, r) not in defined]
