"""Check's resolution depth limit, differential against the real fga CLI on generated chains.

Every chain shape (userset, tuple-to-userset and computed hops, alone and mixed, recursive or not,
behind a dispatch or leading into one) is written at lengths around OpenFGA's limit of 25 as one
``.fga.yaml`` file with a test block per length; each block asks Check for a user at the start of
the chain (``user:ann``), a user with no tuple at all (``user:bob``), a user related only to an
object off the chain (``user:carl``) and, for some shapes, a userset as user. The CLI runs every
file in one pass and our store-test runner answers the same files: answers (true, false or
"error") must be equal. Where they differ, the CLI is rerun and ours is accepted only if OpenFGA
itself also gives it (its query planner may pick another strategy).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from espomcp.fga.store_test import run_store_file
from tests.fixtures.fga import run_cli_many
from tests.test_fga_engine import HEADER
from tests.test_fga_engine_queries import CHAINS

LENGTHS = (23, 24, 25, 26, 40)
USERS = ("user:ann", "user:bob", "user:carl")
CLI_RERUNS = 5

Triple = tuple[str, str, str]


class Shape:
    """A chain: model, its tuples for ``n`` hops, the queried (relation, object) at the far end, the
    tuple relating carl to an object off the chain, and extra users to ask about."""

    def __init__(self, dsl: str, tuples: Callable[[int], list[Triple]],
                 query: Callable[[int], tuple[str, str]], carl: Triple, users: tuple[str, ...] = ()) -> None:
        self.dsl, self.tuples, self.query, self.carl = dsl, tuples, query, carl
        self.users = USERS + users


def _from_chains(kind: str, carl: Triple, users: tuple[str, ...] = ()) -> Shape:
    dsl, tuples, (relation, _), last = CHAINS[kind]
    return Shape(dsl, tuples, lambda n: (relation, last(n)), carl, users)


def _computed(n: int) -> str:
    return "type doc\n  relations\n    define r0: [user]\n" + "".join(
        f"    define r{i + 1}: r{i}\n" for i in range(n))


SHAPES: dict[str, Shape | Callable[[int], Shape]] = {
    # simple recursive relations (OpenFGA resolves them breadth-first for a plain user)
    "userset": _from_chains("userset", ("user:carl", "member", "group:x"), ("group:g0#member",)),
    "tuple_to_userset": _from_chains("tuple_to_userset", ("user:carl", "viewer", "folder:x")),
    "tuple_to_userset_computed_base": Shape("""
type folder
  relations
    define parent: [folder]
    define owner: [user]
    define viewer: owner or viewer from parent
""", lambda n: [("user:ann", "owner", "folder:f0")] +
        [(f"folder:f{i}", "parent", f"folder:f{i + 1}") for i in range(n)],
        lambda n: ("viewer", f"folder:f{n}"), ("user:carl", "owner", "folder:x")),
    "recursive_behind_a_dispatch": Shape("""
type group
  relations
    define member: [user, group#member]
type doc
  relations
    define viewer: [group#member]
""", lambda n: [*CHAINS["userset"][1](n - 1), (f"group:g{n - 1}#member", "viewer", "doc:1")],
        lambda n: ("viewer", "doc:1"), ("user:carl", "member", "group:x")),
    # not simple recursive: every hop is a dispatch
    "two_types": _from_chains("two_types", ("user:carl", "member", "a:x"), ("a:0#member",)),
    "mixed": Shape("""
type node
  relations
    define parent: [node]
    define base: [user, node#alias]
    define member: base or member from parent
    define alias: member
""", lambda n: [("user:ann", "base", "node:0")] + [
        (f"node:{i}", "parent", f"node:{i + 1}") if i % 2 == 0
        else (f"node:{i}#alias", "base", f"node:{i + 1}") for i in range(n)],
        lambda n: ("alias", f"node:{n}"), ("user:carl", "base", "node:x")),
    "dispatch_into_recursive": Shape("""
type team
  relations
    define member: [user, team#member]
type group
  relations
    define member: [team#member, group#member]
""", lambda n: [("user:ann", "member", "team:t"), ("team:t#member", "member", "group:g0")] +
        [(f"group:g{i}#member", "member", f"group:g{i + 1}") for i in range(n - 1)],
        lambda n: ("member", f"group:g{n - 1}"), ("user:carl", "member", "team:x")),
    # computed usersets are resolved in place: no depth at all
    "computed": lambda n: Shape(_computed(n), lambda _: [("user:ann", "r0", "doc:1")],
                                lambda _: (f"r{n}", "doc:1"), ("user:carl", "r0", "doc:x")),
}


def _length(block: str) -> int:
    """The chain length of a test block named ``shape-n``."""
    return int(block.rsplit("-", 1)[1])


def _shape(name: str, n: int) -> Shape:
    shape = SHAPES[name]
    return shape if isinstance(shape, Shape) else shape(n)


def _block(name: str, n: int) -> dict[str, Any]:
    """A test block for the chain of ``n`` hops: its tuples and a Check per user."""
    shape = _shape(name, n)
    relation, obj = shape.query(n)
    return {"name": f"{name}-{n}",
            "tuples": [{"user": u, "relation": r, "object": o} for u, r, o in [*shape.tuples(n), shape.carl]],
            "check": [{"user": user, "object": obj, "assertions": {relation: False}} for user in shape.users]}


def _specs() -> dict[str, list[dict[str, Any]]]:
    """Store-test files per shape: one with a block per length (``computed`` changes its model with
    the length: a file per length there)."""
    specs: dict[str, list[dict[str, Any]]] = {}
    for name in SHAPES:
        if isinstance(SHAPES[name], Shape):
            blocks = [[_block(name, n) for n in LENGTHS]]
        else:
            blocks = [[_block(name, n)] for n in LENGTHS]
        specs[name] = [{"name": group[0]["name"] if len(group) == 1 else name,
                        "model": HEADER + _shape(name, _length(group[0]["name"])).dsl,
                        "tests": group} for group in blocks]
    return specs


def _answer(got: Any, error: Any) -> Any:
    return "error" if error is not None or got is None else got


def _theirs(stdout: str) -> dict[str, list[Any]]:
    """The CLI's answers per test block (an error shows as ``"got": null``)."""
    return {block["name"]: [_answer(item.get("got"), None) for item in block.get("check_results") or []]
            for block in json.loads(stdout)}


def _ours(path: Path) -> dict[str, list[Any]]:
    return {result.name: [_answer(o.got, o.error) for o in result.checks] for result in run_store_file(path)}


def _cli(paths: list[Path]) -> list[dict[str, list[Any]]]:
    runs = run_cli_many([["model", "test", "--tests", str(p), "--verbose", "--suppress-summary"]
                         for p in paths])
    for path, run in zip(paths, runs, strict=True):
        assert run.stdout.strip(), f"the CLI could not load {path}: {run.stderr}"
    return [_theirs(run.stdout) for run in runs]


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[Path], dict[str, list[Any]]]]:
    """Every shape's files and the CLI's answers per test block, from one concurrent CLI pass."""
    directory = tmp_path_factory.mktemp("check-depth")
    files: dict[str, list[Path]] = {}
    for name, specs in _specs().items():
        for spec in specs:
            path = directory / f"{spec['name']}.fga.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
            files.setdefault(name, []).append(path)
    paths = [p for group in files.values() for p in group]
    answers: dict[Path, dict[str, list[Any]]] = dict(zip(paths, _cli(paths), strict=True))
    return {name: (group, {k: v for p in group for k, v in answers[p].items()})
            for name, group in files.items()}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_check_depth_limit_matches_the_cli(name: str, chains: dict[str, Any]) -> None:
    paths, theirs = chains[name]
    ours = {k: v for p in paths for k, v in _ours(p).items()}
    assert ours.keys() == theirs.keys()
    differing = {block: (ours[block], theirs[block]) for block in ours if ours[block] != theirs[block]}
    if differing:  # OpenFGA's planner may pick another strategy: accept only what it also answers
        reruns = [_cli(paths) for _ in range(CLI_RERUNS)]
        for block, (mine, _) in list(differing.items()):
            if any(mine == {k: v for run in rerun for k, v in run.items()}[block] for rerun in reruns):
                del differing[block]
    users = {n: _shape(name, n).users for n in LENGTHS}
    assert not differing, "\n".join(
        f"{block} ({', '.join(users[_length(block)])}): ours {mine}, CLI {cli}"
        for block, (mine, cli) in differing.items())


def test_the_chains_reach_both_sides_of_the_limit(chains: dict[str, Any]) -> None:
    """Guard against shapes that drifted away from the limit: the CLI answers true for ann on the
    short chains and fails on the long ones, for every shape but the computed chain."""
    for name, (_, theirs) in chains.items():
        first = [theirs[block][0] for block in sorted(theirs, key=_length)]
        assert first[0] is True, name
        assert first[-1] == (True if name == "computed" else "error"), (name, first)
