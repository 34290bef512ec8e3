"""``espomcp.fga.conditions.ConditionEvaluator``: OpenFGA parameter typing, context precedence,
missing parameters, errors and the OpenFGA CEL extensions (openfga.md §3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from espomcp.fga import conditions as conditions_module
from espomcp.fga.conditions import ConditionEvaluator, parse_go_duration, parse_rfc3339
from espomcp.fga.errors import INVALID_AUTHORIZATION_MODEL, VALIDATION_ERROR, FgaError
from espomcp.fga.store_test import run_store_file
from tests.fixtures.fga import run_cli_many


def _type(name: str, generic: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"type_name": f"TYPE_NAME_{name}"}
    if generic:
        ref["generic_types"] = [{"type_name": f"TYPE_NAME_{generic}"}]
    return ref


def _evaluator(expression: str, **params: dict[str, Any]) -> ConditionEvaluator:
    return ConditionEvaluator({"cond": {"name": "cond", "expression": expression, "parameters": params}})


def _outcome(evaluator: ConditionEvaluator, tuple_context: Any, request_context: Any = None) -> bool | int:
    try:
        return evaluator.evaluate("cond", tuple_context, request_context)
    except FgaError as exc:
        return exc.code


ERR = VALIDATION_ERROR

TYPED = [
    # (expression, parameter type, value, expected: bool or the error code)
    ("x", _type("BOOL"), True, True),
    ("x", _type("BOOL"), "true", ERR),
    ("x == 'a'", _type("STRING"), "a", True),
    ("x == 'a'", _type("STRING"), 1, ERR),
    ("x == 10", _type("INT"), 10, True),
    ("x == 10", _type("INT"), 10.0, True),
    ("x == 10", _type("INT"), "10", True),
    ("x == 10", _type("INT"), 10.5, ERR),
    ("x == 10", _type("INT"), "ten", ERR),
    ("x == 10", _type("INT"), True, ERR),
    ("x == 10", _type("INT"), 2**63, ERR),
    ("x == 3u", _type("UINT"), 3, True),
    ("x == 3u", _type("UINT"), -3, ERR),
    ("x > 0.0", _type("DOUBLE"), 1.7976931348623157, True),
    ("x > 0.0", _type("DOUBLE"), -1.7976931348623157, False),
    ("x > 0.0", _type("DOUBLE"), 2, True),
    ("x > 0.0", _type("DOUBLE"), "2.5", True),
    ("x > 0.0", _type("DOUBLE"), float("inf"), ERR),
    ("x > 0.0", _type("DOUBLE"), float("nan"), ERR),
    ("x > 0.0", _type("DOUBLE"), "1.8e309", ERR),
    ("x > duration('1h')", _type("DURATION"), "1h30m", True),
    ("x > duration('1h')", _type("DURATION"), "59m59.5s", False),
    ("x > duration('1h')", _type("DURATION"), "1 hour", ERR),
    ("x < timestamp('2023-10-11T10:00:00.000Z')", _type("TIMESTAMP"), "2023-10-11T09:59:59Z", True),
    ("x < timestamp('2023-10-11T10:00:00.000Z')", _type("TIMESTAMP"), "2023-10-11T11:30:00+01:00", False),
    ("x < timestamp('2023-10-11T10:00:00.000Z')", _type("TIMESTAMP"), "2023-10-11T09:00:00.123456789Z", True),
    ("x < timestamp('2023-10-11T10:00:00.000Z')", _type("TIMESTAMP"), "2023-10-11 09:00", ERR),
    ("x.in_cidr('10.0.0.0/8')", _type("IPADDRESS"), "10.1.2.3", True),
    ("x.in_cidr('10.0.0.0/8')", _type("IPADDRESS"), "192.168.0.1", False),
    ("x.in_cidr('2001:db8::/32')", _type("IPADDRESS"), "2001:db8::1", True),
    ("x.in_cidr('10.0.0.0/8')", _type("IPADDRESS"), "not-an-ip", ERR),
    ("x.in_cidr('nonsense')", _type("IPADDRESS"), "10.0.0.1", ERR),
    ("ipaddress(x).in_cidr('10.0.0.0/8')", _type("STRING"), "10.9.9.9", True),
    ("'b' in x", _type("LIST", "STRING"), ["a", "b"], True),
    ("'b' in x", _type("LIST", "STRING"), ["a", 1], ERR),
    ("'b' in x", _type("LIST", "STRING"), "b", ERR),
    ("x['k'] == 3", _type("MAP", "INT"), {"k": 3}, True),
    ("x['k'] == 3", _type("MAP", "INT"), {"k": "three"}, ERR),
    ("x.all(v, v > 1)", _type("LIST", "INT"), [2, 3], True),
    ("x.all(v, v > 1)", _type("LIST", "INT"), [0, 3], False),
    ("x == 'a'", _type("ANY"), "a", True),
    ("x['k']", _type("MAP", "ANY"), {"k": "not a bool"}, ERR),  # non-boolean result
    ("10 / x == 1", _type("INT"), 0, ERR),  # runtime error
]


@pytest.mark.parametrize(("expression", "type_ref", "value", "expected"), TYPED,
                         ids=[f"{t['type_name'][10:].lower()}-{i}" for i, (_, t, _, _) in enumerate(TYPED)])
def test_parameter_types(expression: str, type_ref: dict[str, Any], value: Any, expected: bool | int) -> None:
    assert _outcome(_evaluator(expression, x=type_ref), {"x": value}) == expected


def test_the_tuple_context_wins_over_the_request_context() -> None:
    evaluator = _evaluator("x < 10", x=_type("INT"))
    assert _outcome(evaluator, {"x": 5}, {"x": 50}) is True
    assert _outcome(evaluator, {"x": 50}, {"x": 5}) is False
    assert _outcome(evaluator, None, {"x": 5}) is True
    assert _outcome(evaluator, {}, {"x": 50}) is False


def test_undeclared_context_keys_are_ignored() -> None:
    evaluator = _evaluator("x < 10", x=_type("INT"))
    assert _outcome(evaluator, {"x": 1, "other": "whatever"}, {"more": [1, 2]}) is True


def test_a_missing_parameter_is_an_error_even_when_the_expression_could_decide() -> None:
    """OpenFGA reports missing parameters whatever the partial result (fga CLI v0.8.2 agrees)."""
    evaluator = _evaluator("x < 100 || y < 50", x=_type("INT"), y=_type("INT"))
    assert _outcome(evaluator, {"x": 1}) == VALIDATION_ERROR
    assert _outcome(evaluator, {"x": 200}) == VALIDATION_ERROR
    assert _outcome(evaluator, None) == VALIDATION_ERROR
    with pytest.raises(FgaError, match=r"missing parameters \['y'\]"):
        evaluator.evaluate("cond", {"x": 200}, None)
    both = _evaluator("x < 100 && y < 50", x=_type("INT"), y=_type("INT"))
    assert _outcome(both, {"x": 200}) == VALIDATION_ERROR
    assert _outcome(both, {"x": 1}, {"y": 1}) is True


def test_an_unknown_condition_is_a_validation_error() -> None:
    evaluator = _evaluator("x", x=_type("BOOL"))
    with pytest.raises(FgaError) as caught:
        evaluator.evaluate("nope", {"x": True}, None)
    assert caught.value.code == VALIDATION_ERROR


def test_results_are_memoised_per_context_but_stay_correct() -> None:
    evaluator = _evaluator("x < 10", x=_type("INT"))
    answers = [_outcome(evaluator, {"x": value}) for value in (1, 20, 1, 20, 1.0, "1")]
    assert answers == [True, False, True, False, True, True]
    assert [_outcome(evaluator, {"x": 10.5}) for _ in range(2)] == [ERR, ERR]


def test_each_condition_compiles_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    compile_cel = conditions_module._ENV.compile

    def counting(text: str) -> Any:
        calls.append(text)
        return compile_cel(text)

    monkeypatch.setattr(conditions_module._ENV, "compile", counting)
    evaluator = ConditionEvaluator({
        "a": {"name": "a", "expression": "x < 10", "parameters": {"x": _type("INT")}},
        "b": {"name": "b", "expression": "s == 'v'", "parameters": {"s": _type("STRING")}},
    })
    for value in range(20):
        evaluator.evaluate("a", {"x": value}, None)
        evaluator.evaluate("b", {"s": str(value)}, None)
    assert sorted(calls) == ["s == 'v'", "x < 10"]


@pytest.mark.parametrize(("condition", "fragment"), [
    ({"name": "c", "expression": "x + 1", "parameters": {"x": _type("INT")}}, "bool"),
    ({"name": "c", "expression": "x <", "parameters": {"x": _type("INT")}}, "invalid CEL"),
    ({"name": "c", "expression": "y", "parameters": {"x": _type("BOOL")}}, "undeclared reference to 'y'"),
    ({"name": "c", "expression": "nope(x)", "parameters": {"x": _type("BOOL")}}, "undeclared reference"),
    ({"name": "c", "expression": "", "parameters": {"x": _type("BOOL")}}, "empty"),
    ({"name": "other", "expression": "x", "parameters": {"x": _type("BOOL")}}, "does not match"),
    ({"name": "c", "expression": "x", "parameters": {"x": _type("NOPE")}}, "unknown parameter type"),
    ({"name": "c", "expression": "true", "parameters": {"x": _type("LIST")}}, "generic"),
    ({"name": "c", "expression": "true", "parameters": {"x": _type("INT", "INT")}}, "no generic"),
    ("not an object", "must be an object"),
], ids=["not-bool", "syntax", "undeclared", "function", "empty", "name", "type", "list-bare", "int-generic",
        "shape"])
def test_invalid_conditions_fail_model_validation(condition: Any, fragment: str) -> None:
    with pytest.raises(FgaError) as caught:
        ConditionEvaluator.validate({"c": condition})
    assert caught.value.code == INVALID_AUTHORIZATION_MODEL
    assert fragment in caught.value.message


def test_no_conditions_is_fine() -> None:
    ConditionEvaluator.validate(None)
    ConditionEvaluator.validate({})
    assert ConditionEvaluator(None).names() == frozenset()


@pytest.mark.parametrize(("text", "nanos"), [
    ("0", 0), ("1h30m", 5_400_000_000_000), ("-1.5s", -1_500_000_000), ("300ms", 300_000_000),
    ("2h45m10.5s", 9_910_500_000_000), ("1us", 1_000), ("1µs", 1_000), ("7ns", 7),
])
def test_go_durations(text: str, nanos: int) -> None:
    assert parse_go_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "1", "h", "1d", "1h 30m", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_rfc3339_timestamps() -> None:
    assert parse_rfc3339("2023-10-11T10:00:00Z").isoformat() == "2023-10-11T10:00:00+00:00"
    assert parse_rfc3339("2023-10-11T10:00:00.5-02:30").isoformat() == "2023-10-11T10:00:00.500000-02:30"
    for bad in ("2023-10-11", "2023-10-11T10:00:00", "2023-13-11T10:00:00Z", "yesterday"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


# ----------------------------------------------------------------- differential against the fga CLI

# (parameters in DSL, CEL expression, tuple context, request context): each becomes one conditioned
# tuple and one Check; our answer (True / False / error) must equal the CLI's.
CLI_CASES: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("x: int", "x < 10", None, {"x": 5}),
    ("x: int", "x < 10", None, {"x": 5.0}),
    ("x: int", "x < 10", None, {"x": "5"}),
    ("x: int", "x < 10", None, {"x": 5.5}),
    ("x: int", "x < 10", None, {"x": True}),
    ("x: int", "x < 10", None, {"x": "abc"}),
    ("x: int", "x < 10", {"x": 50}, {"x": 5}),
    ("x: int", "x < 10", None, None),
    ("x: int", "x / 0 == 1", None, {"x": 5}),
    ("x: uint", "x > 3u", None, {"x": 5}),
    ("x: uint", "x > 3u", None, {"x": -5}),
    ("x: double", "x > 0.5", None, {"x": 1}),
    ("x: double", "x > 0.5", None, {"x": "0.75"}),
    ("x: bool", "x", None, {"x": True}),
    ("x: bool", "x", None, {"x": "true"}),
    ("x: bool", "!x", None, {"x": False}),
    ("s: string", "s.startsWith('ab') && s.endsWith('yz')", None, {"s": "abcxyz"}),
    ("s: string", "s.contains('cx')", None, {"s": "abcxyz"}),
    ("s: string", "s.matches('^a.*z$')", None, {"s": "abcxyz"}),
    ("s: string", "size(s) == 6", None, {"s": "abcxyz"}),
    ("s: string", "s == 'x'", None, {"s": 1}),
    ("s: string", "s + 'b' == 'ab'", None, {"s": "a"}),
    ("ts: timestamp", "ts < timestamp('2023-10-11T10:00:00.000Z')", None, {"ts": "2023-10-11T09:00:00Z"}),
    ("ts: timestamp", "ts < timestamp('2023-10-11T10:00:00.000Z')", None,
     {"ts": "2023-10-11T11:00:00+02:00"}),
    ("ts: timestamp", "ts < timestamp('2023-10-11T10:00:00.000Z')", None, {"ts": "2023-10-11T09:00:00"}),
    ("ts: timestamp", "ts < timestamp('2023-10-11T10:00:00.000Z')", None, {"ts": "2023-10-11T09:00:00.5Z"}),
    ("ts: timestamp, now: timestamp", "ts + duration('1h') > now", None,
     {"ts": "2023-10-11T09:00:00Z", "now": "2023-10-11T09:30:00Z"}),
    ("ts: timestamp, now: timestamp", "now - ts < duration('10m')", None,
     {"ts": "2023-10-11T09:00:00Z", "now": "2023-10-11T09:30:00Z"}),
    ("ts: timestamp", "ts.getHours() == 9", None, {"ts": "2023-10-11T09:00:00Z"}),
    ("ts: timestamp", "ts.getFullYear() == 2023", None, {"ts": "2023-10-11T09:00:00Z"}),
    ("d: duration", "d > duration('1h')", None, {"d": "90m"}),
    ("d: duration", "d > duration('1h')", None, {"d": "1h0m1s"}),
    ("d: duration", "d > duration('1h')", None, {"d": "1.5h"}),
    ("d: duration", "d > duration('1h')", None, {"d": 3600}),
    ("d: duration", "d < duration('1s')", None, {"d": "999ms"}),
    ("l: list<string>", "'b' in l", None, {"l": ["a", "b"]}),
    ("l: list<string>", "'b' in l", None, {"l": ["a", 2]}),
    ("l: list<string>", "size(l) == 2", None, {"l": ["a", "b"]}),
    ("l: list<int>", "l.exists(v, v > 5)", None, {"l": [1, 7]}),
    ("l: list<int>", "l.all(v, v > 0)", None, {"l": [1, 7]}),
    ("l: list<int>", "l.exists_one(v, v > 5)", None, {"l": [6, 7]}),
    ("l: list<int>", "l.filter(v, v > 5).size() == 1", None, {"l": [1, 7]}),
    ("l: list<int>", "l.map(v, v * 2)[1] == 14", None, {"l": [1, 7]}),
    ("l: list<int>", "l[5] == 1", None, {"l": [1, 7]}),
    ("m: map<string>", "m['k'] == 'v'", None, {"m": {"k": "v"}}),
    ("m: map<string>", "'k' in m", None, {"m": {"j": "v"}}),
    ("m: map<string>", "m['zz'] == 'v'", None, {"m": {"k": "v"}}),
    ("m: map<string>", "has(m.k)", None, {"m": {"k": "v"}}),
    ("m: map<int>", "m.k > 1", None, {"m": {"k": 2}}),
    ("ip: ipaddress", "ip.in_cidr('10.0.0.0/8')", None, {"ip": "10.1.2.3"}),
    ("ip: ipaddress", "ip.in_cidr('10.0.0.0/8')", None, {"ip": "11.1.2.3"}),
    ("ip: ipaddress", "ip.in_cidr('2001:db8::/32')", None, {"ip": "2001:db8::5"}),
    ("ip: ipaddress", "ip.in_cidr('10.0.0.0/8')", None, {"ip": "garbage"}),
    ("ip: ipaddress", "ip.in_cidr('10.0.0.0/8')", None, {"ip": "2001:db8::5"}),
    ("ip: ipaddress, c: string", "ip.in_cidr(c)", None, {"ip": "10.1.2.3", "c": "10.1.0.0/16"}),
    ("ip: ipaddress, c: string", "ip.in_cidr(c)", None, {"ip": "10.1.2.3", "c": "bad"}),
    ("s: string", "ipaddress(s).in_cidr('192.168.0.0/16')", None, {"s": "192.168.3.4"}),
    ("x: int, y: int", "x < 100 || y < 50", None, {"x": 1}),
    ("x: int, y: int", "x < 100 || y < 50", None, {"x": 200}),
    ("x: int, y: int", "x < 100 && y < 50", None, {"x": 200}),
    ("x: int, y: int", "x < 100 && y < 50", {"y": 1}, {"x": 1}),
    ("x: int", "x == 1 ? true : false", None, {"x": 1}),
    ("x: int", "int('12') == x", None, {"x": 12}),
    ("x: int", "string(x) == '12'", None, {"x": 12}),
    ("x: int", "double(x) == 12.0", None, {"x": 12}),
    ("x: int", "x % 5 == 2", None, {"x": 12}),
    ("x: int", "-x < 0", None, {"x": 12}),
    ("x: int", "x in [1, 2, 12]", None, {"x": 12}),
    ("s: string", "s == \"q\\\"t\"", None, {"s": "q\"t"}),
    ("s: string", "s == 'caf\u00e9' && size(s) == 4", None, {"s": "caf\u00e9"}),
    ("b: bool", "b == true", None, {"b": 1}),
]


def _cli_case_files(directory: Any) -> list[Any]:
    """Store files of at most 25 conditions each (OpenFGA's per-model limit)."""
    paths = []
    for start in range(0, len(CLI_CASES), 25):
        chunk = CLI_CASES[start:start + 25]
        lines = ["model", "  schema 1.1", "type user", "type doc", "  relations"]
        lines += [f"    define r{i}: [user with c{i}]" for i in range(len(chunk))]
        lines += [f"condition c{i}({params}) {{\n  {expression}\n}}"
                  for i, (params, expression, _, _) in enumerate(chunk)]
        tuples, checks = [], []
        for i, (_, _, tuple_context, request_context) in enumerate(chunk):
            condition: dict[str, Any] = {"name": f"c{i}"}
            if tuple_context:
                condition["context"] = tuple_context
            tuples.append({"user": "user:u", "relation": f"r{i}", "object": "doc:1", "condition": condition})
            check: dict[str, Any] = {"user": "user:u", "object": "doc:1", "assertions": {f"r{i}": False}}
            if request_context is not None:
                check["context"] = request_context
            checks.append(check)
        spec = {"name": f"cel-{start}", "model": "\n".join(lines) + "\n", "tuples": tuples,
                "tests": [{"name": f"cel-{start}", "check": checks}]}
        path = directory / f"cel-{start}.fga.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        paths.append(path)
    return paths


def test_conditions_evaluate_like_the_fga_cli(tmp_path: Any) -> None:
    paths = _cli_case_files(tmp_path)
    runs = run_cli_many([["model", "test", "--tests", str(p), "--verbose", "--suppress-summary"]
                         for p in paths])
    theirs: list[Any] = []
    ours: list[Any] = []
    for path, run in zip(paths, runs, strict=True):
        assert run.stdout.strip(), run.stderr
        results = json.loads(run.stdout)[0]["check_results"]
        theirs += ["error" if r["got"] is None else r["got"] for r in results]
        [result] = run_store_file(path)
        ours += ["error" if o.error is not None else o.got for o in result.checks]
    assert len(ours) == len(theirs) == len(CLI_CASES)
    mismatches = [(case, mine, cli) for case, mine, cli in zip(CLI_CASES, ours, theirs, strict=True)
                  if mine != cli]
    assert not mismatches, mismatches
    assert {True, False, "error"} <= set(theirs)
