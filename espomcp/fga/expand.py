"""Expand: one level of the userset tree of ``(relation, object)`` in OpenFGA's JSON shape.

Leaves are ``users`` (the direct tuples' users, valid for the current restrictions; conditions are
not evaluated), ``computed`` (a userset on the same object) and ``tupleToUserset`` (the tupleset
and the usersets it points to); inner nodes are ``union`` / ``intersection`` (``nodes``) and
``difference`` (``base``, ``subtract``). Every node is named ``object#relation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from espomcp.fga.store import Index
from espomcp.fga.typesystem import (
    COMPUTED,
    EXCLUSION,
    INTERSECTION,
    THIS,
    TTU,
    RelationDef,
    Rewrite,
    TypeSystem,
)


def expand(ts: TypeSystem, indexes: Sequence[Index], relation: str, obj: str) -> dict[str, Any]:
    """The tree ``{"root": node}`` for a validated ``(relation, object)``."""
    rdef = ts.relations[obj.partition(":")[0]][relation]
    return {"root": _node(ts, indexes, rdef, rdef.rewrite, obj)}


def _users(indexes: Sequence[Index], rdef: RelationDef, obj: str, relation: str) -> list[str]:
    items = [item for index in indexes for item in index.by_object.get((obj, relation), {}).values()
             if (item.form, item.condition) in rdef.allowed]
    out: list[str] = []
    for item in sorted(items, key=lambda t: t.seq):
        if item.user not in out:
            out.append(item.user)
    return out


def _node(ts: TypeSystem, indexes: Sequence[Index], rdef: RelationDef, node: Rewrite,
          obj: str) -> dict[str, Any]:
    name = f"{obj}#{rdef.name}"
    if node.kind == THIS:
        return {"name": name, "leaf": {"users": {"users": _users(indexes, rdef, obj, rdef.name)}}}
    if node.kind == COMPUTED:
        return {"name": name, "leaf": {"computed": {"userset": f"{obj}#{node.relation}"}}}
    if node.kind == TTU:
        tupleset = ts.relations[rdef.type][node.tupleset]
        parents = [p for p in _users(indexes, tupleset, obj, node.tupleset)
                   if ts.has_relation(p.partition(":")[0], node.relation)]
        return {"name": name, "leaf": {"tupleToUserset": {
            "tupleset": f"{obj}#{node.tupleset}",
            "computed": [{"userset": f"{parent}#{node.relation}"} for parent in parents]}}}
    if node.kind == EXCLUSION:
        assert node.base is not None and node.subtract is not None
        return {"name": name, "difference": {"base": _node(ts, indexes, rdef, node.base, obj),
                                             "subtract": _node(ts, indexes, rdef, node.subtract, obj)}}
    key = "intersection" if node.kind == INTERSECTION else "union"
    return {"name": name, key: {"nodes": [_node(ts, indexes, rdef, child, obj) for child in node.children]}}
