"""OpenFGA conditions: typed parameters and CEL expressions (openfga.md §3).

``ConditionEvaluator(model["conditions"])`` compiles every condition of a model once; ``evaluate(name,
tuple_context, request_context)`` merges the two contexts (the tuple's value wins on a key clash),
converts the declared parameters like OpenFGA's ``internal/condition/types`` (undeclared keys are
ignored) and runs the expression through ``cel-python``. ``ipaddress(x)`` and ``x.in_cidr(cidr)`` are
the OpenFGA CEL extensions. Errors are ``FgaError(2000)``: any declared parameter missing from the
merged context (even if the expression could decide without it, as OpenFGA does), a value of the
wrong type, a non-finite double, a runtime failure or a non-boolean result. Results are memoised
per (condition, relevant context values): evaluation sits on the check hot path.
"""

from __future__ import annotations

import datetime as dt
import ipaddress as ipa
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError

from espomcp.fga.cel_types import DYN, CelTypeError, infer
from espomcp.fga.errors import INVALID_AUTHORIZATION_MODEL, VALIDATION_ERROR, FgaError

TYPE_NAMES = ("BOOL", "STRING", "INT", "UINT", "DOUBLE", "DURATION", "TIMESTAMP", "LIST", "MAP",
              "ANY", "IPADDRESS")
_CACHE_LIMIT = 8192
_INT64 = (-(2**63), 2**63 - 1)
# CEL functions and methods the evaluator knows (cel-spec standard definitions + OpenFGA extensions).
_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
    "bytes", "bool", "duration", "timestamp", "type", "dyn", "has", "ipaddress", "in_cidr",
    "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth",
    "getHours", "getMilliseconds", "getMinutes", "getSeconds", "all", "exists", "exists_one",
    "map", "filter",
})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Type names usable as values (``type(x) == int``).
_TYPE_IDENTS = frozenset({"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type",
                          "type", "dyn"})
_PROTO_NAMES = {"timestamp": "google.protobuf.Timestamp", "duration": "google.protobuf.Duration"}


class IPAddress:
    """The OpenFGA ``ipaddress`` CEL type: an IPv4/IPv6 address with ``in_cidr``."""

    __slots__ = ("address",)

    def __init__(self, address: ipa.IPv4Address | ipa.IPv6Address) -> None:
        self.address = address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPAddress) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)

    def __repr__(self) -> str:
        return f"ipaddress({str(self.address)!r})"


def _parse_ip(value: str) -> IPAddress:
    try:
        return IPAddress(ipa.ip_address(value))
    except ValueError:
        raise ValueError(f"expected a well-formed IP address, but found: '{value}'") from None


def _cel_ipaddress(value: Any) -> IPAddress:
    if isinstance(value, IPAddress):
        return value
    if not isinstance(value, str):
        raise TypeError(f"ipaddress() expects a string, got {type(value).__name__}")
    return _parse_ip(str(value))


def _cel_in_cidr(address: Any, cidr: Any) -> celtypes.BoolType:
    if not isinstance(address, IPAddress) or not isinstance(cidr, str):
        raise TypeError("in_cidr expects an ipaddress receiver and a CIDR string")
    try:
        network = ipa.ip_network(str(cidr), strict=False)
    except ValueError:
        raise ValueError(f"'{cidr}' is not a valid CIDR") from None
    return celtypes.BoolType(address.address in network)


_CEL_FUNCTIONS: dict[str, Callable[..., Any]] = {"ipaddress": _cel_ipaddress, "in_cidr": _cel_in_cidr}

# ---------------------------------------------------------------- parameter conversion (types.go)

_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go ``time.ParseDuration`` string (``"1h30m"``, ``"-1.5s"``, ``"0"``)."""
    sign, rest = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if rest == "0":
        return 0
    total, pos = 0.0, 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if not match:
            raise ValueError(f"expected a valid duration string, but found: '{text}'")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not rest:
        raise ValueError(f"expected a valid duration string, but found: '{text}'")
    return sign * round(total)


def parse_rfc3339(text: str) -> dt.datetime:
    """A timezone-aware datetime from an RFC 3339 timestamp (as Go's ``time.RFC3339`` accepts)."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"expected RFC 3339 formatted timestamp string, but found '{text}'")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or ".0")[1:7].ljust(6, "0"))
    zone = match.group(8)
    tz = dt.UTC if zone == "Z" else dt.timezone(
        (1 if zone[0] == "+" else -1) * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        raise ValueError(f"expected RFC 3339 formatted timestamp string, but found '{text}'") from None


def _numeric(value: Any, kind: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a {kind} value, but found '{type(value).__name__}'")
    if isinstance(value, str):
        try:
            number: float | int = int(value) if re.fullmatch(r"[+-]?\d+", value) else float(value)
        except ValueError:
            raise ValueError(f"expected a {kind} value, but found invalid string value '{value}'") from None
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"expected a finite {kind} value, but found '{value}'")
    if kind == "double":
        return celtypes.DoubleType(float(number))
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"expected an {kind} value, but found numeric value '{value}'")
        number = int(number)
    if kind == "uint":
        if number < 0:
            raise ValueError(f"expected a uint value, but found int64 value '{value}'")
        if number > 2**64 - 1:
            raise ValueError(f"uint value '{value}' is out of range")
        return celtypes.UintType(number)
    if not _INT64[0] <= number <= _INT64[1]:
        raise ValueError(f"int value '{value}' is out of range")
    return celtypes.IntType(number)


def _to_cel_any(value: Any) -> Any:
    """A JSON value as CEL sees a ``google.protobuf.Value`` (numbers are doubles)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            raise ValueError(f"expected a finite number, but found '{value}'")
        return celtypes.DoubleType(float(value))
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([_to_cel_any(v) for v in value])
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(str(k)): _to_cel_any(v) for k, v in value.items()})
    raise ValueError(f"unsupported context value of type '{type(value).__name__}'")


def _scalar_converter(type_name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type_name == "BOOL":
            if not isinstance(value, bool):
                raise ValueError(f"expected type value 'bool', but found '{type(value).__name__}'")
            return celtypes.BoolType(value)
        if type_name == "STRING":
            if not isinstance(value, str):
                raise ValueError(f"expected type value 'string', but found '{type(value).__name__}'")
            return celtypes.StringType(value)
        if type_name in ("INT", "UINT", "DOUBLE"):
            return _numeric(value, type_name.lower())
        if type_name == "DURATION":
            if not isinstance(value, str):
                raise ValueError(f"expected a duration string, but found: '{value}'")
            nanos = parse_go_duration(value)
            return celtypes.DurationType(dt.timedelta(microseconds=nanos / 1000))
        if type_name == "TIMESTAMP":
            if not isinstance(value, str):
                raise ValueError(f"expected RFC 3339 formatted timestamp string, but found: '{value}'")
            return celtypes.TimestampType(parse_rfc3339(value))
        if type_name == "IPADDRESS":
            if not isinstance(value, str):
                raise ValueError(f"expected an ipaddress string, but found: '{value}'")
            return _parse_ip(value)
        return _to_cel_any(value)
    return convert


def param_converter(type_ref: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The converter of one ``ConditionParamTypeRef`` (``{"type_name": …, "generic_types": […]}``)."""
    type_name = _type_name(type_ref)
    generics = type_ref.get("generic_types") or []
    if type_name in ("LIST", "MAP"):
        if len(generics) != 1:
            raise ValueError(f"{type_name.lower()} parameters need exactly one generic type")
        inner = param_converter(generics[0])
        if type_name == "LIST":
            def convert_list(value: Any) -> Any:
                if not isinstance(value, list):
                    raise ValueError(f"expected a list, but found '{type(value).__name__}'")
                return celtypes.ListType([inner(v) for v in value])
            return convert_list

        def convert_map(value: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError(f"expected a map, but found '{type(value).__name__}'")
            return celtypes.MapType({celtypes.StringType(str(k)): inner(v) for k, v in value.items()})
        return convert_map
    if generics:
        raise ValueError(f"type {type_name.lower()} takes no generic types")
    return _scalar_converter(type_name)


def _type_name(type_ref: Mapping[str, Any]) -> str:
    raw = type_ref.get("type_name") if isinstance(type_ref, Mapping) else None
    name = raw.removeprefix("TYPE_NAME_") if isinstance(raw, str) else ""
    if name not in TYPE_NAMES:
        raise ValueError(f"unknown parameter type {raw!r}")
    return name


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return ("{", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("[", tuple(_freeze(v) for v in value))
    return (type(value).__name__, value)


# ---------------------------------------------------------------- compilation

class _Compiled:
    __slots__ = ("converters", "name", "program")

    def __init__(self, name: str, converters: dict[str, Callable[[Any], Any]], program: Any) -> None:
        self.name = name
        self.converters = converters
        self.program = program


def _identifier_problems(tree: lark.Tree, params: set[str]) -> list[str]:
    """Undeclared variables and unknown functions referenced by a parsed expression."""
    problems: list[str] = []

    def walk(node: Any, bound: frozenset[str]) -> None:
        if not isinstance(node, lark.Tree):
            return
        if node.data == "ident":
            name = str(node.children[0])
            if name not in params and name not in bound and name not in _TYPE_IDENTS:
                problems.append(f"undeclared reference to '{name}'")
            return
        if node.data in ("ident_arg", "dot_ident_arg") and str(node.children[0]) not in _FUNCTIONS:
            problems.append(f"undeclared reference to '{node.children[0]}'")
        if node.data == "member_dot_arg":
            method = str(node.children[1])
            if method not in _FUNCTIONS:
                problems.append(f"undeclared reference to '{method}'")
            if method in _MACROS and len(node.children) > 2 and isinstance(node.children[2], lark.Tree):
                walk(node.children[0], bound)
                args = node.children[2].children
                variable = _bare_ident(args[0]) if args else None
                inner = bound | {variable} if variable else bound
                for arg in args[1:]:
                    walk(arg, inner)
                return
        for child in node.children:
            walk(child, bound)

    walk(tree, frozenset())
    return problems


def _bare_ident(node: Any) -> str | None:
    while isinstance(node, lark.Tree):
        if node.data == "ident":
            return str(node.children[0])
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


def _sample_value(type_ref: Mapping[str, Any]) -> Any:
    name = _type_name(type_ref)
    samples: dict[str, Any] = {
        "BOOL": celtypes.BoolType(False), "STRING": celtypes.StringType(""), "INT": celtypes.IntType(0),
        "UINT": celtypes.UintType(0), "DOUBLE": celtypes.DoubleType(0.0),
        "DURATION": celtypes.DurationType(0), "TIMESTAMP": celtypes.TimestampType("1970-01-01T00:00:00Z"),
        "IPADDRESS": IPAddress(ipa.ip_address("0.0.0.0")), "LIST": celtypes.ListType([]),
        "MAP": celtypes.MapType({}), "ANY": celtypes.DoubleType(0.0),
    }
    return samples[name]


_CEL_TYPE_NAMES = {"IntType": "int", "UintType": "uint", "DoubleType": "double", "StringType": "string",
                   "BytesType": "bytes", "ListType": "list", "MapType": "map", "NoneType": "null_type",
                   "TimestampType": "google.protobuf.Timestamp", "DurationType": "google.protobuf.Duration",
                   "IPAddress": "ipaddress"}
_ENV_LOCK = threading.Lock()
_ENV: celpy.Environment | None = None  # built on first use: ~150 ms, and most models need none


def _environment() -> celpy.Environment:
    """The shared CEL environment (call with ``_ENV_LOCK`` held)."""
    global _ENV
    if _ENV is None:
        _ENV = celpy.Environment()
    return _ENV


def compile_condition(name: str, condition: Mapping[str, Any]) -> _Compiled:
    """Compile one model condition; ``FgaError(2056)`` if it cannot work."""
    def invalid(reason: str) -> FgaError:
        message = f"failed to compile expression on condition '{name}' - {reason}"
        return FgaError(INVALID_AUTHORIZATION_MODEL, message)

    if not isinstance(condition, Mapping):
        raise invalid("must be an object")
    if condition.get("name", name) != name:
        raise invalid(f"name '{condition.get('name')}' does not match its key")
    expression = condition.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise invalid("the expression is empty")
    parameters = condition.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise invalid("parameters must be an object")
    converters: dict[str, Callable[[Any], Any]] = {}
    for param, type_ref in parameters.items():
        try:
            converters[str(param)] = param_converter(type_ref)
        except ValueError as exc:
            raise invalid(f"parameter '{param}': {exc}") from None
    with _ENV_LOCK:
        env = _environment()
        try:
            tree = env.compile(expression)
        except Exception as exc:  # celpy raises CELParseError and lark errors
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise invalid(f"invalid CEL expression: {first_line}") from None
        program = env.program(tree, functions=_CEL_FUNCTIONS)
    problems = _identifier_problems(tree, set(converters))
    if problems:
        raise invalid(problems[0])
    try:
        output = infer(tree, parameters)
    except CelTypeError as exc:
        raise invalid(str(exc)) from None
    except (LookupError, TypeError, ValueError, AttributeError):
        output = DYN  # a construct the checker does not model: leave it to evaluation
    if output not in ("bool", DYN):
        got = _PROTO_NAMES.get(output, output)
        raise invalid(f"expected a bool condition expression output, but got '{got}'")
    try:  # a trial run on zero values catches non-boolean results the static types left as dyn
        sample = program.evaluate({p: _sample_value(parameters[p]) for p in converters})
    except Exception:  # CELEvalError or a Python error on the zero values: inconclusive, not invalid
        sample = None
    if sample is not None and not isinstance(sample, celtypes.BoolType):
        got = _CEL_TYPE_NAMES.get(type(sample).__name__, type(sample).__name__)
        raise invalid(f"expected a bool condition expression output, but got '{got}'")
    return _Compiled(name, converters, program)


def _eval_error_text(exc: CELEvalError) -> str:
    """The most specific message celpy kept (it wraps Python errors as (text, type, args))."""
    args = exc.args
    if len(args) >= 3 and isinstance(args[2], tuple) and args[2] and isinstance(args[2][0], str):
        return args[2][0]
    return str(args[0]) if args else "evaluation failed"


class ConditionEvaluator:
    """Compiled conditions of one model; ``evaluate`` is thread-safe and memoised."""

    def __init__(self, model_conditions: Mapping[str, Any] | None) -> None:
        if model_conditions is not None and not isinstance(model_conditions, Mapping):
            raise FgaError(INVALID_AUTHORIZATION_MODEL, "conditions must be an object")
        self._compiled = {str(n): compile_condition(str(n), c) for n, c in (model_conditions or {}).items()}
        self._cache: dict[tuple[Any, ...], bool | FgaError] = {}

    @staticmethod
    def validate(model_conditions: Mapping[str, Any] | None) -> None:
        """Raise ``FgaError(2056)`` if any condition fails to compile."""
        ConditionEvaluator(model_conditions)

    def names(self) -> frozenset[str]:
        return frozenset(self._compiled)

    def evaluate(self, name: str, tuple_context: Mapping[str, Any] | None,
                 request_context: Mapping[str, Any] | None) -> bool:
        """Whether condition ``name`` holds; the tuple context wins over the request context."""
        compiled = self._compiled.get(name)
        if compiled is None:
            raise FgaError(VALIDATION_ERROR, f"condition '{name}' is not defined in the model")
        merged: dict[str, Any] = dict(request_context or {})
        merged.update(tuple_context or {})
        relevant = {k: merged[k] for k in compiled.converters if k in merged}
        try:
            key = (name, tuple(sorted((k, _freeze(v)) for k, v in relevant.items())))
            hash(key)
        except TypeError:
            key = None
        if key is not None:
            cached = self._cache.get(key)
            if cached is not None:
                if isinstance(cached, FgaError):
                    raise FgaError(cached.code, cached.message)
                return cached
        try:
            result: bool | FgaError = self._run(compiled, relevant)
        except FgaError as exc:
            result = exc
        if key is not None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = result
        if isinstance(result, FgaError):
            raise result
        return result

    @staticmethod
    def _run(compiled: _Compiled, relevant: dict[str, Any]) -> bool:
        def failure(detail: str) -> FgaError:
            return FgaError(VALIDATION_ERROR, f"failed to evaluate relationship condition "
                            f"'{compiled.name}': {detail}")

        activation: dict[str, Any] = {}
        for param, value in relevant.items():
            try:
                activation[param] = compiled.converters[param](value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise failure(f"failed to convert context parameter '{param}': {exc}") from None
        missing = sorted(set(compiled.converters) - set(activation))
        if missing:  # OpenFGA reports missing parameters even when the expression could decide without them
            raise failure(f"context is missing parameters {missing}")
        try:
            result = compiled.program.evaluate(activation)
        except CELEvalError as exc:
            raise failure(_eval_error_text(exc)) from None
        except Exception as exc:  # celpy surfaces some runtime failures as plain Python errors
            raise failure(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(result, celtypes.BoolType):
            raise failure(f"expected a bool result, got {type(result).__name__}")
        return bool(result)
