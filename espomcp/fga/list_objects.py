"""ListObjects by reverse expansion (openfga.md §6; OpenFGA reverseexpand).

For a fixed query user, ``objects(type, relation)`` is computed bottom-up as a set of object ids:
direct tuples come from the ``by_user`` index (the user itself, its type's wildcard, and every
userset it belongs to, found recursively), computed usersets and tuple-to-usersets reuse the sets
of the relations they point to, and union/intersection/exclusion become set algebra. Relations on
a cycle of the relation graph are solved by fixpoint iteration (least fixpoint = Check's "cycle
means false"). Where set algebra could disagree with Check — an exclusion whose subtract branch
meets a cycle — the set is only a superset and each candidate is
verified with Check. Like OpenFGA's reverse expansion, a condition that cannot be evaluated (e.g. a
missing parameter) fails the whole request (FgaError 2000), even if another path would decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from espomcp.fga.check import Checker
from espomcp.fga.store import Index
from espomcp.fga.tuples import user_form
from espomcp.fga.typesystem import (
    COMPUTED,
    EXCLUSION,
    INTERSECTION,
    THIS,
    TTU,
    UNION,
    RelationDef,
    Rewrite,
    TypeSystem,
)

Node = tuple[str, str]
Result = tuple[frozenset[str] | set[str], bool]  # (object ids, exact)


class _Run:
    """One ListObjects request: the user's index keys, tuple sources and memoised relation sets."""

    __slots__ = ("approx", "context", "indexes", "memo", "self_node", "self_object", "user_keys")

    def __init__(self, user: str, indexes: Sequence[Index], context: dict[str, Any] | None) -> None:
        form = user_form(user)
        concrete = ":" not in form and "#" not in form
        self.user_keys = [(form, user), (form + ":*", form + ":*")] if concrete else [(form, user)]
        self.self_node: Node | None = None
        self.self_object = ""
        if "#" in form:
            obj, _, rel = user.partition("#")
            self.self_node, self.self_object = (form.partition("#")[0], rel), obj
        self.indexes = indexes
        self.context = context or {}
        self.memo: dict[Node, Result] = {}
        self.approx: dict[Node, Result] = {}


class ObjectLister:
    """Evaluates ListObjects over a compiled model."""

    def __init__(self, typesystem: TypeSystem, checker: Checker) -> None:
        self.ts = typesystem
        self.checker = checker

    def list_objects(self, user: str, relation: str, type_name: str, indexes: Sequence[Index],
                     context: dict[str, Any] | None = None, limit: int = 1000) -> list[str]:
        """Objects of ``type_name`` the user has ``relation`` on (deduplicated, at most ``limit``)."""
        run = _Run(user, indexes, context)
        candidates, exact = self._node(run, (type_name, relation))
        if exact:
            return list(candidates)[:limit] if len(candidates) > limit else list(candidates)
        out = []
        for obj in candidates:
            if self.checker.check(user, relation, obj, indexes, context):
                out.append(obj)
                if len(out) >= limit:
                    break
        return out

    # -- relation sets ---------------------------------------------------------------------

    def _node(self, run: _Run, node: Node) -> Result:
        hit = run.memo.get(node)
        if hit is not None:
            return hit
        component = self.ts.scc.get(node)
        if component is None:
            result = run.memo[node] = self._compute(run, node)
            return result
        if node in run.approx:
            return run.approx[node]
        for member in component:
            run.approx[member] = (frozenset(), True)
        changed = True
        while changed:
            changed = False
            for member in component:
                new = self._compute(run, member)
                if new != run.approx[member]:
                    run.approx[member] = new
                    changed = True
        for member in component:
            run.memo[member] = run.approx.pop(member)
        return run.memo[node]

    def _compute(self, run: _Run, node: Node) -> Result:
        rdef = self.ts.relations[node[0]][node[1]]
        objects, exact = self._rewrite(run, rdef, rdef.rewrite)
        if node == run.self_node:  # check(O#R, R, O) is true
            objects = {*objects, run.self_object}
        return objects, exact

    def _rewrite(self, run: _Run, rdef: RelationDef, node: Rewrite) -> Result:
        kind = node.kind
        if kind == THIS:
            return self._direct(run, rdef)
        if kind == COMPUTED:
            return self._node(run, (rdef.type, node.relation))
        if kind == TTU:
            return self._ttu(run, rdef, node)
        if kind == UNION:
            return self._union([self._rewrite(run, rdef, child) for child in node.children])
        if kind == INTERSECTION:
            parts = []
            for child in node.children:
                parts.append(self._rewrite(run, rdef, child))
                if not parts[-1][0]:
                    return frozenset(), all(exact for _, exact in parts)
            sets = sorted((objs for objs, _ in parts), key=len)
            return sets[0].intersection(*sets[1:]), all(exact for _, exact in parts)
        assert kind == EXCLUSION and node.base is not None and node.subtract is not None
        base, base_exact = self._rewrite(run, rdef, node.base)
        if not base or node.risky:
            return base, base_exact and not node.risky
        subtract, subtract_exact = self._rewrite(run, rdef, node.subtract)
        if not subtract_exact:
            return base, False
        return (base - subtract if subtract else base), base_exact

    @staticmethod
    def _union(parts: list[Result]) -> Result:
        exact = all(ex for _, ex in parts)
        sets = [objs for objs, _ in parts if objs]
        if len(sets) <= 1:
            return (sets[0] if sets else frozenset()), exact
        sets.sort(key=len, reverse=True)
        return sets[0].union(*sets[1:]), exact

    def _direct(self, run: _Run, rdef: RelationDef) -> Result:
        out: set[str] = set()
        exact = True
        for form, user in run.user_keys:
            self._collect(run, (user, rdef.name, rdef.type), form, rdef, out)
        for set_type, set_relation in rdef.usersets:
            subjects, sub_exact = self._node(run, (set_type, set_relation))
            exact &= sub_exact
            form = f"{set_type}#{set_relation}"
            for subject in subjects:
                self._collect(run, (f"{subject}#{set_relation}", rdef.name, rdef.type), form, rdef, out)
        return out, exact

    def _ttu(self, run: _Run, rdef: RelationDef, node: Rewrite) -> Result:
        tupleset = self.ts.relations[rdef.type][node.tupleset]
        out: set[str] = set()
        exact = True
        for parent_type in self.ts.ttu_parents(rdef.type, node):
            parents, parent_exact = self._node(run, (parent_type, node.relation))
            exact &= parent_exact
            for parent in parents:
                self._collect(run, (parent, node.tupleset, rdef.type), parent_type, tupleset, out)
        return out, exact

    def _collect(self, run: _Run, key: tuple[str, str, str], form: str, rdef: RelationDef,
                 out: set[str]) -> None:
        """Add objects of tuples ``key`` valid for ``rdef`` whose condition holds (errors raise)."""
        plain_ok = (form, None) in rdef.allowed
        for index in run.indexes:
            if plain_ok:
                group = index.by_user.get(key)
                if group:
                    out.update(group)
            group = index.by_user_cond.get(key)
            if not group:
                continue
            for obj, item in group.items():
                if (form, item.condition) not in rdef.allowed:
                    continue
                # OpenFGA's reverse expansion fails the whole request when a condition it meets
                # cannot be evaluated (e.g. a missing parameter), even if other paths decide.
                if self.checker.conditions.evaluate(item.condition, item.context, run.context):
                    out.add(obj)
