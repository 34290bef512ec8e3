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

Limits, as OpenFGA's (``resolveNodeLimit`` 25, ``listObjectsDeadline`` 3 s):

- Depth. Each set is layered by the length of an object's shortest derivation: a userset tuple,
  a tuple-to-userset or a computed userset is one hop each (OpenFGA dispatches every one of them,
  computed usersets included, unlike Check). An object 25 or more hops from the user fails the
  request with FgaError 2002, the error Check gives at its limit; chains of 24 hops still answer
  (both measured against fga CLI 0.8.2). Layers stop growing at 25, so long or cyclic data cannot
  make the fixpoint run away. Where OpenFGA races a short and a long path to the same object, its
  answer varies between runs; the shortest path decides here.
- Deadline. When it passes, the objects confirmed so far are returned, without error: none while
  the sets are still being computed (a half-computed exclusion could grant too much), the ones
  already verified while candidates are being checked.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from time import monotonic
from typing import Any

from espomcp.fga.check import MAX_DEPTH, Checker
from espomcp.fga.errors import resolution_too_complex
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
#: object ids by the hop count of their shortest derivation; index MAX_DEPTH gathers everything at
#: or beyond the limit. Never ends with an empty layer (no objects at all: ``()``).
Levels = tuple[Set[str], ...]
Result = tuple[Levels, bool]  # (layered object ids, exact)
EMPTY: frozenset[str] = frozenset()


class _Expired(Exception):
    """The request's deadline passed while the sets were being computed."""


class _Run:
    """One ListObjects request: the user's index keys, tuple sources, memoised relation sets and
    the deadline (a ``monotonic`` time, or None)."""

    __slots__ = ("approx", "context", "deadline", "indexes", "memo", "self_node", "self_object",
                 "user_keys")

    def __init__(self, user: str, indexes: Sequence[Index], context: dict[str, Any] | None,
                 deadline: float | None) -> None:
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
        self.deadline = deadline

    def expired(self) -> bool:
        return self.deadline is not None and monotonic() > self.deadline


class ObjectLister:
    """Evaluates ListObjects over a compiled model."""

    def __init__(self, typesystem: TypeSystem, checker: Checker) -> None:
        self.ts = typesystem
        self.checker = checker

    def list_objects(self, user: str, relation: str, type_name: str, indexes: Sequence[Index],
                     context: dict[str, Any] | None = None, limit: int = 1000,
                     deadline: float | None = None) -> list[str]:
        """Objects of ``type_name`` the user has ``relation`` on (deduplicated, at most ``limit``);
        past ``deadline`` seconds, those confirmed so far (see the module docstring)."""
        run = _Run(user, indexes, context, None if deadline is None else monotonic() + deadline)
        try:
            levels, exact = self._node(run, (type_name, relation))
        except _Expired:
            return []
        candidates = _flatten(levels)
        if exact:
            return list(candidates)[:limit] if len(candidates) > limit else list(candidates)
        out = []
        for obj in candidates:
            if run.expired():
                break
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
            result = run.memo[node] = _within_limit(self._compute(run, node))
            return result
        if node in run.approx:
            return run.approx[node]
        for member in component:
            run.approx[member] = ((), True)
        changed = True
        while changed:
            changed = False
            for member in component:
                new = self._compute(run, member)
                if new != run.approx[member]:
                    run.approx[member] = new
                    changed = True
        for member in component:
            run.memo[member] = _within_limit(run.approx.pop(member))
        return run.memo[node]

    def _compute(self, run: _Run, node: Node) -> Result:
        if run.expired():
            raise _Expired
        rdef = self.ts.relations[node[0]][node[1]]
        levels, exact = self._rewrite(run, rdef, rdef.rewrite)
        if node == run.self_node:  # check(O#R, R, O) is true
            levels = _merge([(frozenset((run.self_object,)),), levels])
        return levels, exact

    def _rewrite(self, run: _Run, rdef: RelationDef, node: Rewrite) -> Result:
        kind = node.kind
        if kind == THIS:
            return self._direct(run, rdef)
        if kind == COMPUTED:
            levels, exact = self._node(run, (rdef.type, node.relation))
            return _shift(levels), exact
        if kind == TTU:
            return self._ttu(run, rdef, node)
        if kind == UNION:
            parts = [self._rewrite(run, rdef, child) for child in node.children]
            return _merge([levels for levels, _ in parts]), all(exact for _, exact in parts)
        if kind == INTERSECTION:
            parts = []
            for child in node.children:
                parts.append(self._rewrite(run, rdef, child))
                if not parts[-1][0]:
                    return (), all(exact for _, exact in parts)
            return _meet([levels for levels, _ in parts]), all(exact for _, exact in parts)
        assert kind == EXCLUSION and node.base is not None and node.subtract is not None
        base, base_exact = self._rewrite(run, rdef, node.base)
        if not base or node.risky:
            return base, base_exact and not node.risky
        subtract, subtract_exact = self._rewrite(run, rdef, node.subtract)
        if not subtract_exact:
            return base, False
        if not subtract:
            return base, base_exact
        removed = _flatten(subtract)
        return _normalize([layer - removed for layer in base]), base_exact

    def _direct(self, run: _Run, rdef: RelationDef) -> Result:
        out: list[set[str]] = [set()]
        exact = True
        for form, user in run.user_keys:
            self._collect(run, (user, rdef.name, rdef.type), form, rdef, out[0])
        for set_type, set_relation in rdef.usersets:
            subjects, sub_exact = self._node(run, (set_type, set_relation))
            exact &= sub_exact
            form = f"{set_type}#{set_relation}"
            for depth, layer in enumerate(subjects[:MAX_DEPTH]):  # none beyond the limit
                target = _layer(out, depth + 1)
                for subject in layer:
                    self._collect(run, (f"{subject}#{set_relation}", rdef.name, rdef.type), form, rdef,
                                  target)
        return _normalize(out), exact

    def _ttu(self, run: _Run, rdef: RelationDef, node: Rewrite) -> Result:
        tupleset = self.ts.relations[rdef.type][node.tupleset]
        out: list[set[str]] = []
        exact = True
        for parent_type in self.ts.ttu_parents(rdef.type, node):
            parents, parent_exact = self._node(run, (parent_type, node.relation))
            exact &= parent_exact
            for depth, layer in enumerate(parents[:MAX_DEPTH]):
                target = _layer(out, depth + 1)
                for parent in layer:
                    self._collect(run, (parent, node.tupleset, rdef.type), parent_type, tupleset, target)
        return _normalize(out), exact

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


# -- layered sets ------------------------------------------------------------------------------

def _within_limit(result: Result) -> Result:
    """A relation's final set, or FgaError 2002 when some object is MAX_DEPTH or more hops away."""
    if len(result[0]) > MAX_DEPTH:
        raise resolution_too_complex(MAX_DEPTH)
    return result


def _layer(layers: list[set[str]], depth: int) -> set[str]:
    while len(layers) <= depth:
        layers.append(set())
    return layers[depth]


def _normalize(layers: Sequence[Set[str]]) -> Levels:
    """Levels from layers that may repeat an object (its lowest layer counts), end empty or run
    past the limit (merged into the last layer). The input sets are not modified."""
    if len(layers) == 1:
        return (layers[0],) if layers[0] else ()
    seen: set[str] = set()
    out: list[Set[str]] = []
    for layer in layers:
        if layer and seen:
            layer = layer - seen
        seen.update(layer)
        out.append(layer)
    while out and not out[-1]:
        out.pop()
    if len(out) > MAX_DEPTH + 1:
        out[MAX_DEPTH:] = [frozenset().union(*out[MAX_DEPTH:])]
    return tuple(out)


def _flatten(levels: Levels) -> Set[str]:
    if len(levels) == 1:
        return levels[0]
    return frozenset().union(*levels) if levels else EMPTY


def _shift(levels: Levels) -> Levels:
    """One hop further (a computed userset)."""
    if len(levels) <= MAX_DEPTH:
        return (EMPTY, *levels) if levels else ()
    return (EMPTY, *levels[:MAX_DEPTH - 1], levels[MAX_DEPTH - 1] | levels[MAX_DEPTH])


def _merge(parts: Sequence[Levels]) -> Levels:
    """Union: each object at its lowest level among the parts."""
    parts = [levels for levels in parts if levels]
    if len(parts) <= 1:
        return parts[0] if parts else ()
    layers = []
    for depth in range(max(map(len, parts))):
        group = sorted((levels[depth] for levels in parts if depth < len(levels) and levels[depth]),
                       key=len, reverse=True)
        layers.append(group[0].union(*group[1:]) if len(group) > 1 else group[0] if group else EMPTY)
    return _normalize(layers)


def _meet(parts: Sequence[Levels]) -> Levels:
    """Intersection of non-empty parts: an object needs every part, so its highest level counts."""
    if all(len(levels) == 1 for levels in parts):
        sets = sorted((levels[0] for levels in parts), key=len)
        return _normalize([sets[0].intersection(*sets[1:])])
    result = parts[0]
    for other in parts[1:]:
        below_a: set[str] = set()
        below_b: set[str] = set()
        layers = []
        for depth in range(max(len(result), len(other))):
            a = result[depth] if depth < len(result) else EMPTY
            b = other[depth] if depth < len(other) else EMPTY
            below_a.update(a)
            below_b.update(b)
            layers.append((a & below_b) | (b & below_a))
        result = _normalize(layers)
        if not result:
            return ()
    return result
