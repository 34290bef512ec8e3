"""Authorization-model validation as OpenFGA applies it on WriteAuthorizationModel (error 2056).

Two layers, both from OpenFGA v1.x: the request's protobuf rules (name patterns and lengths) and
``typesystem.NewAndValidate`` (schema 1.1, no duplicate types, no ``self``/``this``, for every relation
in sorted order: a well-formed rewrite, valid type restrictions — a tupleset relation may list only
plain types —, at least one entrypoint, no computed-userset cycle; then every condition compiles to a
boolean CEL expression). Messages follow OpenFGA's where practical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from espomcp.fga.conditions import ConditionEvaluator
from espomcp.fga.errors import INVALID_AUTHORIZATION_MODEL, FgaError

_TYPE_NAME = re.compile(r"[^:#@\s]{1,254}")
_RELATION_NAME = re.compile(r"[^:#@\s]{1,50}")
_CONDITION_NAME = re.compile(r"[^:#@\s]{1,50}")
MAX_EXPRESSION_BYTES = 512
MAX_CONDITIONS = 25
_REWRITE_KINDS = ("this", "computedUserset", "tupleToUserset", "union", "intersection", "difference")


def _invalid(message: str) -> FgaError:
    return FgaError(INVALID_AUTHORIZATION_MODEL, message)


def _ref_string(ref: Mapping[str, Any]) -> str:
    return f"{ref['type']}#{ref['relation']}" if ref.get("relation") else ref["type"]


class _Model:
    """The parts of a model the rules need: relations, their restrictions, the conditions."""

    def __init__(self, model: Any) -> None:
        if not isinstance(model, Mapping):
            raise _invalid("the authorization model must be a JSON object")
        if model.get("schema_version") != "1.1":
            raise _invalid("invalid schema version")
        type_defs = model.get("type_definitions")
        if not isinstance(type_defs, list) or not type_defs:
            raise _invalid("type_definitions must be a non-empty list")
        self.rewrites: dict[str, dict[str, dict[str, Any]]] = {}
        self.restrictions: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for index, type_def in enumerate(type_defs):
            self._add_type(index, type_def)
        conditions = model.get("conditions")
        conditions = {} if conditions is None else conditions
        if not isinstance(conditions, Mapping):
            raise _invalid("conditions must be an object")
        if len(conditions) > MAX_CONDITIONS:
            raise _invalid(f"a model may define at most {MAX_CONDITIONS} conditions")
        for name, condition in conditions.items():
            if not isinstance(name, str) or not _CONDITION_NAME.fullmatch(name):
                raise _invalid(f"invalid condition name {name!r}")
            expression = condition.get("expression") if isinstance(condition, Mapping) else None
            if isinstance(expression, str) and len(expression.encode()) > MAX_EXPRESSION_BYTES:
                raise _invalid(f"condition '{name}': the expression must be at most "
                               f"{MAX_EXPRESSION_BYTES} bytes")
        self.conditions = conditions

    def _add_type(self, index: int, type_def: Any) -> None:
        if not isinstance(type_def, Mapping):
            raise _invalid(f"type_definitions[{index}] must be an object")
        name = type_def.get("type")
        if not isinstance(name, str) or not name:
            raise _invalid("the type name of a type definition cannot be an empty string")
        if not _TYPE_NAME.fullmatch(name):
            raise _invalid(f"invalid type name '{name}': it must match ^[^:#@\\s]{{1,254}}$")
        if name in self.rewrites:
            raise _invalid("an authorization model cannot contain duplicate types")
        relations = type_def.get("relations") or {}
        metadata = type_def.get("metadata") or {}
        meta_relations = metadata.get("relations") if isinstance(metadata, Mapping) else None
        if not isinstance(relations, Mapping) or not isinstance(meta_relations or {}, Mapping):
            raise _invalid(f"type '{name}': relations and metadata.relations must be objects")
        self.rewrites[name] = {}
        self.restrictions[name] = {}
        for relation, rewrite in relations.items():
            if not isinstance(relation, str) or not _RELATION_NAME.fullmatch(relation):
                raise _invalid(f"type '{name}' has an invalid relation name {relation!r}: it must match "
                               "^[^:#@\\s]{1,50}$")
            _check_shape(name, relation, rewrite)
            self.rewrites[name][relation] = rewrite
            relation_meta = (meta_relations or {}).get(relation) or {}
            refs = relation_meta.get("directly_related_user_types") or [] if isinstance(
                relation_meta, Mapping) else None
            if not isinstance(refs, list):
                raise _invalid(f"'{name}#{relation}': directly_related_user_types must be a list")
            self.restrictions[name][relation] = [_check_ref(name, relation, ref) for ref in refs]

    def has(self, type_name: str, relation: str) -> bool:
        return relation in self.rewrites.get(type_name, {})


def _check_ref(type_name: str, relation: str, ref: Any) -> dict[str, Any]:
    where = f"a type restriction of '{type_name}#{relation}'"
    if not isinstance(ref, Mapping) or not isinstance(ref.get("type"), str) or not ref["type"]:
        raise _invalid(f"{where} needs a type")
    if not _TYPE_NAME.fullmatch(ref["type"]):
        raise _invalid(f"{where} has an invalid type '{ref['type']}'")
    if "relation" in ref and "wildcard" in ref and ref.get("relation"):
        raise _invalid(f"{where} cannot be both a userset and a wildcard")
    rel = ref.get("relation")
    if rel is not None and (not isinstance(rel, str) or (rel and not _RELATION_NAME.fullmatch(rel))):
        raise _invalid(f"{where} has an invalid relation {rel!r}")
    condition = ref.get("condition")
    named = isinstance(condition, str) and _CONDITION_NAME.fullmatch(condition)
    if condition not in (None, "") and not named:
        raise _invalid(f"{where} has an invalid condition name {condition!r}")
    if "wildcard" in ref and not isinstance(ref["wildcard"], Mapping):
        raise _invalid(f"{where}: wildcard must be an object")
    return dict(ref)


def _check_shape(type_name: str, relation: str, rewrite: Any) -> None:
    """A rewrite is exactly one known kind with well-formed operands."""
    def bad() -> FgaError:
        return _invalid(f"the definition of relation '{relation}' in object type '{type_name}' is invalid: "
                        "invalid userset rewrite definition")

    if not isinstance(rewrite, Mapping):
        raise bad()
    kinds = [k for k in _REWRITE_KINDS if rewrite.get(k) is not None]
    if len(kinds) != 1:
        raise bad()
    body = rewrite[kinds[0]]
    if kinds[0] == "computedUserset":
        if not isinstance(body, Mapping) or not isinstance(body.get("relation"), str):
            raise bad()
    elif kinds[0] == "tupleToUserset":
        if not isinstance(body, Mapping):
            raise bad()
        for part in ("tupleset", "computedUserset"):
            if not isinstance(body.get(part), Mapping) or not isinstance(body[part].get("relation"), str):
                raise bad()
    elif kinds[0] in ("union", "intersection"):
        children = body.get("child") if isinstance(body, Mapping) else None
        if not isinstance(children, list) or not children:
            raise bad()
        for child in children:
            _check_shape(type_name, relation, child)
    elif kinds[0] == "difference":
        if not isinstance(body, Mapping) or "base" not in body or "subtract" not in body:
            raise bad()
        _check_shape(type_name, relation, body["base"])
        _check_shape(type_name, relation, body["subtract"])


def _children(rewrite: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "union" in rewrite:
        return rewrite["union"]["child"]
    if "intersection" in rewrite:
        return rewrite["intersection"]["child"]
    if "difference" in rewrite:
        return [rewrite["difference"]["base"], rewrite["difference"]["subtract"]]
    return []


def _tuplesets(rewrite: Mapping[str, Any]) -> list[str]:
    if "tupleToUserset" in rewrite:
        return [rewrite["tupleToUserset"]["tupleset"]["relation"]]
    return [name for child in _children(rewrite) for name in _tuplesets(child)]


def _contains_this(rewrite: Mapping[str, Any]) -> bool:
    return "this" in rewrite or any(_contains_this(c) for c in _children(rewrite))


def _check_rewrite(model: _Model, type_name: str, relation: str, rewrite: Mapping[str, Any]) -> None:
    """``isUsersetRewriteValid``."""
    if "computedUserset" in rewrite:
        target = rewrite["computedUserset"]["relation"]
        if target == relation:
            raise _invalid(f"the definition of relation '{relation}' in object type '{type_name}' is "
                           "invalid: invalid userset rewrite definition")
        if not model.has(type_name, target):
            raise _invalid(f"'{type_name}#{target}' relation is undefined")
    elif "tupleToUserset" in rewrite:
        tupleset = rewrite["tupleToUserset"]["tupleset"]["relation"]
        if not model.has(type_name, tupleset):
            raise _invalid(f"'{type_name}#{tupleset}' relation is undefined")
        if "this" not in model.rewrites[type_name][tupleset]:
            raise _invalid(f"the '{type_name}#{tupleset}' relation is referenced in at least one tupleset "
                           "and thus must be a direct relation")
        computed = rewrite["tupleToUserset"]["computedUserset"]["relation"]
        refs = model.restrictions[type_name][tupleset]
        if not any(model.has(ref["type"], computed) for ref in refs):
            types = " ".join(f'type:"{ref["type"]}"' for ref in refs)
            raise _invalid(f"undefined relation: {computed} does not appear as a relation in any of the "
                           f"directly related user types [{types}]")
    for child in _children(rewrite):
        _check_rewrite(model, type_name, relation, child)


def _check_restrictions(model: _Model, type_name: str, relation: str) -> None:
    """``validateTypeRestrictions``."""
    refs = model.restrictions[type_name][relation]
    assignable = _contains_this(model.rewrites[type_name][relation])
    if assignable and not refs:
        raise _invalid(f"the assignable relation '{relation}' in object type '{type_name}' must contain at "
                       "least one relation type")
    if not assignable and refs:
        raise _invalid(f"the non-assignable relation '{type_name}' in object type '{relation}' should not "
                       "contain a relation type")
    is_tupleset = any(relation in _tuplesets(rw) for rw in model.rewrites[type_name].values())
    for ref in refs:
        not_valid = _invalid(f"the relation type '{_ref_string(ref)}' on '{relation}' in object type "
                             f"'{type_name}' is not valid")
        if ref["type"] not in model.rewrites:
            raise not_valid
        if ref.get("relation") or "wildcard" in ref:
            if is_tupleset:
                raise not_valid
            if ref.get("relation") and not model.has(ref["type"], ref["relation"]):
                raise not_valid
        if ref.get("condition") and ref["condition"] not in model.conditions:
            raise _invalid(f"condition {ref['condition']} is undefined for relation {relation}")


def _lookup(model: _Model, type_name: str, relation: str) -> dict[str, Any]:
    if not model.has(type_name, relation):
        raise _invalid(f"undefined type definition for '{type_name}#{relation}'")
    return model.rewrites[type_name][relation]


def _has_entrypoints(model: _Model, type_name: str, relation: str, rewrite: Mapping[str, Any],
                     visited: dict[str, dict[str, bool]]) -> tuple[bool, bool]:
    """OpenFGA's ``hasEntrypoints``: ``(has_entrypoint, loop)``.

    ``visited`` maps type -> relation -> "has a direct entrypoint"; like the Go original it is copied
    shallowly, so the per-type maps are shared along the walk (this decides some borderline models).
    """
    seen = dict(visited)
    if type_name in seen:
        seen[type_name][relation] = False
    else:
        seen[type_name] = {relation: False}
    if "this" in rewrite:
        for ref in model.restrictions[type_name][relation]:
            if not ref.get("relation") or "wildcard" in ref:
                seen[type_name][relation] = True
                return True, False
            target = _lookup(model, ref["type"], ref["relation"])
            if ref["relation"] in seen.get(ref["type"], {}):
                continue
            if _has_entrypoints(model, ref["type"], ref["relation"], target, seen)[0]:
                return True, False
        return False, False
    if "computedUserset" in rewrite:
        target = rewrite["computedUserset"]["relation"]
        target_rewrite = _lookup(model, type_name, target)
        if target in seen.get(type_name, {}):
            return seen[type_name][target], True
        return _has_entrypoints(model, type_name, target, target_rewrite, seen)
    if "tupleToUserset" in rewrite:
        tupleset = rewrite["tupleToUserset"]["tupleset"]["relation"]
        computed = rewrite["tupleToUserset"]["computedUserset"]["relation"]
        _lookup(model, type_name, tupleset)
        for ref in model.restrictions[type_name][tupleset]:
            if not model.has(ref["type"], computed):
                continue
            if computed in seen.get(ref["type"], {}):
                if seen[ref["type"]][computed]:
                    return True, False
                continue
            target = model.rewrites[ref["type"]][computed]
            if _has_entrypoints(model, ref["type"], computed, target, seen)[0]:
                return True, False
        return False, False
    if "union" in rewrite:
        loop = False
        for child in rewrite["union"]["child"]:
            found, child_loop = _has_entrypoints(model, type_name, relation, child, visited)
            if found:
                return True, False
            loop = loop or child_loop
        return False, loop
    if "intersection" in rewrite:
        for child in rewrite["intersection"]["child"]:
            found, child_loop = _has_entrypoints(model, type_name, relation, child, visited)
            if not found:
                return False, child_loop
        return True, False
    for part in (rewrite["difference"]["base"], rewrite["difference"]["subtract"]):
        found, loop = _has_entrypoints(model, type_name, relation, part, visited)
        if not found:
            return False, loop
    return True, False


def _has_cycle(model: _Model, type_name: str, relation: str, rewrite: Mapping[str, Any],
               visited: set[str]) -> bool:
    """``hasCycle``: a computed-userset loop on the same type."""
    visited.add(f"{type_name}#{relation}")
    copy = set(visited)
    if "computedUserset" in rewrite:
        target = rewrite["computedUserset"]["relation"]
        if f"{type_name}#{target}" in visited:
            return True
        if not model.has(type_name, target):
            raise _invalid(f"'{type_name}#{target}' relation is undefined")
        return _has_cycle(model, type_name, target, model.rewrites[type_name][target], copy)
    return any(_has_cycle(model, type_name, relation, child, copy) for child in _children(rewrite))


def validate_model(model: Any) -> None:
    """Raise ``FgaError(2056)`` unless OpenFGA would accept ``model`` (JSON dict) as written."""
    parsed = _Model(model)
    for type_name in parsed.rewrites:
        if type_name in ("self", "this"):
            raise _invalid(f"the definition of type '{type_name}' is invalid")
        for relation in parsed.rewrites[type_name]:
            if relation in ("self", "this"):
                raise _invalid(f"the definition of relation '{relation}' in object type '{type_name}' is "
                               "invalid: self and this are reserved keywords")
    for type_name in sorted(parsed.rewrites):
        for relation in sorted(parsed.rewrites[type_name]):
            rewrite = parsed.rewrites[type_name][relation]
            _check_rewrite(parsed, type_name, relation, rewrite)
            _check_restrictions(parsed, type_name, relation)
            found, loop = _has_entrypoints(parsed, type_name, relation, rewrite, {})
            if not found:
                cause = "potential loop" if loop else "no entrypoints defined"
                raise _invalid(f"the definition of relation '{relation}' in object type '{type_name}' is "
                               f"invalid: {cause}")
            if _has_cycle(parsed, type_name, relation, rewrite, set()):
                raise _invalid(f"the definition of relation '{relation}' in object type '{type_name}' is "
                               "invalid: an authorization model cannot contain a cycle")
    for key, condition in parsed.conditions.items():
        if isinstance(condition, Mapping) and condition.get("name") != key:
            raise _invalid(f"condition key '{key}' does not match condition name '{condition.get('name')}'")
    ConditionEvaluator.validate(parsed.conditions)
