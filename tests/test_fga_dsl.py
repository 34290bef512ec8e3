"""``espomcp.fga.dsl``: the DSL parser against the real ``fga model transform`` (same JSON, same
accept/reject decision) over every conformance model, a table of syntax corner cases and seeded
random (often mutated) models; error positions; the JSON → DSL formatter round trip."""

from __future__ import annotations

import random

import pytest
import yaml

from espomcp.fga.dsl import DslSyntaxError, format_dsl, parse_dsl
from espomcp.fga.errors import INVALID_AUTHORIZATION_MODEL
from tests.fixtures.fga import CONFORMANCE_DIR, cli_transform_many

HEADER = "model\n  schema 1.1\ntype user\n"


def _doc(*defines: str) -> str:
    return HEADER + "type doc\n  relations\n" + "".join(f"    define {d}\n" for d in defines)


# Corner cases of the grammar, each accepted or rejected exactly as the CLI does (the test asks the
# CLI; the comment says what is being probed).
CORNER_CASES = [
    _doc("a: [user]", "b: (a or a) or a", "c: a but not (a or b)", "d: (a but not b) but not c"),
    _doc("a: [user]", "b: a or b and c"),  # mixed operators need parentheses
    _doc("a: [user]", "b: a but not b but not c"),  # one 'but not' per level
    _doc("a: [user] or (b)", "b: [user]"),
    _doc("a: ([user] or b)", "b: [user]"),
    _doc("a: (b or c) and ([user])", "b: [user]", "c: [user]"),  # [..] only at the head
    _doc("a: [user, user:*,user#a , user with cond]"),
    _doc("a:[user]", "b : [user]", "c:  [user]"),
    _doc("a: [\n      user,\n      user:*\n    ]"),
    _doc("a.b: [x/y]", "c-d: [user#a.b]", "e: c-d from a.b"),  # extended identifiers
    _doc("module: [user]", "type: [user]", "relation: [type#module]"),  # keywords allowed as names
    _doc("or: [user]"),
    _doc("a: [user with c.d]"),  # condition names are plain identifiers
    _doc("a: [user] # trailing comment", "# a comment line", "b: a #c"),
    _doc("a: [user]#no-space-before-hash"),
    _doc("a: [user]", "a: [user]"),  # duplicate relation
    HEADER + "type doc\n  relations\n",  # 'relations' without a define
    "  # leading comment\nmodel\n  schema 1.1\n\n\ntype user\n",
    "model\n  schema 1.0\ntype user\n",
    "model\nschema 1.1\ntype user\n",
    HEADER + "type doc\n\trelations\n\t\tdefine a: [user]\n",
    HEADER + "condition c(x: int, y: string) {\n    x < 3 &&\n      y == 'a'\n  }\n",
    HEADER + "condition c ( x : int , y:string ) {true}\n",
    HEADER + "condition c(x: int, y: string) { x < 3 // hi\n && y == \"}\" }\n",
    HEADER + "condition c(x: int,\n   y: string) {\n  x < 3\n}\n",  # newline in parameters
    HEADER + "condition c(x: any) {\n  x\n}\n",
    HEADER + "condition c(l: list<string>, m: map<int>, ip: ipaddress, d: duration) {\n  true\n}\n",
    HEADER + "condition c(l: list < int >) {\n  true\n}\n",
    HEADER + "condition c(x: int) {\n  x < 1\n}\ncondition c(x: int) {\n  x < 2\n}\n",
    HEADER + "condition c(x: int, x: int) {\n  x < 1\n}\n",
    HEADER + "condition c(x: int) {\n  x < 1\n}\ntype doc\n",  # types after conditions
    HEADER + "type doc\n  relations\n    define a: [user]\t",
    HEADER + "extend type user\n",
]


def _random_expression(rng: random.Random, depth: int, head: bool) -> str:
    relations = ["viewer", "editor", "owner", "parent"]
    if depth > 2 or rng.random() < 0.35:
        if head and rng.random() < 0.3:
            items = rng.sample(["user", "user:*", "doc#owner", "user with cond", "group"], rng.randint(1, 3))
            return "[" + rng.choice([", ", ","]).join(items) + "]"
        if rng.random() < 0.3:
            return f"{rng.choice(relations)} from {rng.choice(relations)}"
        return rng.choice(relations)
    if rng.random() < 0.2:
        return "(" + _random_expression(rng, depth + 1, head) + ")"
    operator = rng.choice(["or", "and", "but not"])
    count = 2 if operator == "but not" else rng.randint(2, 3)
    parts = [_random_expression(rng, depth + 1, head)]
    parts += [_random_expression(rng, depth + 1, rng.random() < 0.05) for _ in range(count - 1)]
    parts = [p if " " not in p or p[0] in "([" or (p.count(" ") == 2 and " from " in p) else f"({p})"
             for p in parts]
    return f" {operator} ".join(parts)


def _random_model(rng: random.Random) -> str:
    lines = [rng.choice(["", "# header\n"]) + "model", "  schema 1.1" + rng.choice(["", " # c"])]
    for type_name in ["user", "group", "doc"][: rng.randint(1, 3)]:
        lines.append(f"type {type_name}")
        if rng.random() < 0.8:
            lines.append("  relations")
            for relation in rng.sample(["viewer", "editor", "owner", "parent"], rng.randint(1, 3)):
                lines.append(f"    define {relation}: {_random_expression(rng, 0, True)}")
    if rng.random() < 0.4:
        lines.append("condition cond(x: int, s: string) {\n  " + rng.choice(
            ["x < 1", 's == "a}b" // c', "x < 100 ||\n    s > 'b'", "{'a': 1}"]) + "\n}")
    text = "\n".join(lines) + rng.choice(["", "\n", "\n\n"])
    if rng.random() < 0.35:  # mutate one character
        i = rng.randrange(len(text))
        insert = rng.choice(["", " ", "\n", "(", ")", ",", "#", ":", "or ", "\t", text[i] * 2])
        text = text[:i] + insert + text[i + 1:]
    return text


def _random_models() -> list[str]:
    rng = random.Random(4242)
    return [_random_model(rng) for _ in range(100)]


@pytest.fixture(scope="module")
def oracle() -> dict[str, dict | None]:
    """The CLI's transform of every text this module compares, in one concurrent pass."""
    conformance = sorted({yaml.safe_load(p.read_text())["model"] for p in CONFORMANCE_DIR.glob("*.fga.yaml")})
    texts = sorted(set(conformance) | set(CORNER_CASES) | set(_random_models()))
    return dict(zip(texts, cli_transform_many(texts), strict=True))


def _ours(text: str) -> dict | None:
    try:
        return parse_dsl(text)
    except DslSyntaxError:
        return None


def test_every_conformance_model_transforms_like_the_cli(oracle: dict[str, dict | None]) -> None:
    models = sorted({yaml.safe_load(p.read_text())["model"] for p in CONFORMANCE_DIR.glob("*.fga.yaml")})
    assert len(models) > 100
    mismatches = [m for m in models if _ours(m) != oracle[m]]
    assert all(oracle[m] is not None for m in models)
    assert not mismatches, f"{len(mismatches)} differ, first:\n{mismatches[0]}"


@pytest.mark.parametrize("text", CORNER_CASES, ids=range(len(CORNER_CASES)))
def test_corner_case_matches_the_cli(text: str, oracle: dict[str, dict | None]) -> None:
    assert _ours(text) == oracle[text]


def test_random_models_match_the_cli(oracle: dict[str, dict | None]) -> None:
    texts = _random_models()
    accepted = sum(1 for t in texts if oracle[t] is not None)
    assert 20 < accepted < len(texts) - 20, "the generator should produce valid and invalid models"
    for text in texts:
        assert _ours(text) == oracle[text], text


def test_the_json_shape_of_every_construct() -> None:
    model = parse_dsl(_doc("a: [user, user:*, doc#a, user with cond]", "b: a",
                           "p: [doc]", "c: (a or b) and a from p", "d: a but not b")
                      + "condition cond(x: int, l: list<string>) {\n  x < 1\n}\n")
    doc = model["type_definitions"][1]
    assert model["type_definitions"][0] == {"type": "user"}
    assert doc["metadata"]["relations"]["a"]["directly_related_user_types"] == [
        {"type": "user"}, {"type": "user", "wildcard": {}}, {"type": "doc", "relation": "a"},
        {"type": "user", "condition": "cond"}]
    assert doc["metadata"]["relations"]["b"] == {}
    assert doc["relations"]["b"] == {"computedUserset": {"relation": "a"}}
    assert doc["relations"]["c"] == {"intersection": {"child": [
        {"union": {"child": [{"computedUserset": {"relation": "a"}},
                             {"computedUserset": {"relation": "b"}}]}},
        {"tupleToUserset": {"tupleset": {"relation": "p"}, "computedUserset": {"relation": "a"}}}]}}
    assert doc["relations"]["d"] == {"difference": {"base": {"computedUserset": {"relation": "a"}},
                                                    "subtract": {"computedUserset": {"relation": "b"}}}}
    assert model["conditions"]["cond"] == {"name": "cond", "expression": "x < 1", "parameters": {
        "x": {"type_name": "TYPE_NAME_INT"},
        "l": {"type_name": "TYPE_NAME_LIST", "generic_types": [{"type_name": "TYPE_NAME_STRING"}]}}}


@pytest.mark.parametrize(("text", "line", "column", "fragment"), [
    (_doc("a: [user]", "b: a or b and c"), 7, 22, "parentheses"),
    (_doc("a: [user") + "type x\n", 7, 1, "',' or ']'"),
    (HEADER + "type doc\n  relations\n    define a [user]\n", 6, 14, "':'"),
    (_doc("a: [user]", "a: [user]"), 7, 12, "already defined"),
    ("model\n  schema 1.1\ntype user\ntype doc @\n", 4, 10, "unexpected character"),
    (HEADER + "condition c(x: int) {\n  x < 1\n", 5, 8, "'}'"),
], ids=["mixed-operators", "unclosed-bracket", "missing-colon", "duplicate", "bad-char", "unclosed-brace"])
def test_syntax_errors_name_line_and_column(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(DslSyntaxError) as caught:
        parse_dsl(text)
    error = caught.value
    assert (error.line, error.column) == (line, column), error.message
    assert fragment in error.message
    assert error.code == INVALID_AUTHORIZATION_MODEL
    assert f"line {line}, column {column}" in error.message


def test_modular_models_are_refused_clearly() -> None:
    """``module`` files (fga.mod modular models) are out of scope: a clear error, not a wrong model."""
    with pytest.raises(DslSyntaxError, match="modular models are not supported"):
        parse_dsl("module foo\ntype user\n")


def test_parse_dsl_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        parse_dsl(b"model")  # type: ignore[arg-type]


def test_format_dsl_round_trips_every_conformance_model() -> None:
    for path in CONFORMANCE_DIR.glob("*.fga.yaml"):
        model = parse_dsl(yaml.safe_load(path.read_text())["model"])
        assert parse_dsl(format_dsl(model)) == model, path.name
