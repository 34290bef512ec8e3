"""A compiled OpenFGA schema 1.1 model: rewrites as node trees, restrictions as lookup sets.

Compiled once per model (``TypeSystem(model)``) so requests never re-read the JSON. Also holds the
model-level facts the evaluators need: which relations sit on a cycle of the relation graph (and
whether that cycle passes an exclusion), and the tuple/request validation rules of OpenFGA
(invalid tuple 2027, type not found 2021, relation not found 2022, bad input 2000).
"""

from __future__ import annotations

from typing import Any

from espomcp.fga.conditions import param_converter
from espomcp.fga.errors import (
    INVALID_AUTHORIZATION_MODEL,
    INVALID_TUPLE,
    RELATION_NOT_FOUND,
    TYPE_NOT_FOUND,
    FgaError,
)
from espomcp.fga.tuples import TupleKey, parse_object, parse_user, user_form

THIS, COMPUTED, TTU, UNION, INTERSECTION, EXCLUSION = range(6)


class Rewrite:
    """One node of a relation's userset rewrite (``kind`` is one of the constants above)."""

    __slots__ = ("base", "children", "kind", "may_cycle", "relation", "risky", "subtract", "tupleset")

    def __init__(self, kind: int, *, relation: str = "", tupleset: str = "",
                 children: tuple[Rewrite, ...] = (), base: Rewrite | None = None,
                 subtract: Rewrite | None = None) -> None:
        self.kind = kind
        self.relation = relation
        self.tupleset = tupleset
        self.children = children
        self.base = base
        self.subtract = subtract
        self.risky = False  # exclusion whose subtract can meet a cycle (set algebra is inexact)
        self.may_cycle = False  # evaluating this subtree can meet a cycle of the relation graph


class RelationDef:
    """A relation of a type: its rewrite and its direct type restrictions.

    ``allowed`` holds ``(user form, condition name | None)`` pairs (forms as ``tuples.user_form``);
    ``usersets`` the ``(type, relation)`` restrictions; ``parent_types`` the plain types allowed
    when the relation is used as a tupleset.
    """

    __slots__ = ("allowed", "leaf", "name", "parent_types", "rewrite", "type", "usersets")

    def __init__(self, type_name: str, name: str, rewrite: Rewrite, restrictions: list[dict]) -> None:
        self.type = type_name
        self.name = name
        self.rewrite = rewrite
        allowed: set[tuple[str, str | None]] = set()
        usersets: list[tuple[str, str]] = []
        parents: list[str] = []
        for item in restrictions:
            kind = item.get("type", "")
            if item.get("relation"):
                form = f"{kind}#{item['relation']}"
                if (kind, item["relation"]) not in usersets:
                    usersets.append((kind, item["relation"]))
            elif "wildcard" in item:
                form = kind + ":*"
            else:
                form = kind
                if kind not in parents:
                    parents.append(kind)
            allowed.add((form, item.get("condition") or None))
        self.allowed = frozenset(allowed)
        self.usersets = tuple(usersets)
        self.parent_types = tuple(parents)
        self.leaf = rewrite.kind == THIS and not usersets  # direct tuples only, no recursion

    def allows(self, user: str, condition: str | None) -> bool:
        """Whether a tuple with this user and condition name matches a current restriction."""
        return (user_form(user), condition) in self.allowed


def _compile(raw: Any, where: str) -> Rewrite:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise FgaError(INVALID_AUTHORIZATION_MODEL, f"{where}: a userset needs exactly one rewrite")
    (key, value), = raw.items()
    value = value or {}
    if key == "this":
        return Rewrite(THIS)
    if key == "computedUserset":
        return Rewrite(COMPUTED, relation=value.get("relation", ""))
    if key == "tupleToUserset":
        return Rewrite(TTU, tupleset=value.get("tupleset", {}).get("relation", ""),
                       relation=value.get("computedUserset", {}).get("relation", ""))
    if key in ("union", "intersection"):
        children = tuple(_compile(child, where) for child in value.get("child", []))
        if not children:
            raise FgaError(INVALID_AUTHORIZATION_MODEL, f"{where}: empty {key}")
        return Rewrite(UNION if key == "union" else INTERSECTION, children=children)
    if key == "difference":
        return Rewrite(EXCLUSION, base=_compile(value.get("base"), where),
                       subtract=_compile(value.get("subtract"), where))
    raise FgaError(INVALID_AUTHORIZATION_MODEL, f"{where}: unknown rewrite {key!r}")


class TypeSystem:
    """The compiled model. ``relations[type][relation] -> RelationDef``."""

    def __init__(self, model: dict[str, Any]) -> None:
        if not isinstance(model, dict) or model.get("schema_version") != "1.1":
            raise FgaError(INVALID_AUTHORIZATION_MODEL, "only schema_version 1.1 models are supported")
        self.model = model
        self.conditions: dict[str, Any] = dict(model.get("conditions") or {})
        self.relations: dict[str, dict[str, RelationDef]] = {}
        for typedef in model.get("type_definitions") or []:
            name = typedef.get("type")
            if not isinstance(name, str) or not name or name in self.relations:
                raise FgaError(INVALID_AUTHORIZATION_MODEL, f"invalid or duplicate type {name!r}")
            meta = ((typedef.get("metadata") or {}).get("relations")) or {}
            rels: dict[str, RelationDef] = {}
            for rel, raw in (typedef.get("relations") or {}).items():
                restrictions = (meta.get(rel) or {}).get("directly_related_user_types") or []
                rels[rel] = RelationDef(name, rel, _compile(raw, f"{name}#{rel}"), restrictions)
            self.relations[name] = rels
        self._check_references()
        self.edges = {node: self._edges(node) for node in self._nodes()}
        self.scc: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}
        self.cyclic = self._cycles()
        self._mark_risky_exclusions()
        self.recursive = frozenset(node for node in self.cyclic if self._simple_recursive(node))

    # -- structure -------------------------------------------------------------------------

    def _nodes(self) -> list[tuple[str, str]]:
        return [(t, r) for t, rels in self.relations.items() for r in rels]

    def _check_references(self) -> None:
        for type_name, rels in self.relations.items():
            for rel, rdef in rels.items():
                for form, cond in rdef.allowed:
                    kind = form.split("#")[0].split(":")[0]
                    target = form.split("#")[1] if "#" in form else None
                    if kind not in self.relations or (target and target not in self.relations[kind]):
                        raise FgaError(INVALID_AUTHORIZATION_MODEL,
                                       f"{type_name}#{rel}: unknown type restriction {form!r}")
                    if cond and cond not in self.conditions:
                        raise FgaError(INVALID_AUTHORIZATION_MODEL,
                                       f"{type_name}#{rel}: unknown condition {cond!r}")
                for node in self.walk(rdef.rewrite):
                    if node.kind == COMPUTED and node.relation not in rels:
                        raise FgaError(INVALID_AUTHORIZATION_MODEL,
                                       f"{type_name}#{rel}: unknown relation {node.relation!r}")
                    if node.kind == TTU and node.tupleset not in rels:
                        raise FgaError(INVALID_AUTHORIZATION_MODEL,
                                       f"{type_name}#{rel}: unknown tupleset {node.tupleset!r}")

    @staticmethod
    def walk(node: Rewrite) -> list[Rewrite]:
        """All nodes of a rewrite tree, parents first."""
        out = [node]
        for child in (*node.children, *(n for n in (node.base, node.subtract) if n is not None)):
            out.extend(TypeSystem.walk(child))
        return out

    def _edges(self, node: tuple[str, str], root: Rewrite | None = None) -> set[tuple[str, str]]:
        """Relations that ``node`` (or one subtree ``root`` of its rewrite) evaluates directly."""
        type_name, rel = node
        rdef = self.relations[type_name][rel]
        out: set[tuple[str, str]] = set()
        for item in self.walk(root or rdef.rewrite):
            if item.kind == THIS:
                out.update(rdef.usersets)
            elif item.kind == COMPUTED:
                out.add((type_name, item.relation))
            elif item.kind == TTU:
                out.update((p, item.relation) for p in self.ttu_parents(type_name, item))
        return out

    def _mark_risky_exclusions(self) -> None:
        """Mark rewrite nodes that can meet a cycle of the relation graph (``may_cycle``) and the
        exclusions whose subtract branch can (``risky``): OpenFGA then answers false whatever the
        set algebra says, so set-based evaluators verify those with Check."""
        for node in self.edges:
            rdef = self.relations[node[0]][node[1]]
            for item in self.walk(rdef.rewrite):
                seen: set[tuple[str, str]] = set()
                todo = list(self._edges(node, item))
                while todo and not item.may_cycle:
                    current = todo.pop()
                    if current in seen:
                        continue
                    seen.add(current)
                    item.may_cycle = current in self.cyclic
                    todo.extend(self.edges[current])
            for item in self.walk(rdef.rewrite):
                item.risky = item.kind == EXCLUSION and item.subtract is not None and item.subtract.may_cycle

    def _cycles(self) -> frozenset:
        """Tarjan SCCs: the relations that lie on a cycle of the relation graph (fills ``scc``)."""
        index: dict = {}
        low: dict = {}
        stack: list = []
        on_stack: set = set()
        cyclic: set = set()
        counter = [0]

        def visit(root: tuple[str, str]) -> None:
            work = [(root, iter(sorted(self.edges[root])))]
            index[root] = low[root] = counter[0]
            counter[0] += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, it = work[-1]
                advanced = False
                for nxt in it:
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter[0]
                        counter[0] += 1
                        stack.append(nxt)
                        on_stack.add(nxt)
                        work.append((nxt, iter(sorted(self.edges[nxt]))))
                        advanced = True
                        break
                    if nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        item = stack.pop()
                        on_stack.discard(item)
                        component.add(item)
                        if item == node:
                            break
                    if len(component) > 1 or node in self.edges[node]:
                        cyclic.update(component)
                        for member in component:
                            self.scc[member] = frozenset(component)

        for node in sorted(self.edges):
            if node not in index:
                visit(node)
        return frozenset(cyclic)

    def _simple_recursive(self, node: tuple[str, str]) -> bool:
        """OpenFGA resolves ``r: [user, t#r]`` and ``r: [user] or r from parent`` (the relation's only
        cycle is itself, every other branch is a plain direct relation) iteratively, so a cycle met
        there is just "false" — it does not poison an enclosing exclusion the way other cycles do."""
        if self.scc.get(node) != frozenset([node]):
            return False
        type_name, rel = node
        rdef = self.relations[type_name][rel]

        def plain(item: Rewrite) -> bool:
            if item.kind == THIS:
                return not rdef.usersets
            if item.kind == COMPUTED:
                target = self.relations[type_name][item.relation]
                return target.rewrite.kind == THIS and not target.usersets
            return False

        root = rdef.rewrite
        if root.kind == THIS:
            return rdef.usersets == (node,)
        if root.kind != UNION:
            return False
        recursive = [c for c in root.children if c.kind == TTU and c.relation == rel
                     and type_name in self.ttu_parents(type_name, c)]
        return bool(recursive) and all(c in recursive or plain(c) for c in root.children)

    def ttu_parents(self, type_name: str, node: Rewrite) -> tuple[str, ...]:
        """Parent types of a tuple-to-userset that define the computed relation."""
        tupleset = self.relations[type_name][node.tupleset]
        return tuple(p for p in tupleset.parent_types if node.relation in self.relations.get(p, {}))

    # -- lookups and validation ------------------------------------------------------------

    def relation(self, type_name: str, relation: str) -> RelationDef:
        """The relation definition; unknown type → 2021, unknown relation → 2022."""
        rels = self.relations.get(type_name)
        if rels is None:
            raise FgaError(TYPE_NOT_FOUND, f"type {type_name!r} not found")
        rdef = rels.get(relation)
        if rdef is None:
            raise FgaError(RELATION_NOT_FOUND, f"relation {type_name}#{relation} not found")
        return rdef

    def has_relation(self, type_name: str, relation: str) -> bool:
        return relation in self.relations.get(type_name, ())

    def validate_request(self, user: str, relation: str, obj: str | None,
                         type_name: str | None = None) -> RelationDef:
        """Validate a query's user, relation and object (or object type)."""
        if obj is not None:
            type_name, _ = parse_object(obj)
        rdef = self.relation(type_name or "", relation)
        self.validate_user(user)
        return rdef

    def validate_user(self, user: str) -> None:
        """A query user must be well formed and name model types/relations."""
        kind, _, rel = parse_user(user)
        if rel is None:
            self.relation_type(kind)
        else:
            self.relation(kind, rel)

    def relation_type(self, kind: str) -> None:
        if kind not in self.relations:
            raise FgaError(TYPE_NOT_FOUND, f"type {kind!r} not found")

    def validate_tuple(self, tk: TupleKey) -> None:
        """OpenFGA write validation: raises FgaError(2027) when the tuple is not writable."""
        try:
            type_name, _ = parse_object(tk.object)
            kind, _, rel = parse_user(tk.user)
        except FgaError as exc:
            raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: {exc.message}") from None
        rdef = self.relations.get(type_name, {}).get(tk.relation)
        if rdef is None:
            raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: relation {type_name}#{tk.relation} "
                                          "not found")
        if rel is not None and tk.user == f"{tk.object}#{tk.relation}":
            raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: the tuple is implicit")
        cond = tk.condition.name if tk.condition else None
        if cond is not None and cond not in self.conditions:
            raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: condition {cond!r} not found")
        if not rdef.allows(tk.user, cond):
            with_cond = f" with condition {cond!r}" if cond else ""
            raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: {kind} user{with_cond} is not allowed "
                                          f"on {type_name}#{tk.relation}")
        if cond is not None and tk.condition is not None and tk.condition.context:
            self._validate_context(tk, cond, tk.condition.context)

    def _validate_context(self, tk: TupleKey, cond: str, context: dict[str, Any]) -> None:
        """Every stored context value must be a declared parameter of the right type (as OpenFGA)."""
        parameters = self.conditions[cond].get("parameters") or {}
        for key, value in context.items():
            if key not in parameters:
                raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: found invalid context parameter: {key}")
            try:
                param_converter(parameters[key])(value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise FgaError(INVALID_TUPLE, f"invalid tuple {tk}: failed to convert context parameter "
                                              f"{key!r} of condition {cond!r}: {exc}") from None
