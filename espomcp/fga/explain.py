"""Explain an authorization decision: which chain of tuples grants it, or why nothing does.

A pure function over any FGA backend (embedded, OpenFGA, the fakes): it reads the model with
``backend.model()``, walks the relation's rewrite the way OpenFGA's check does (openfga.md §2:
direct / computed userset / tuple-to-userset / union / intersection / exclusion) using
``backend.read`` for the tuples, and takes the verdict itself from ``backend.check``. Where the
walk and the engine disagree (it cannot happen unless a backend is wrong) the explanation says
so instead of guessing.

Example path: ``user:alice → member of team:sales → team of contact:123 → can_read``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from espomcp.fga.errors import FgaError

MAX_DEPTH = 25           # OpenFGA's resolution depth limit (openfga.md §2)
MAX_TUPLES_PER_READ = 1000  # tuples scanned per (object, relation) before giving up on completeness
READ_PAGE = 100


@dataclass(frozen=True)
class Hop:
    """One step of a granting chain: ``subject`` holds ``relation`` on ``object``.

    ``kind`` is ``tuple`` (a stored tuple), ``wildcard`` (a ``type:*`` tuple), ``implied`` (the
    relation follows from the previous hop by the model's rewrite) or ``self`` (a userset query
    user that is itself the relation asked for).
    """

    subject: str
    relation: str
    object: str
    kind: str = "tuple"
    condition: str | None = None

    def text(self, label: Callable[[str], str] = str) -> str:
        if self.kind == "implied":
            return self.relation
        suffix = f" (condition {self.condition} holds)" if self.condition else ""
        if self.kind == "wildcard":
            return f"{self.relation} of {label(self.object)} via {self.subject}{suffix}"
        return f"{self.relation} of {label(self.object)}{suffix}"


@dataclass
class Node:
    """One evaluated piece of the rewrite tree. ``allowed`` None = undetermined (error)."""

    label: str
    allowed: bool | None
    detail: str = ""
    children: list[Node] = field(default_factory=list)


@dataclass
class Explanation:
    """The answer to "can ``user`` do ``relation`` on ``object``?" and why."""

    user: str
    relation: str
    object: str
    allowed: bool
    paths: list[list[Hop]]      # granting chains (an intersection needs all of them)
    tree: Node
    reasons: list[str]          # when denied: the failing leaves, in plain words
    note: str = ""              # disagreement or incompleteness worth showing the admin

    def path_texts(self, label: Callable[[str], str] = str) -> list[str]:
        """Each granting chain as ``user → hop → hop → relation``."""
        lines = []
        for chain in self.paths:
            parts = [label(self.user)] + [hop.text(label) for hop in chain]
            if not chain or chain[-1].relation != self.relation or chain[-1].object != self.object:
                parts.append(self.relation)
            lines.append(" → ".join(parts))
        return lines


@dataclass
class _Result:
    allowed: bool | None
    paths: list[list[Hop]]
    node: Node


class _Walker:
    """Carries the backend, model, request context and the limits through one explanation."""

    def __init__(self, backend: Any, model: dict[str, Any], context: dict[str, Any] | None) -> None:
        self.backend = backend
        self.types = {td["type"]: td for td in model.get("type_definitions", [])}
        self.context = context or {}
        self.truncated = False
        self._conditions = model.get("conditions") or {}
        self._evaluator: Any = None

    # --- model access -------------------------------------------------------------------
    def rewrite(self, obj_type: str, relation: str) -> dict[str, Any] | None:
        return (self.types.get(obj_type, {}).get("relations") or {}).get(relation)

    def restrictions(self, obj_type: str, relation: str) -> list[dict[str, Any]]:
        meta = (self.types.get(obj_type, {}).get("metadata") or {}).get("relations") or {}
        return (meta.get(relation) or {}).get("directly_related_user_types") or []

    # --- the walk -----------------------------------------------------------------------
    def relation(self, user: str, relation: str, obj: str, depth: int,
                 visiting: frozenset[tuple[str, str, str]]) -> _Result:
        label = f"{relation} on {obj}"
        key = (user, relation, obj)
        if key in visiting:
            return _Result(False, [], Node(label, False, "cycle in the model: counts as no access"))
        if depth > MAX_DEPTH:
            return _Result(None, [], Node(label, None, "resolution too deep (more than 25 hops)"))
        obj_type = obj.split(":", 1)[0]
        rewrite = self.rewrite(obj_type, relation)
        if rewrite is None:
            return _Result(False, [], Node(label, False, f"type {obj_type} has no relation {relation}"))
        if user == f"{obj}#{relation}":
            return _Result(True, [[Hop(user, relation, obj, "self")]],
                           Node(label, True, "the userset asked about is this relation itself"))
        result = self.rewrite_node(user, relation, obj, rewrite, depth + 1, visiting | {key})
        node = Node(label, result.allowed, "", [result.node])
        paths = []
        for chain in result.paths:
            if chain and (chain[-1].relation != relation or chain[-1].object != obj):
                chain = [*chain, Hop(user, relation, obj, "implied")]
            paths.append(chain)
        return _Result(result.allowed, paths, node)

    def rewrite_node(self, user: str, relation: str, obj: str, rw: dict[str, Any], depth: int,
                     visiting: frozenset[tuple[str, str, str]]) -> _Result:
        if "this" in rw:
            return self.direct(user, relation, obj, depth, visiting)
        if "computedUserset" in rw:
            target = rw["computedUserset"].get("relation", "")
            sub = self.relation(user, target, obj, depth, visiting)
            return _Result(sub.allowed, sub.paths, Node(f"via {target}", sub.allowed,
                                                        sub.node.detail, sub.node.children))
        if "tupleToUserset" in rw:
            return self.tuple_to_userset(user, obj, rw["tupleToUserset"], depth, visiting)
        if "union" in rw:
            return self.union(user, relation, obj, rw["union"].get("child", []), depth, visiting)
        if "intersection" in rw:
            return self.intersection(user, relation, obj, rw["intersection"].get("child", []),
                                     depth, visiting)
        if "difference" in rw:
            return self.difference(user, relation, obj, rw["difference"], depth, visiting)
        return _Result(None, [], Node("unknown rewrite", None, f"unsupported rewrite {sorted(rw)}"))

    def union(self, user: str, relation: str, obj: str, children: list[dict[str, Any]],
              depth: int, visiting: frozenset[tuple[str, str, str]]) -> _Result:
        results = [self.rewrite_node(user, relation, obj, c, depth, visiting) for c in children]
        nodes = [r.node for r in results]
        granted = [r for r in results if r.allowed]
        if granted:
            return _Result(True, granted[0].paths, Node("any of", True, "", nodes))
        undetermined = any(r.allowed is None for r in results)
        return _Result(None if undetermined else False, [], Node("any of", None if undetermined
                                                                 else False, "", nodes))

    def intersection(self, user: str, relation: str, obj: str, children: list[dict[str, Any]],
                     depth: int, visiting: frozenset[tuple[str, str, str]]) -> _Result:
        results = [self.rewrite_node(user, relation, obj, c, depth, visiting) for c in children]
        nodes = [r.node for r in results]
        if any(r.allowed is False for r in results):
            return _Result(False, [], Node("all of", False, "", nodes))
        if any(r.allowed is None for r in results):
            return _Result(None, [], Node("all of", None, "", nodes))
        paths = [chain for r in results for chain in r.paths[:1]]
        return _Result(True, paths, Node("all of", True, "", nodes))

    def difference(self, user: str, relation: str, obj: str, diff: dict[str, Any], depth: int,
                   visiting: frozenset[tuple[str, str, str]]) -> _Result:
        base = self.rewrite_node(user, relation, obj, diff.get("base", {}), depth, visiting)
        sub = self.rewrite_node(user, relation, obj, diff.get("subtract", {}), depth, visiting)
        # ✔ on the "but not" node means "does not exclude"
        sub_node = Node("but not", None if sub.allowed is None else not sub.allowed,
                        "excluded" if sub.allowed else "not excluded", [sub.node])
        nodes = [base.node, sub_node]
        if base.allowed is False or sub.allowed is True:
            detail = ""
            if sub.allowed:
                via = " → ".join([user] + [hop.text() for hop in (sub.paths or [[]])[0]])
                detail = f"excluded by the 'but not' part: {via}"
            return _Result(False, [], Node("base but not subtract", False, detail, nodes))
        if base.allowed is None or sub.allowed is None:
            return _Result(None, [], Node("base but not subtract", None, "", nodes))
        return _Result(True, base.paths, Node("base but not subtract", True, "", nodes))

    def direct(self, user: str, relation: str, obj: str, depth: int,
               visiting: frozenset[tuple[str, str, str]]) -> _Result:
        allowed = self.restrictions(obj.split(":", 1)[0], relation)
        children: list[Node] = []
        undetermined = False
        for tuple_user, condition in self.direct_tuples(user, relation, obj, allowed):
            ok, why = self.condition_holds(condition)
            cond_name = condition.name if condition is not None else None
            if tuple_user == user:
                if ok:
                    return _Result(True, [[Hop(user, relation, obj, "tuple", cond_name)]],
                                   Node("direct", True, f"tuple {user} {relation} {obj}" + why))
                undetermined = undetermined or ok is None
                children.append(Node(f"tuple {user} {relation} {obj}", ok, why.strip(" ;")))
            elif tuple_user.endswith(":*"):
                if ok:
                    return _Result(True, [[Hop(tuple_user, relation, obj, "wildcard", cond_name)]],
                                   Node("direct", True, f"wildcard tuple {tuple_user}" + why))
                undetermined = undetermined or ok is None
                children.append(Node(f"wildcard tuple {tuple_user}", ok, why.strip(" ;")))
            elif "#" in tuple_user:
                set_obj, set_rel = tuple_user.split("#", 1)
                sub = self.relation(user, set_rel, set_obj, depth, visiting)
                granted = bool(sub.allowed) and bool(ok)
                children.append(Node(f"via {tuple_user}", sub.allowed if ok else ok,
                                     why.strip(" ;"), [sub.node]))
                if granted:
                    paths = [[*chain, Hop(tuple_user, relation, obj, "tuple", cond_name)]
                             for chain in sub.paths[:1]]
                    return _Result(True, paths, Node("direct", True, "", children))
                undetermined = undetermined or sub.allowed is None or ok is None
        if not children:
            detail = f"no tuple makes {user} {relation} of {obj}"
            return _Result(False, [], Node("direct", False, detail))
        return _Result(None if undetermined else False, [],
                       Node("direct", None if undetermined else False, "", children))

    def tuple_to_userset(self, user: str, obj: str, ttu: dict[str, Any], depth: int,
                         visiting: frozenset[tuple[str, str, str]]) -> _Result:
        tupleset = ttu.get("tupleset", {}).get("relation", "")
        computed = ttu.get("computedUserset", {}).get("relation", "")
        label = f"{computed} from {tupleset}"
        children: list[Node] = []
        undetermined = False
        for parent, _condition in self.read_tuples(obj, tupleset):
            if "#" in parent or parent.endswith(":*"):
                continue
            if self.rewrite(parent.split(":", 1)[0], computed) is None:
                continue  # openfga.md §2: a parent type without the relation is skipped
            sub = self.relation(user, computed, parent, depth, visiting)
            children.append(Node(f"{tupleset} {parent}", sub.allowed, "", [sub.node]))
            if sub.allowed:
                paths = [[*chain, Hop(parent, tupleset, obj)] for chain in sub.paths[:1]]
                return _Result(True, paths, Node(label, True, "", children))
            undetermined = undetermined or sub.allowed is None
        if not children:
            return _Result(False, [], Node(label, False, f"{obj} has no {tupleset}"))
        return _Result(None if undetermined else False, [],
                       Node(label, None if undetermined else False, "", children))

    # --- tuples -------------------------------------------------------------------------
    def direct_tuples(self, user: str, relation: str, obj: str,
                      allowed: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
        """Tuples on (obj, relation) that may grant ``user``, limited to the model's
        restrictions (stale tuples do not count, openfga.md §2). Exact reads first (cheap),
        then a bounded scan only when the relation admits usersets."""
        user_type = user.split(":", 1)[0]
        seen: set[str] = set()
        if any(r.get("type") == user_type and "relation" not in r and "wildcard" not in r
               for r in allowed) and "#" not in user and not user.endswith(":*"):
            for tuple_user, cond in self.read_tuples(obj, relation, user=user):
                if tuple_user == user and self._allowed_condition(allowed, user_type, None, cond):
                    seen.add(tuple_user)
                    yield tuple_user, cond
        if "#" in user or user.endswith(":*"):
            for tuple_user, cond in self.read_tuples(obj, relation, user=user):
                if tuple_user == user:
                    seen.add(tuple_user)
                    yield tuple_user, cond
        if any(r.get("type") == user_type and "wildcard" in r for r in allowed):
            wildcard = f"{user_type}:*"
            for tuple_user, cond in self.read_tuples(obj, relation, user=wildcard):
                if tuple_user == wildcard and tuple_user not in seen:
                    seen.add(tuple_user)
                    yield tuple_user, cond
        usersets = {(r["type"], r["relation"]) for r in allowed if r.get("relation")}
        if usersets:
            for tuple_user, cond in self.read_tuples(obj, relation):
                if "#" not in tuple_user or tuple_user in seen:
                    continue
                set_obj, set_rel = tuple_user.split("#", 1)
                if (set_obj.split(":", 1)[0], set_rel) in usersets:
                    seen.add(tuple_user)
                    yield tuple_user, cond

    @staticmethod
    def _allowed_condition(allowed: list[dict[str, Any]], user_type: str, relation: str | None,
                           cond: Any) -> bool:
        name = cond.name if cond is not None else None
        return any(r.get("type") == user_type and r.get("relation") == relation
                   and "wildcard" not in r and (r.get("condition") or None) == name
                   for r in allowed)

    def read_tuples(self, obj: str, relation: str, user: str | None = None
                    ) -> Iterator[tuple[str, Any]]:
        token: str | None = None
        count = 0
        while True:
            page, token = self.backend.read(user=user, relation=relation, object=obj,
                                            page_size=READ_PAGE, continuation_token=token)
            for key in page:
                if key.object != obj or key.relation != relation:
                    continue
                count += 1
                yield key.user, key.condition
            if not token:
                return
            if count >= MAX_TUPLES_PER_READ:
                self.truncated = True
                return

    def condition_holds(self, condition: Any) -> tuple[bool | None, str]:
        """(True/False/None=error, readable suffix) for a tuple's condition (None = none)."""
        if condition is None:
            return True, ""
        try:
            if self._evaluator is None:
                from espomcp.fga.conditions import ConditionEvaluator

                self._evaluator = ConditionEvaluator(self._conditions)
            ok = bool(self._evaluator.evaluate(condition.name, condition.context or {},
                                               self.context))
        except FgaError as exc:
            return None, f"; condition {condition.name}: {exc.message}"
        except ImportError:
            return None, f"; condition {condition.name} cannot be evaluated here"
        return ok, f"; condition {condition.name} {'holds' if ok else 'does not hold'}"


def _reasons(node: Node, out: list[str]) -> None:
    """The failing leaves of ``node`` in plain words, each once, in walk order."""
    if node.allowed:
        return
    if not node.children or node.detail:
        reason = node.detail or node.label
        if reason not in out:
            out.append(reason)
        return
    for child in node.children:
        _reasons(child, out)


def explain(backend: Any, user: str, relation: str, object: str, *,
            context: dict[str, Any] | None = None) -> Explanation:
    """Explain ``check(user, relation, object)`` on ``backend``.

    Raises ``FgaError`` for a request the model rejects (unknown type or relation) and lets
    ``FgaUnavailable`` from the backend through: the caller shows it; nothing is guessed.
    """
    model = backend.model()
    if "type_definitions" not in model and isinstance(model.get("authorization_model"), dict):
        model = model["authorization_model"]
    walker = _Walker(backend, model, context)
    obj_type = object.split(":", 1)[0]
    if obj_type not in walker.types:
        raise FgaError(2021, f"type {obj_type!r} is not in the authorization model")
    if walker.rewrite(obj_type, relation) is None:
        raise FgaError(2022, f"type {obj_type!r} has no relation {relation!r}")
    allowed = bool(backend.check(user, relation, object, context=context) if context
                   else backend.check(user, relation, object))
    result = walker.relation(user, relation, object, 0, frozenset())
    reasons: list[str] = []
    if not allowed:
        _reasons(result.node, reasons)
    note = ""
    if result.allowed is None:
        note = "Part of the walk could not be decided (a condition lacks context or the model " \
               "is too deep); the verdict is the engine's."
    elif bool(result.allowed) != allowed:
        note = (f"The engine answers {'allowed' if allowed else 'denied'} but walking the "
                f"stored tuples found {'a path' if result.allowed else 'none'}; the verdict "
                "is the engine's.")
    if walker.truncated:
        note = (note + " " if note else "") + (
            f"Some relations hold more than {MAX_TUPLES_PER_READ} tuples; only the first "
            f"{MAX_TUPLES_PER_READ} were examined.")
    paths = result.paths if allowed and result.allowed else []
    return Explanation(user, relation, object, allowed, paths, result.node, reasons, note)
