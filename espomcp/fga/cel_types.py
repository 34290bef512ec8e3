"""Static types of OpenFGA condition expressions (the checks cel-go makes when a model is written).

``infer(tree, params)`` walks a ``cel-python`` parse tree with the declared parameter types and
returns the expression's type, or raises ``CelTypeError`` with cel-go's wording (``found no matching
overload for '_<_' applied to '(int, double)'``). Like OpenFGA's CEL environment there are no
cross-type numeric comparisons. Anything it cannot type precisely is ``dyn`` and passes, so the
checker only rejects what cel-go rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lark

DYN = "dyn"
_SCALARS = {"BOOL": "bool", "STRING": "string", "INT": "int", "UINT": "uint", "DOUBLE": "double",
            "DURATION": "duration", "TIMESTAMP": "timestamp", "IPADDRESS": "IPAddress", "ANY": DYN}
_LITERALS = {"INT_LIT": "int", "UINT_LIT": "uint", "FLOAT_LIT": "double", "STRING_LIT": "string",
             "MLSTRING_LIT": "string", "BYTES_LIT": "bytes", "BOOL_LIT": "bool", "NULL_LIT": "null_type"}
_ORDERED = {"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"}
_OPERATORS = {"relation_lt": "_<_", "relation_le": "_<=_", "relation_gt": "_>_", "relation_ge": "_>=_",
              "relation_eq": "_==_", "relation_ne": "_!=_", "relation_in": "@in", "addition_add": "_+_",
              "addition_sub": "_-_", "multiplication_mul": "_*_", "multiplication_div": "_/_",
              "multiplication_mod": "_%_"}
_ARITHMETIC = {
    "_+_": {("int", "int"): "int", ("uint", "uint"): "uint", ("double", "double"): "double",
            ("string", "string"): "string", ("bytes", "bytes"): "bytes",
            ("timestamp", "duration"): "timestamp", ("duration", "timestamp"): "timestamp",
            ("duration", "duration"): "duration"},
    "_-_": {("int", "int"): "int", ("uint", "uint"): "uint", ("double", "double"): "double",
            ("timestamp", "timestamp"): "duration", ("timestamp", "duration"): "timestamp",
            ("duration", "duration"): "duration"},
    "_*_": {("int", "int"): "int", ("uint", "uint"): "uint", ("double", "double"): "double"},
    "_/_": {("int", "int"): "int", ("uint", "uint"): "uint", ("double", "double"): "double"},
    "_%_": {("int", "int"): "int", ("uint", "uint"): "uint"},
}
_CONVERSIONS = {"int": "int", "uint": "uint", "double": "double", "string": "string", "bytes": "bytes",
                "bool": "bool", "timestamp": "timestamp", "duration": "duration", "dyn": DYN,
                "ipaddress": "IPAddress", "type": DYN}
_STRING_METHODS = {"startsWith", "endsWith", "contains", "matches"}
_TIME_GETTERS = {"getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth",
                 "getHours", "getMilliseconds", "getMinutes", "getSeconds"}


class CelTypeError(ValueError):
    """The expression does not type-check (cel-go would refuse the model)."""


def type_of(type_ref: Mapping[str, Any]) -> str:
    """The CEL type of a ``ConditionParamTypeRef``."""
    name = str(type_ref.get("type_name", "")).removeprefix("TYPE_NAME_")
    generics = [type_of(g) for g in type_ref.get("generic_types") or []]
    if name == "LIST":
        return f"list({generics[0] if generics else DYN})"
    if name == "MAP":
        return f"map(string, {generics[0] if generics else DYN})"
    return _SCALARS.get(name, DYN)


def _element(container: str) -> str | None:
    if container.startswith("list("):
        return container[5:-1]
    if container.startswith("map("):
        return container[len("map(string, "):-1]
    return None


def _no_overload(function: str, *types: str, receiver: str | None = None) -> CelTypeError:
    args = f"({', '.join(types)})"
    return CelTypeError(f"found no matching overload for '{function}' applied to "
                        f"'{receiver + '.' if receiver else ''}{args}'")


class _Checker:
    def __init__(self, params: Mapping[str, str]) -> None:
        self.scopes: list[dict[str, str]] = [dict(params)]

    def lookup(self, name: str) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return DYN

    def visit(self, node: Any) -> str:
        if isinstance(node, lark.Token):
            if node.type == "UINT_LIT" and node.startswith("-"):  # cel-go reads -2u as -(2u)
                raise _no_overload("-_", "uint")
            return _LITERALS.get(node.type, DYN)
        kind = node.data
        children = [c for c in node.children if c is not None]
        if kind == "expr" and len(children) == 3:
            return self._ternary(*children)
        if kind in ("conditionalor", "conditionaland") and len(children) == 2:
            for child in children:
                found = self.visit(child)
                if found not in ("bool", DYN):
                    raise CelTypeError(f"expected type 'bool' but found '{found}'")
            return "bool"
        if kind in ("relation", "addition", "multiplication") and len(children) == 2:
            operator = children[0]
            return self._binary(_OPERATORS[operator.data], self.visit(operator.children[0]),
                                self.visit(children[1]))
        if kind == "unary" and len(children) == 2:
            return self._unary(children[0].data, self.visit(children[1]))
        if kind == "literal":
            return self.visit(children[0])
        if kind == "ident":
            return self.lookup(str(children[0]))
        if kind == "member_index":
            return self._index(self.visit(children[0]), self.visit(children[1]))
        if kind == "member_dot":
            target = self.visit(children[0])
            return (_element(target) or DYN) if target.startswith("map(") else DYN
        if kind == "member_dot_arg":
            return self._method(children)
        if kind == "ident_arg":
            args = children[1].children if len(children) > 1 else []
            return self._function(str(children[0]), args)
        if kind == "list_lit":
            types = {self.visit(e) for e in (children[0].children if children else [])}
            return f"list({types.pop()})" if len(types) == 1 else f"list({DYN})"
        if kind == "map_lit":
            for child in children:
                self.visit(child)
            return f"map(string, {DYN})"
        if len(children) == 1:
            return self.visit(children[0])
        for child in children:
            self.visit(child)
        return DYN

    def _ternary(self, condition: Any, yes: Any, no: Any) -> str:
        test, left, right = self.visit(condition), self.visit(yes), self.visit(no)
        if DYN in (left, right) or test == DYN:
            return left if right == DYN else right
        if test != "bool" or left != right:
            raise _no_overload("_?_:_", test, left, right)
        return left

    @staticmethod
    def _binary(function: str, left: str, right: str) -> str:
        if DYN in (left, right):
            return "bool" if function.startswith(("_<", "_>", "_=", "_!", "@")) else DYN
        if function in ("_==_", "_!=_"):
            if left != right:
                raise _no_overload(function, left, right)
            return "bool"
        if function == "@in":
            element = _element(right)
            key = "string" if right.startswith("map(") else element
            if element is None or key not in (left, DYN):
                raise _no_overload(function, left, right)
            return "bool"
        if function in ("_<_", "_<=_", "_>_", "_>=_"):
            if left != right or left not in _ORDERED:
                raise _no_overload(function, left, right)
            return "bool"
        if function == "_+_" and left == right and left.startswith("list("):
            return left
        result = _ARITHMETIC[function].get((left, right))
        if result is None:
            raise _no_overload(function, left, right)
        return result

    @staticmethod
    def _unary(operator: str, operand: str) -> str:
        if operand == DYN:
            return DYN
        if operator == "unary_not":
            if operand != "bool":
                raise _no_overload("!_", operand)
            return "bool"
        if operand not in ("int", "double"):
            raise _no_overload("-_", operand)
        return operand

    @staticmethod
    def _index(container: str, key: str) -> str:
        if container == DYN:
            return DYN
        element = _element(container)
        wanted = "int" if container.startswith("list(") else "string"
        if element is None or key not in (wanted, DYN):
            raise _no_overload("_[_]", container, key)
        return element

    def _function(self, name: str, args: list[Any]) -> str:
        if name == "has":
            return "bool"
        types = [self.visit(a) for a in args]
        if name == "size":
            if len(types) == 1 and not (types[0] in ("string", "bytes", DYN) or _element(types[0])):
                raise _no_overload("size", *types)
            return "int"
        if name == "ipaddress" and types not in (["string"], [DYN]):
            raise _no_overload("ipaddress", *types)
        return _CONVERSIONS.get(name, DYN)

    def _method(self, children: list[Any]) -> str:
        target = self.visit(children[0])
        name = str(children[1])
        args = children[2].children if len(children) > 2 else []
        if name in ("all", "exists", "exists_one", "map", "filter") and len(args) == 2:
            if target != DYN and _element(target) is None:
                raise CelTypeError(f"expression of type '{target}' cannot be range of a comprehension "
                                   "(must be list, map, or dynamic)")
            variable = _bare_name(args[0])
            bound = "string" if target.startswith("map(") else _element(target) or DYN  # maps range over keys
            self.scopes.append({variable: bound} if variable else {})
            try:
                body = self.visit(args[1])
            finally:
                self.scopes.pop()
            if name == "map":
                return f"list({body})"
            if name == "filter":
                return target if target.startswith("list(") else f"list({DYN})"
            return "bool"
        types = [self.visit(a) for a in args]
        if target == DYN:
            return DYN
        if name in _STRING_METHODS:
            if target != "string" or any(t not in ("string", DYN) for t in types):
                raise _no_overload(name, *types, receiver=target)
            return "bool"
        if name == "size":
            return self._function("size", children[:1])
        if name == "in_cidr":
            if target != "IPAddress" or types not in (["string"], [DYN]):
                raise _no_overload(name, *types, receiver=target)
            return "bool"
        if name in _TIME_GETTERS:
            return "int"
        return DYN


def _bare_name(node: Any) -> str | None:
    while isinstance(node, lark.Tree):
        if node.data == "ident":
            return str(node.children[0])
        children = [c for c in node.children if c is not None]
        if len(children) != 1:
            return None
        node = children[0]
    return None


def infer(tree: lark.Tree, params: Mapping[str, Mapping[str, Any]]) -> str:
    """The CEL type of a parsed expression given the condition's parameter type refs."""
    return _Checker({name: type_of(ref) for name, ref in params.items()}).visit(tree)
