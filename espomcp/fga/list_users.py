"""ListUsers by forward expansion from the object (openfga.md §6; OpenFGA listusers).

Starting at ``(object, relation)`` the rewrite is walked, following userset tuples, computed
usersets and tuple-to-usersets, each ``(object, relation)`` once (breadth first, no recursion).
Subjects matching a filter are collected: ``type`` filters take concrete users and typed
wildcards (usersets are expanded to their members), ``type#relation`` filters take usersets
(including ``O#R`` itself, which always has ``R`` on ``O``). For union-only rewrites the collected
set is exact; when an intersection or exclusion is met, the candidates (all children, an
exclusion's base) are verified with Check, so the answer equals Check's (an excluded user
disappears; a granted wildcard stays listed). Conditions are evaluated on every tuple met.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from espomcp.fga.check import Checker
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


class _Run:
    __slots__ = ("context", "exact", "found", "indexes", "plain", "queue", "usersets", "visited")

    def __init__(self, filters: Sequence[tuple[str, str | None]], indexes: Sequence[Index],
                 context: dict[str, Any]) -> None:
        self.plain = {kind for kind, rel in filters if not rel}
        self.usersets = {f"{kind}#{rel}" for kind, rel in filters if rel}
        self.indexes = indexes
        self.context = context
        self.found: set[str] = set()
        self.visited: set[tuple[str, str]] = set()
        self.queue: deque[tuple[str, str]] = deque()
        self.exact = True


class UserLister:
    """Evaluates ListUsers over a compiled model."""

    def __init__(self, typesystem: TypeSystem, checker: Checker) -> None:
        self.ts = typesystem
        self.checker = checker

    def list_users(self, obj: str, relation: str, filters: Sequence[tuple[str, str | None]],
                   indexes: Sequence[Index], context: dict[str, Any] | None = None) -> list[str]:
        """Subjects (``type:id``, ``type:*``, ``type:id#rel``) having ``relation`` on ``obj``."""
        run = _Run(filters, indexes, context or {})
        self._expand(run, obj, relation)
        while run.queue:  # a worklist, not recursion: userset chains in the data can be long
            current, current_relation = run.queue.popleft()
            type_name = current.partition(":")[0]
            if f"{type_name}#{current_relation}" in run.usersets:
                run.found.add(f"{current}#{current_relation}")
            rdef = self.ts.relations[type_name][current_relation]
            self._rewrite(run, rdef, rdef.rewrite, current)
        if run.exact:
            return sorted(run.found)
        return sorted(user for user in run.found
                      if self.checker.check(user, relation, obj, indexes, context))

    @staticmethod
    def _expand(run: _Run, obj: str, relation: str) -> None:
        """Schedule ``(obj, relation)`` for expansion, once."""
        if (obj, relation) not in run.visited:
            run.visited.add((obj, relation))
            run.queue.append((obj, relation))

    def _rewrite(self, run: _Run, rdef: RelationDef, node: Rewrite, obj: str) -> None:
        if node.kind == THIS:
            self._direct(run, rdef, obj)
        elif node.kind == COMPUTED:
            self._expand(run, obj, node.relation)
        elif node.kind == TTU:
            self._ttu(run, rdef, node, obj)
        elif node.kind == EXCLUSION:
            assert node.base is not None
            run.exact = False
            self._rewrite(run, rdef, node.base, obj)
        else:
            run.exact = run.exact and node.kind != INTERSECTION
            for child in node.children:
                self._rewrite(run, rdef, child, obj)

    def _valid(self, run: _Run, rdef: RelationDef, index: Index, obj: str, relation: str) -> list[str]:
        """Users of tuples ``(obj, relation)`` that match ``rdef`` and whose condition holds."""
        out = []
        for user, item in index.by_object.get((obj, relation), {}).items():
            if (item.form, item.condition) not in rdef.allowed:
                continue
            if self.checker.condition_holds(run.context, item):
                out.append(user)
        return out

    def _direct(self, run: _Run, rdef: RelationDef, obj: str) -> None:
        for index in run.indexes:
            for user in self._valid(run, rdef, index, obj, rdef.name):
                subject, _, relation = user.partition("#")
                if relation:
                    if f"{subject.partition(':')[0]}#{relation}" in run.usersets:
                        run.found.add(user)
                    self._expand(run, subject, relation)
                elif subject.partition(":")[0] in run.plain:
                    run.found.add(user)

    def _ttu(self, run: _Run, rdef: RelationDef, node: Rewrite, obj: str) -> None:
        tupleset = self.ts.relations[rdef.type][node.tupleset]
        for index in run.indexes:
            for parent in self._valid(run, tupleset, index, obj, node.tupleset):
                if self.ts.has_relation(parent.partition(":")[0], node.relation):
                    self._expand(run, parent, node.relation)
