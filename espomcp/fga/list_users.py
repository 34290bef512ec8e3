"""ListUsers by forward expansion from the object (openfga.md §6; OpenFGA listusers).

Starting at ``(object, relation)`` the rewrite is walked, following userset tuples, computed
usersets and tuple-to-usersets, each ``(object, relation)`` once (breadth first, no recursion).
Subjects matching a filter are collected: ``type`` filters take concrete users and typed
wildcards (usersets are expanded to their members), ``type#relation`` filters take usersets
(including ``O#R`` itself, which always has ``R`` on ``O``). For union-only rewrites the collected
set is exact; when an intersection or exclusion is met, the candidates (all children, an
exclusion's base) are verified with Check, so the answer equals Check's (an excluded user
disappears; a granted wildcard stays listed). Conditions are evaluated on every tuple met.

Limits, as OpenFGA's (``resolveNodeLimit`` 25, ``listUsersDeadline`` 3 s):

- Depth. A userset tuple, a tuple-to-userset or a computed userset is one hop (OpenFGA dispatches
  each, computed usersets included, unlike Check); expanding an ``(object, relation)`` 25 or more
  hops from the request's object fails with FgaError 2002, the error Check gives at its limit,
  while 24 hops still answer (measured against fga CLI 0.8.2). Breadth first, each pair is
  reached by its shortest path; OpenFGA walks every path and also fails when only a longer one
  is 25 hops deep, so a few requests it refuses are answered here, never the reverse.
- Deadline. When it passes, the users confirmed so far are returned, without error: those found
  when no intersection or exclusion was met yet, otherwise the candidates already verified.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from time import monotonic
from typing import Any

from espomcp.fga.check import MAX_DEPTH, Checker
from espomcp.fga.errors import resolution_too_complex
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
        self.queue: deque[tuple[str, str, int]] = deque()  # (object, relation, hops)
        self.exact = True


class UserLister:
    """Evaluates ListUsers over a compiled model."""

    def __init__(self, typesystem: TypeSystem, checker: Checker) -> None:
        self.ts = typesystem
        self.checker = checker

    def list_users(self, obj: str, relation: str, filters: Sequence[tuple[str, str | None]],
                   indexes: Sequence[Index], context: dict[str, Any] | None = None,
                   deadline: float | None = None) -> list[str]:
        """Subjects (``type:id``, ``type:*``, ``type:id#rel``) having ``relation`` on ``obj``; past
        ``deadline`` seconds, those confirmed so far (see the module docstring)."""
        until = None if deadline is None else monotonic() + deadline
        run = _Run(filters, indexes, context or {})
        self._expand(run, obj, relation, 0)
        while run.queue:  # a worklist, not recursion: userset chains in the data can be long
            if until is not None and monotonic() > until:
                break
            current, current_relation, hops = run.queue.popleft()
            if hops >= MAX_DEPTH:
                raise resolution_too_complex(MAX_DEPTH)
            type_name = current.partition(":")[0]
            if f"{type_name}#{current_relation}" in run.usersets:
                run.found.add(f"{current}#{current_relation}")
            rdef = self.ts.relations[type_name][current_relation]
            self._rewrite(run, rdef, rdef.rewrite, current, hops + 1)
        if run.exact:
            return sorted(run.found)
        out = []
        for user in sorted(run.found):
            if until is not None and monotonic() > until:
                break
            if self.checker.check(user, relation, obj, indexes, context):
                out.append(user)
        return out

    @staticmethod
    def _expand(run: _Run, obj: str, relation: str, hops: int) -> None:
        """Schedule ``(obj, relation)`` for expansion, once (breadth first: at its fewest hops)."""
        if (obj, relation) not in run.visited:
            run.visited.add((obj, relation))
            run.queue.append((obj, relation, hops))

    def _rewrite(self, run: _Run, rdef: RelationDef, node: Rewrite, obj: str, hops: int) -> None:
        """Walk ``obj``'s rewrite; what it leads to is scheduled ``hops`` away."""
        if node.kind == THIS:
            self._direct(run, rdef, obj, hops)
        elif node.kind == COMPUTED:
            self._expand(run, obj, node.relation, hops)
        elif node.kind == TTU:
            self._ttu(run, rdef, node, obj, hops)
        elif node.kind == EXCLUSION:
            assert node.base is not None
            run.exact = False
            self._rewrite(run, rdef, node.base, obj, hops)
        else:
            run.exact = run.exact and node.kind != INTERSECTION
            for child in node.children:
                self._rewrite(run, rdef, child, obj, hops)

    def _valid(self, run: _Run, rdef: RelationDef, index: Index, obj: str, relation: str) -> list[str]:
        """Users of tuples ``(obj, relation)`` that match ``rdef`` and whose condition holds."""
        out = []
        for user, item in index.by_object.get((obj, relation), {}).items():
            if (item.form, item.condition) not in rdef.allowed:
                continue
            if self.checker.condition_holds(run.context, item):
                out.append(user)
        return out

    def _direct(self, run: _Run, rdef: RelationDef, obj: str, hops: int) -> None:
        for index in run.indexes:
            for user in self._valid(run, rdef, index, obj, rdef.name):
                subject, _, relation = user.partition("#")
                if relation:
                    if f"{subject.partition(':')[0]}#{relation}" in run.usersets:
                        run.found.add(user)
                    self._expand(run, subject, relation, hops)
                elif subject.partition(":")[0] in run.plain:
                    run.found.add(user)

    def _ttu(self, run: _Run, rdef: RelationDef, node: Rewrite, obj: str, hops: int) -> None:
        tupleset = self.ts.relations[rdef.type][node.tupleset]
        for index in run.indexes:
            for parent in self._valid(run, tupleset, index, obj, node.tupleset):
                if self.ts.has_relation(parent.partition(":")[0], node.relation):
                    self._expand(run, parent, node.relation, hops)
