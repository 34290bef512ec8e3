"""``espomcp.fga.validation.validate_model`` against ``fga model validate``: a table of invalid and
borderline models (same verdict and, where OpenFGA's message is stable, the same message), seeded
random models, the write-time name rules and malformed JSON that must be a 2056, never a crash."""

from __future__ import annotations

import random
from typing import Any

import pytest

from espomcp.fga.dsl import parse_dsl
from espomcp.fga.errors import INVALID_AUTHORIZATION_MODEL, FgaError
from espomcp.fga.validation import validate_model
from tests.fixtures.fga import cli_validate_many, random_model

HEADER = "model\n  schema 1.1\ntype user\n"


def _doc(*defines: str, tail: str = "") -> str:
    return HEADER + "type doc\n  relations\n" + "".join(f"    define {d}\n" for d in defines) + tail


COND = "condition c1(x: int) {\n  {expr}\n}\n"
BAD_A = "the definition of relation 'a' in object type 'doc' is invalid: "
COMPILE = "failed to compile expression on condition 'c1'"


def _cond(expression: str) -> str:
    return _doc("a: [user with c1]", tail=COND.replace("{expr}", expression))

# (model, message OpenFGA gives or None when the model is valid)
CASES: list[tuple[str, str | None]] = [
    (_doc("a: [user]", "b: a", "c: [user, doc#a, user:*] or b"), None),
    (_doc("a: b"), "'doc#b' relation is undefined"),
    (_doc("a: [user]", "b: a from a"),
     "undefined relation: a does not appear as a relation in any of the directly related user types "
     '[type:"user"]'),
    (_doc("a: [user]", "p: [doc#a]", "b: a from p"),
     "the relation type 'doc#a' on 'p' in object type 'doc' is not valid"),
    (_doc("a: [user, doc:*]", "p: [doc:*]", "b: a from p"),
     "the relation type 'doc' on 'p' in object type 'doc' is not valid"),
    (_doc("a: [foo]"), "the relation type 'foo' on 'a' in object type 'doc' is not valid"),
    (_doc("a: [user#x]"), "the relation type 'user#x' on 'a' in object type 'doc' is not valid"),
    (_doc("a: [user with c1]"), "condition c1 is undefined for relation a"),
    (_doc("a: a or b", "b: [user]"), BAD_A + "invalid userset rewrite definition"),
    (_doc("a: b", "b: a"), BAD_A + "potential loop"),
    (_doc("a: [user] and b", "b: a"), BAD_A + "potential loop"),
    (_doc("a: [doc#a]"), BAD_A + "no entrypoints defined"),
    (_doc("p: [doc]", "a: a from p"), BAD_A + "no entrypoints defined"),
    (_doc("p: [doc]", "a: [user] or a from p"), None),
    (_doc("p: [doc]", "a: [user] or a from p") + "type user\n",
     "an authorization model cannot contain duplicate types"),
    (HEADER + "type self\n", "the definition of type 'self' is invalid"),
    (_doc("this: [user]"), BAD_A.replace("'a'", "'this'") + "self and this are reserved keywords"),
    (_doc("p: [user] or q", "q: [user]", "a: q from p"),
     "the 'doc#p' relation is referenced in at least one tupleset and thus must be a direct relation"),
    (_doc("a: [user] but not b", "b: [user] but not a"), BAD_A + "potential loop"),
    (_doc("a: [user, user]"), None),
    # entrypoints through a shared visited map (OpenFGA v1.22 hasEntrypoints)
    (HEADER + "type folder\n  relations\n    define parent: [folder]\n    define owner: [user]\n"
     "    define editor: owner but not owner\n    define viewer: [user] but not editor\n"
     "type doc\n  relations\n    define parent: [folder]\n    define viewer: [user] and viewer from parent\n",
     None),
    (_cond("x < 1"), None),
    (_cond("x + 1"), COMPILE + " - expected a bool condition expression output, but got 'int'"),
    (_cond("y < 1"), "undeclared reference to 'y'"),
    (_cond("x <"), COMPILE),
    (_cond("foo(x)"), "undeclared reference to 'foo'"),
    (_cond("[x].all(v, v > 0)"), None),
    ("model\n  schema 1.0\ntype user\n", "invalid schema version"),
]


@pytest.fixture(scope="module")
def verdicts() -> dict[str, dict[str, Any]]:
    texts = [text for text, _ in CASES]
    return dict(zip(texts, cli_validate_many(texts), strict=True))


def _ours(text: str) -> str | None:
    try:
        validate_model(parse_dsl(text))
    except FgaError as exc:
        assert exc.code == INVALID_AUTHORIZATION_MODEL
        return exc.message
    return None


@pytest.mark.parametrize(("text", "message"), CASES, ids=range(len(CASES)))
def test_case_matches_fga_model_validate(text: str, message: str | None,
                                         verdicts: dict[str, dict[str, Any]]) -> None:
    cli = verdicts[text]
    ours = _ours(text)
    assert cli["is_valid"] == (message is None), cli  # the table itself is right
    assert (ours is None) == cli["is_valid"], ours
    if message is not None:
        assert ours is not None and message in ours
        assert message.split(" - ")[0] in cli["error"]


def test_random_models_get_the_cli_verdict() -> None:
    texts = [random_model(random.Random(7000 + i))[0] for i in range(80)]
    verdicts = cli_validate_many(texts)
    valid = sum(1 for v in verdicts if v["is_valid"])
    assert 10 < valid < 70, "the generator should produce valid and invalid models"
    for text, verdict in zip(texts, verdicts, strict=True):
        ours = _ours(text)
        assert (ours is None) == verdict["is_valid"], f"{text}\nCLI: {verdict}\nours: {ours}"
        if ours is not None and "condition" not in ours:
            assert ours == verdict["error"]


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda m: m["type_definitions"][1]["relations"].update({"r" * 51: {"this": {}}}),
     "invalid relation name"),
    (lambda m: m["type_definitions"][0].update({"type": "t" * 255}), "invalid type name"),
    (lambda m: m["type_definitions"][0].update({"type": "a:b"}), "invalid type name"),
    (lambda m: m.update({"conditions": {"c" * 51: {"name": "c" * 51, "expression": "true"}}}),
     "invalid condition name"),
    (lambda m: m.update({"conditions": {"cc": {"name": "cc", "expression": " || ".join(["x < 1"] * 100),
                                               "parameters": {"x": {"type_name": "TYPE_NAME_INT"}}}}}),
     "at most 512 bytes"),
    (lambda m: m.update({"conditions": {f"c{i}": {"name": f"c{i}", "expression": "x", "parameters": {
        "x": {"type_name": "TYPE_NAME_BOOL"}}} for i in range(26)}}), "at most 25 conditions"),
], ids=["relation-51", "type-255", "type-colon", "condition-51", "expression-512", "conditions-26"])
def test_write_time_name_rules(mutate: Any, fragment: str) -> None:
    """OpenFGA's request validation (the CLI's model test applies it; model validate does not)."""
    model = parse_dsl(_doc("a: [user]"))
    mutate(model)
    with pytest.raises(FgaError, match=fragment):
        validate_model(model)


def _doc_json(relations: Any = None, metadata: Any = None, **extra: Any) -> dict[str, Any]:
    type_def: dict[str, Any] = {"type": "doc"}
    if relations is not None:
        type_def["relations"] = relations
    if metadata is not None:
        type_def["metadata"] = {"relations": metadata}
    return {"schema_version": "1.1", "type_definitions": [type_def], **extra}


@pytest.mark.parametrize("model", [
    None, [], "model", {}, {"schema_version": "1.1"}, {"schema_version": "1.1", "type_definitions": []},
    {"schema_version": "1.1", "type_definitions": ["user"]},
    {"schema_version": "1.1", "type_definitions": [{"type": ""}]},
    _doc_json({"a": {}}),
    _doc_json({"a": {"union": {}}}),
    _doc_json({"a": {"this": {}, "computedUserset": {"relation": "a"}}}),
    _doc_json({"a": {"this": {}}}, {"a": {"directly_related_user_types": "user"}}),
    _doc_json({"a": {"this": {}}}, {"a": {"directly_related_user_types": [{"relation": "x"}]}}),
    _doc_json(conditions=[]),
    _doc_json(conditions={"cc": {"name": "other", "expression": "true"}}),
    _doc_json(conditions={"cc": {"name": "cc", "expression": "x",
                                 "parameters": {"x": {"type_name": "TYPE_NAME_NOPE"}}}}),
], ids=range(16))
def test_malformed_models_are_2056_not_crashes(model: Any) -> None:
    with pytest.raises(FgaError) as caught:
        validate_model(model)
    assert caught.value.code == INVALID_AUTHORIZATION_MODEL


def test_the_project_model_is_valid() -> None:
    from pathlib import Path

    dsl = Path(__file__).resolve().parents[1] / "fga" / "model.fga"
    validate_model(parse_dsl(dsl.read_text()))


# CEL type checking: each expression over typed parameters, accepted or refused as cel-go does.
CEL_PARAMS = ("x: int, u: uint, f: double, s: string, d: duration, ts: timestamp, b: bool, ip: ipaddress, "
              "l: list<string>, m: map<string>")
CEL_EXPRESSIONS = [
    "x == 1.0", "f < 1", "x == 'a'", "d > 0", "s + 1 == 'a'", "x + 1.0 > 0.0", "size(x) > 0", "x == u",
    "x < u", "f == 1.0", "x in [1, 2]", "x in [1.0]", "s in ['a']", "l[0] == 'a'", "l[0] == 1",
    "m['a'] == 1", "m['a'] == 'b'", "ts > d", "ts - ts > d", "ts + d > ts", "b == 1", "b && x",
    "x > 0 ? true : 1", "x > 0 ? 'a' : 'b'", "!x", "-s == 'a'", "ip == ip", "ip.in_cidr(1)",
    "x.startsWith('a')", "s.startsWith(1)", "string(x) == s", "int(s) == x", "double(x) < f",
    "x == null", "timestamp(s) > ts", "duration(s) > d", "l.size() == 1", "size(m) == 1", "m.a == 1",
    "l.all(v, v == 1)", "l.exists(v, v == 'a')", "1 + 1 == 2", "1 < 1.5", "u > 1", "u > 1u",
    "x.size() > 0", "l.map(v, v + 'a')[0] == 'b'", "l.filter(v, v == 'a').size() == 1",
    "ts.getHours() == 1", "ts.getHours('UTC') == 1", "m.k.startsWith('a')", "'a' in m", "1 in m",
    "l + l == l", "l + ['a'] == l", "ipaddress(s).in_cidr(s)", "ipaddress(x).in_cidr(s)",
    "dyn(x) == 'a'", "x == 1 ? 'a' == s : false", "size(b) > 0", "-u < 1u", "-d < d", "f / 2.0 > 1.0",
    "f % 2.0 == 0.0", "s.matches(s)", "ts == timestamp(s)", "type(x) == int", "int(f) == x",
    "uint(x) == u", "(x > 1) == (u > 1u)", "l[x] == s", "l[u] == s", "m[s] == s", "m[x] == s",
    "has(m.k) && m.k == s", "x > 0 || s", "ts", "x + 1",
    "string(x).all(v, v == 'a')", "2u >= -2u", "m.exists(k, k == 'a')", "m.all(k, k == 1)",
]


def _cel_model(expression: str) -> str:
    return f"{HEADER}condition cc({CEL_PARAMS}) {{\n  {expression}\n}}\n"


def test_cel_expressions_type_check_like_cel_go() -> None:
    texts = [_cel_model(e) for e in CEL_EXPRESSIONS]
    verdicts = cli_validate_many(texts)
    assert 20 < sum(v["is_valid"] for v in verdicts) < len(texts) - 20
    disagreements = [(expression, verdict.get("error", "valid").splitlines()[0], _ours(text))
                     for expression, text, verdict in zip(CEL_EXPRESSIONS, texts, verdicts, strict=True)
                     if (_ours(text) is None) != verdict["is_valid"]]
    assert not disagreements, disagreements
    message = _ours(_cel_model("1 < 1.5")) or ""
    assert "found no matching overload for '_<_' applied to '(int, double)'" in message
