"""Check: is ``user`` related to ``object`` by ``relation``? (openfga.md §2, OpenFGA graph/check.go).

``Checker.resolve`` is the dispatch point (depth limit, ``O#R`` self-membership, cycle detection on
the current path); the ``_handlers`` table is the switch on the rewrite kind, one function each for
direct tuples, computed usersets, tuple-to-usersets, union, intersection and exclusion. Results are
``FALSE``, ``TRUE`` or ``CYCLE`` (false, but a cycle was met: OpenFGA then also makes an enclosing
intersection or exclusion false). Errors are raised as ``FgaError`` and, like OpenFGA, only surface
when no other branch decides the answer.

Depth (OpenFGA's limit of 25, error 2002): every userset or tuple-to-userset hop is a dispatch and
an object 25 dispatches deep is an error; a computed userset is resolved in place. A simple
recursive relation (``member: [user, group#member]``, ``viewer: [user] or viewer from parent``)
asked for a plain user is walked by OpenFGA breadth-first instead, which reaches one hop further
and answers false without an error when the user holds the relation's base on no object at all;
``Checker._recursive_step`` reproduces that at the last two hops (measured with the fga CLI,
tests/test_fga_check_depth.py). Above those hops the hot path pays one integer comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from espomcp.fga.conditions import ConditionEvaluator
from espomcp.fga.errors import AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX, FgaError
from espomcp.fga.store import Index, StoredTuple
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

FALSE, TRUE, CYCLE = 0, 1, 2
MAX_DEPTH = 25
_LAST_EXPANDED = MAX_DEPTH - 1  # recursive hops from here on take ``Checker._recursive_step``


class ResolutionRequest:
    """State of one top-level request: the (fixed) query user, tuple sources, context, depth and the
    keys on the current resolution path."""

    __slots__ = ("candidates", "concrete", "context", "depth", "form", "indexes", "user", "visited",
                 "wildcard")

    def __init__(self, user: str, indexes: Sequence[Index], context: dict[str, Any] | None) -> None:
        self.user = user
        self.form = user_form(user)
        self.concrete = ":" not in self.form and "#" not in self.form
        self.wildcard = self.form + ":*"
        self.candidates = (user, self.wildcard) if self.concrete else (user,)
        self.indexes = indexes
        self.context = context or {}
        self.depth = 0
        self.visited: set[tuple[str, str]] = set()


class Checker:
    """Evaluates Check over a compiled model; stateless between requests."""

    def __init__(self, typesystem: TypeSystem, conditions: ConditionEvaluator) -> None:
        self.ts = typesystem
        self.conditions = conditions
        self._handlers = {THIS: self._check_direct, COMPUTED: self._check_computed, TTU: self._check_ttu,
                          UNION: self._check_union, INTERSECTION: self._check_intersection,
                          EXCLUSION: self._check_exclusion}

    def check(self, user: str, relation: str, obj: str, indexes: Sequence[Index],
              context: dict[str, Any] | None = None) -> bool:
        """The answer for a validated request (a detected cycle answers false)."""
        return self.resolve(ResolutionRequest(user, indexes, context), relation, obj) == TRUE

    def condition_holds(self, context: dict[str, Any], item: StoredTuple) -> bool:
        """Whether a tuple counts: unconditioned, or its condition is true in the request ``context``
        (the tuple's own context wins on a clash; a missing parameter raises FgaError 2000)."""
        if item.condition is None:
            return True
        return self.conditions.evaluate(item.condition, item.context, context)

    def resolve(self, req: ResolutionRequest, relation: str, obj: str) -> int:
        """Dispatch one ``(object, relation)`` for the request's user."""
        if req.depth >= MAX_DEPTH:
            raise FgaError(AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX,
                           f"resolution exceeded the depth limit of {MAX_DEPTH}")
        user = req.user
        if "#" in user and user == f"{obj}#{relation}":
            return TRUE
        type_name = obj.partition(":")[0]
        rdef = self.ts.relations[type_name][relation]
        if rdef.leaf:  # only direct tuples of plain users: nothing to recurse into, no cycle possible
            return self._check_direct(req, rdef.rewrite, rdef, obj)
        key = (obj, relation)
        if key in req.visited:
            if (type_name, relation) in self.ts.recursive and "#" not in user:
                return FALSE  # OpenFGA's recursive resolvers see no cycle (typesystem._simple_recursive)
            return CYCLE
        req.visited.add(key)
        req.depth += 1
        try:
            return self._handlers[rdef.rewrite.kind](req, rdef.rewrite, rdef, obj)
        finally:
            req.visited.discard(key)
            req.depth -= 1

    # -- one function per rewrite kind ------------------------------------------------------

    def _check_direct(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef, obj: str) -> int:
        relation, allowed = rdef.name, rdef.allowed
        error: FgaError | None = None
        cycle = False
        candidates = req.candidates
        for index in req.indexes:
            group = index.by_object.get((obj, relation))
            if not group:
                continue
            for user in candidates:
                item = group.get(user)
                if item is not None and (item.form, item.condition) in allowed:
                    try:
                        if self.condition_holds(req.context, item):
                            return TRUE
                    except FgaError as exc:
                        error = exc
        if rdef.usersets:
            near_limit = req.depth >= _LAST_EXPANDED
            for index in req.indexes:
                group = index.usersets.get((obj, relation))
                if not group:
                    continue
                for user, item in group.items():
                    if (item.form, item.condition) not in allowed:
                        continue
                    try:
                        if not self.condition_holds(req.context, item):
                            continue
                        set_object, _, set_relation = user.partition("#")
                        if near_limit and self._breadth_first(req, rdef):  # usersets are all T#R
                            result = self._recursive_step(req, rdef, set_object)
                        else:
                            result = self.resolve(req, set_relation, set_object)
                    except FgaError as exc:
                        error = exc
                        continue
                    if result == TRUE:
                        return TRUE
                    cycle = cycle or result == CYCLE
        if error is not None:
            raise error
        return CYCLE if cycle else FALSE

    def _check_computed(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef, obj: str) -> int:
        req.depth -= 1  # like OpenFGA, a computed userset is resolved in place, not dispatched
        try:
            return self.resolve(req, node.relation, obj)
        finally:
            req.depth += 1

    def _check_ttu(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef, obj: str) -> int:
        type_rels = self.ts.relations
        tupleset = type_rels[rdef.type][node.tupleset]
        error: FgaError | None = None
        cycle = False
        near_limit = req.depth >= _LAST_EXPANDED
        for index in req.indexes:
            group = index.by_object.get((obj, node.tupleset))
            if not group:
                continue
            for parent, item in group.items():
                if (item.form, item.condition) not in tupleset.allowed:
                    continue
                if node.relation not in type_rels[item.form]:
                    continue  # parents whose type lacks the relation are skipped, not an error
                try:
                    if not self.condition_holds(req.context, item):
                        continue
                    if (near_limit and item.form == rdef.type and node.relation == rdef.name
                            and self._breadth_first(req, rdef)):
                        result = self._recursive_step(req, rdef, parent)
                    else:
                        result = self.resolve(req, node.relation, parent)
                except FgaError as exc:
                    error = exc
                    continue
                if result == TRUE:
                    return TRUE
                cycle = cycle or result == CYCLE
        if error is not None:
            raise error
        return CYCLE if cycle else FALSE

    # -- simple recursive relations at the depth limit --------------------------------------

    def _breadth_first(self, req: ResolutionRequest, rdef: RelationDef) -> bool:
        """Whether OpenFGA walks this relation breadth-first for the request's user."""
        return "#" not in req.user and (rdef.type, rdef.name) in self.ts.recursive

    def _recursive_step(self, req: ResolutionRequest, rdef: RelationDef, obj: str) -> int:
        """The next object of a simple recursive relation 24 or 25 hops deep, as OpenFGA's
        breadth-first walk sees it (internal/graph/recursive_resolver.go): the walk compares each
        level with the objects where the user holds the relation's base (nothing there: false, no
        error), matches objects up to 25 hops deep and fails with 2002 once it would read the
        level after 24 hops without a match — even an empty one."""
        if not self._holds_base_somewhere(req, rdef):
            return FALSE
        if req.depth == _LAST_EXPANDED:
            result = self.resolve(req, rdef.name, obj)
        else:  # 25 hops: matched against the base, never expanded
            result = self._holds_base(req, rdef, obj)
        if result == TRUE:
            return TRUE
        raise FgaError(AUTHORIZATION_MODEL_RESOLUTION_TOO_COMPLEX,
                       f"resolution exceeded the depth limit of {MAX_DEPTH}")

    def _base_relations(self, rdef: RelationDef) -> list[RelationDef]:
        """The relations whose direct tuples grant a simple recursive relation without recursing:
        itself (its ``[…]``) and the plain relations its union names."""
        if rdef.rewrite.kind == THIS:
            return [rdef]
        rels = self.ts.relations[rdef.type]
        return [rdef if child.kind == THIS else rels[child.relation] for child in rdef.rewrite.children
                if child.kind in (THIS, COMPUTED)]

    def _holds_base(self, req: ResolutionRequest, rdef: RelationDef, obj: str) -> int:
        """TRUE when a direct tuple of a base relation relates the user (or its wildcard) to ``obj``."""
        error: FgaError | None = None
        for base in self._base_relations(rdef):
            for index in req.indexes:
                group = index.by_object.get((obj, base.name)) or {}
                for user in req.candidates:
                    item = group.get(user)
                    if item is None or (item.form, item.condition) not in base.allowed:
                        continue
                    try:
                        if self.condition_holds(req.context, item):
                            return TRUE
                    except FgaError as exc:
                        error = exc
        if error is not None:
            raise error
        return FALSE

    def _holds_base_somewhere(self, req: ResolutionRequest, rdef: RelationDef) -> bool:
        """Whether the user holds a base relation on any object of the type (a tuple whose condition
        cannot be evaluated counts: the walk then goes on and fails rather than answering false)."""
        for base in self._base_relations(rdef):
            for index in req.indexes:
                for user in req.candidates:
                    for by_user in (index.by_user, index.by_user_cond):
                        for item in (by_user.get((user, base.name, rdef.type)) or {}).values():
                            if (item.form, item.condition) not in base.allowed:
                                continue
                            try:
                                if self.condition_holds(req.context, item):
                                    return True
                            except FgaError:
                                return True
        return False

    def _check_union(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef, obj: str) -> int:
        error: FgaError | None = None
        cycle = False
        for child in node.children:
            try:
                result = self._handlers[child.kind](req, child, rdef, obj)
            except FgaError as exc:
                error = exc
                continue
            if result == TRUE:
                return TRUE
            cycle = cycle or result == CYCLE
        if error is not None:
            raise error
        return CYCLE if cycle else FALSE

    def _check_intersection(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef,
                            obj: str) -> int:
        error: FgaError | None = None
        for position, child in enumerate(node.children):
            try:
                result = self._handlers[child.kind](req, child, rdef, obj)
            except FgaError as exc:
                error = exc
                continue
            if result != TRUE:  # false (or cycle) decides even when another child failed
                rest = node.children[position + 1:]
                if result == FALSE and any(c.may_cycle and self._cycle_probe(req, c, rdef, obj)
                                           for c in rest):
                    return CYCLE
                return result
        if error is not None:
            raise error
        return TRUE

    def _cycle_probe(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef, obj: str) -> bool:
        """Would ``node`` hit the current path within one dispatch? OpenFGA evaluates set operands
        concurrently, and such an immediate cycle (no tuple reads behind it) beats a plain false."""
        kind = node.kind
        if kind in (UNION, INTERSECTION):
            return any(self._cycle_probe(req, child, rdef, obj) for child in node.children)
        if kind == EXCLUSION:
            assert node.base is not None and node.subtract is not None
            return (self._cycle_probe(req, node.base, rdef, obj)
                    or self._cycle_probe(req, node.subtract, rdef, obj))
        if kind == COMPUTED:
            targets = [(obj, node.relation)]
        elif kind == TTU:
            tupleset = self.ts.relations[rdef.type][node.tupleset]
            targets = [(parent, node.relation) for index in req.indexes
                       for parent, item in index.by_object.get((obj, node.tupleset), {}).items()
                       if (item.form, item.condition) in tupleset.allowed]
        else:
            targets = [tuple(user.split("#", 1)) for index in req.indexes
                       for user, item in index.usersets.get((obj, rdef.name), {}).items()
                       if (item.form, item.condition) in rdef.allowed]
        plain_user = "#" not in req.user
        recursive = self.ts.recursive
        return any(key in req.visited and not (plain_user and (key[0].partition(":")[0], key[1]) in recursive)
                   for key in targets)

    def _check_exclusion(self, req: ResolutionRequest, node: Rewrite, rdef: RelationDef, obj: str) -> int:
        base_error: FgaError | None = None
        assert node.base is not None and node.subtract is not None
        try:
            base = self._handlers[node.base.kind](req, node.base, rdef, obj)
            if base == FALSE and node.subtract.may_cycle and self._cycle_probe(req, node.subtract, rdef, obj):
                return CYCLE
            if base != TRUE:
                return base
        except FgaError as exc:
            base_error = exc
        try:
            subtract = self._handlers[node.subtract.kind](req, node.subtract, rdef, obj)
        except FgaError:
            if base_error is not None:
                raise base_error from None
            raise
        if subtract == TRUE:
            return FALSE
        if subtract == CYCLE:
            return CYCLE
        if base_error is not None:
            raise base_error
        return TRUE
