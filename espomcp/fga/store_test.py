"""Run ``.fga.yaml`` store-test files with our engine, like ``fga model test --tests FILE`` (openfga.md §7).

A file holds one model (``model`` DSL or ``model_file`` .fga/.json), global tuples (``tuples``,
``tuple_file``, ``tuple_files``: yaml/json/csv) and ``tests``; every test block runs in a fresh
store holding the global tuples plus its own. Each ``check`` (every ``user``/``users``
with every ``object``/``objects`` and assertion), ``list_objects`` and ``list_users`` entry is evaluated and
compared (lists as unordered sets); an evaluation error fails the assertion. A file that cannot be
loaded (bad YAML, model or tuple) raises ``StoreTestError``. ``report`` renders the CLI's stderr
text; ``run_files`` returns the CLI's exit code (0 all pass, 1 any failure or load error).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from espomcp.fga.dsl import parse_dsl
from espomcp.fga.engine import Engine
from espomcp.fga.errors import FgaError

WRITE_CHUNK = 100
MAX_CONTEXTUAL = 100
FAIL_MARK = "\u2179"  # SMALL ROMAN NUMERAL TEN, as the fga CLI prints it


class StoreTestError(Exception):
    """The store-test file cannot be loaded or set up (the CLI aborts with ``Error: …``)."""


@dataclass(slots=True)
class Outcome:
    """One evaluated assertion: the request, what was expected and what the engine answered."""

    kind: str  # "check" | "list_objects" | "list_users"
    request: dict[str, Any]
    expected: Any
    got: Any = None
    error: FgaError | None = None

    @property
    def passing(self) -> bool:
        if self.error is not None or self.got is None:
            return False
        if self.kind == "check":
            return self.got is self.expected
        return sorted(self.got) == sorted(self.expected)


@dataclass(slots=True)
class TestResult:
    __test__ = False  # not a pytest class

    name: str
    description: str = ""
    checks: list[Outcome] = field(default_factory=list)
    list_objects: list[Outcome] = field(default_factory=list)
    list_users: list[Outcome] = field(default_factory=list)

    @property
    def passing(self) -> bool:
        return all(o.passing for o in (*self.checks, *self.list_objects, *self.list_users))


# ------------------------------------------------------------------------------------- loading

def _resolve(base: Path, name: Any, allow_external: bool) -> Path:
    if not isinstance(name, str) or not name:
        raise StoreTestError(f"invalid file reference {name!r}")
    path = (base / name).resolve()
    if not allow_external and not path.is_relative_to(base.resolve()):
        raise StoreTestError(f"{name}: files must stay inside the test file's directory "
                             "(use --allow-external-files)")
    if not path.is_file():
        raise StoreTestError(f"{name}: no such file")
    return path


def _tuples_from_csv(stream: TextIO) -> list[dict[str, Any]]:
    """The fga CLI's CSV: user_type,user_id,user_relation,relation,object_type,object_id,
    condition_name,condition_context (JSON)."""
    out = []
    for row in csv.DictReader(stream):
        user = f"{row.get('user_type', '')}:{row.get('user_id', '')}"
        if row.get("user_relation"):
            user += f"#{row['user_relation']}"
        item: dict[str, Any] = {"user": user, "relation": row.get("relation", ""),
                                "object": f"{row.get('object_type', '')}:{row.get('object_id', '')}"}
        if row.get("condition_name"):
            context = json.loads(row["condition_context"]) if row.get("condition_context") else None
            item["condition"] = {"name": row["condition_name"], **({"context": context} if context else {})}
        out.append(item)
    return out


def _load_tuple_file(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            if path.suffix == ".csv":
                data: Any = _tuples_from_csv(stream)
            elif path.suffix == ".json":
                data = json.load(stream)
            else:
                data = yaml.safe_load(stream)
    except (OSError, ValueError, yaml.YAMLError, csv.Error) as exc:
        raise StoreTestError(f"cannot read tuples from {path.name}: {exc}") from None
    if not isinstance(data, list):
        raise StoreTestError(f"{path.name}: expected a list of tuples")
    return data


def _gather_tuples(block: dict[str, Any], base: Path, allow_external: bool) -> list[Any]:
    tuples = list(block.get("tuples") or [])
    files = ([block["tuple_file"]] if block.get("tuple_file") else []) + list(block.get("tuple_files") or [])
    for name in files:
        tuples.extend(_load_tuple_file(_resolve(base, name, allow_external)))
    return tuples


def load_model(spec: dict[str, Any], base: Path, allow_external: bool = False) -> dict[str, Any]:
    """The JSON model of a store file (``model`` DSL text or ``model_file`` .fga/.json)."""
    try:
        if isinstance(spec.get("model"), str) and spec["model"].strip():
            return parse_dsl(spec["model"])
        if spec.get("model_file"):
            path = _resolve(base, spec["model_file"], allow_external)
            text = path.read_text(encoding="utf-8")
            return json.loads(text) if path.suffix == ".json" else parse_dsl(text)
    except FgaError as exc:
        raise StoreTestError(f"invalid model: {exc.message}") from None
    except (OSError, ValueError) as exc:
        raise StoreTestError(f"cannot read the model: {exc}") from None
    raise StoreTestError("the file has neither 'model' nor 'model_file'")


# ------------------------------------------------------------------------------------ running

def _as_list(entry: dict[str, Any], one: str, many: str) -> list[str]:
    values = [entry[one]] if entry.get(one) is not None else list(entry.get(many) or [])
    if not values or not all(isinstance(v, str) for v in values):
        raise StoreTestError(f"each entry needs '{one}' or '{many}'")
    return values


def _run_block(engine: Engine, test: dict[str, Any], result: TestResult, contextual: list[Any]) -> None:
    for entry in test.get("check") or []:
        if "contextual_tuples" in entry:
            raise StoreTestError("per-assertion contextual tuples are not supported")
        context = entry.get("context")
        for user in _as_list(entry, "user", "users"):
            for obj in _as_list(entry, "object", "objects"):
                for relation, expected in (entry.get("assertions") or {}).items():
                    outcome = Outcome("check", {"user": user, "relation": relation, "object": obj,
                                                "context": context}, bool(expected))
                    try:
                        outcome.got = engine.check(user, relation, obj, context=context,
                                                   contextual_tuples=contextual)
                    except FgaError as exc:
                        outcome.error = exc
                    result.checks.append(outcome)
    for entry in test.get("list_objects") or []:
        context = entry.get("context")
        for relation, expected in (entry.get("assertions") or {}).items():
            outcome = Outcome("list_objects", {"user": entry.get("user"), "relation": relation,
                                               "type": entry.get("type"), "context": context},
                              list(expected or []))
            try:
                outcome.got = engine.list_objects(entry.get("user", ""), relation, entry.get("type", ""),
                                                  context=context, contextual_tuples=contextual)
            except FgaError as exc:
                outcome.error = exc
            result.list_objects.append(outcome)
    for entry in test.get("list_users") or []:
        context = entry.get("context")
        filters = list(entry.get("user_filter") or [])
        for relation, expected in (entry.get("assertions") or {}).items():
            users = list((expected or {}).get("users") or []) if isinstance(expected, dict) else []
            outcome = Outcome("list_users", {"object": entry.get("object"), "relation": relation,
                                             "user_filter": filters, "context": context}, users)
            try:
                outcome.got = engine.list_users(entry.get("object", ""), relation, filters, context=context,
                                                contextual_tuples=contextual)
            except FgaError as exc:
                outcome.error = exc
            result.list_users.append(outcome)


def _write_all(engine: Engine, tuples: list[Any]) -> None:
    for start in range(0, len(tuples), WRITE_CHUNK):
        engine.write(tuples[start:start + WRITE_CHUNK])


def run_store_file(path: str | Path, *, engine_factory: Callable[[dict[str, Any]], Engine] = Engine,
                   allow_external_files: bool = False, contextual: str = "none") -> list[TestResult]:
    """Evaluate every test block of one store file, each in a fresh store from ``engine_factory``.

    ``contextual`` sends tuples as contextual tuples of every request instead of writing them (the
    upstream OpenFGA suites' second pass): ``"block"`` a block's own tuples, ``"all"`` every tuple of
    the block when they fit OpenFGA's limit of 100 (otherwise they are written).
    """
    if contextual not in ("none", "block", "all"):
        raise ValueError(f"contextual must be none, block or all, not {contextual!r}")
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StoreTestError(f"cannot read {path}: {exc}") from None
    if not isinstance(spec, dict):
        raise StoreTestError(f"{path}: a store file is a YAML mapping")
    base = path.parent
    model = load_model(spec, base, allow_external_files)
    global_tuples = _gather_tuples(spec, base, allow_external_files)
    results = []
    for test in spec.get("tests") or []:
        if not isinstance(test, dict):
            raise StoreTestError(f"{path}: each test is a mapping")
        try:
            engine = engine_factory(model)
            block_tuples = _gather_tuples(test, base, allow_external_files)
            stored, sent = global_tuples + block_tuples, []
            if contextual == "block" and len(block_tuples) <= MAX_CONTEXTUAL:
                stored, sent = global_tuples, block_tuples
            elif contextual == "all" and len(stored) <= MAX_CONTEXTUAL:
                stored, sent = [], stored
            _write_all(engine, stored)
        except FgaError as exc:
            raise StoreTestError(f"rpc error: code = Code({exc.code}) desc = {exc.message}") from None
        result = TestResult(str(test.get("name", "")), str(test.get("description") or ""))
        _run_block(engine, test, result, sent)
        results.append(result)
    return results


# ------------------------------------------------------------------------------------ reporting

def go_value(value: Any) -> str:
    """``value`` as Go's ``%v`` prints decoded JSON (maps with sorted keys, numbers as float64)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value, key=str)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, (int, float)):
        number = float(value)
        if math.isfinite(number) and number.is_integer() and abs(number) < 1e21:
            return str(int(number))
        return repr(number) if math.isfinite(number) else ("+Inf" if number > 0 else "-Inf")
    return str(value)


def _error_text(error: FgaError) -> str:
    return f"rpc error: code = Code({error.code}) desc = {error.message}"


def _failure_line(o: Outcome) -> str:
    r = o.request
    context = f", context:&{go_value(r['context'])}" if r.get("context") is not None else ""
    if o.kind == "check":
        got = "N/A" if o.got is None else go_value(o.got)
        head = f"Check(user={r['user']},relation={r['relation']},object={r['object']}{context})"
        line = f"{FAIL_MARK} {head}: expected={go_value(o.expected)}, got={got}"
    elif o.kind == "list_objects":
        got = "N/A" if o.got is None else go_value(sorted(o.got))
        head = f"ListObjects(user={r['user']},relation={r['relation']},type={r['type']}{context})"
        line = f"{FAIL_MARK} {head}: expected={go_value(o.expected)}, got={got}"
    else:
        type_name, _, obj_id = str(r["object"]).partition(":")
        first = r["user_filter"][0] if r["user_filter"] else {}
        first = first if isinstance(first, dict) else {}
        relation = first.get("relation") or "<nil>"
        got = "N/A" if o.got is None else f"{{Users:{go_value(sorted(o.got))}}}"
        head = (f"ListUsers(object={{Type:{type_name} Id:{obj_id}}},relation={r['relation']},"
                f"user_filter={{Type:{first.get('type')} Relation:{relation}}}{context})")
        line = f"{FAIL_MARK} {head}: expected={{Users:{go_value(o.expected)}}}, got={got}"
    return line + (f", error={_error_text(o.error)}" if o.error is not None else "")


def _counts(outcomes: list[Outcome]) -> tuple[int, int]:
    return sum(1 for o in outcomes if o.passing), len(outcomes)


def report(results: Iterable[TestResult]) -> str:
    """The CLI's human report: one block per failing test, then ``# Test Summary #`` and totals."""
    results = list(results)
    blocks = []
    for result in results:
        if result.passing:
            continue
        parts = []
        for label, outcomes in (("Checks", result.checks), ("ListObjects", result.list_objects),
                                ("ListUsers", result.list_users)):
            if outcomes:
                passed, total = _counts(outcomes)
                parts.append(f"{label} ({passed}/{total} passing)")
        lines = [f"(FAILING) {result.name}: " + " | ".join(parts)]
        lines += [_failure_line(o) for o in (*result.checks, *result.list_objects, *result.list_users)
                  if not o.passing]
        blocks.append("\n".join(lines))
    text = "\n---\n".join(blocks)
    if not results:
        return text
    if blocks:
        text += "\n---\n"
    failed_tests = sum(1 for r in results if not r.passing)
    text += f"# Test Summary #\nTests {len(results) - failed_tests}/{len(results)} passing"
    for label, attr in (("Checks", "checks"), ("ListObjects", "list_objects"), ("ListUsers", "list_users")):
        passed, total = _counts([o for r in results for o in getattr(r, attr)])
        if total:
            text += f"\n{label} {passed}/{total} passing"
    return text


def run_files(paths: Iterable[str | Path], *, out: TextIO, allow_external_files: bool = False,
              engine_factory: Callable[[dict[str, Any]], Engine] = Engine) -> int:
    """Run store files as one suite, write the report to ``out``; 0 if all pass, else 1."""
    results: list[TestResult] = []
    for path in paths:
        try:
            results.extend(run_store_file(path, engine_factory=engine_factory,
                                          allow_external_files=allow_external_files))
        except StoreTestError as exc:
            print(f"Error: error running tests for {path} due to {exc}", file=out)
            return 1
    print(report(results), file=out)
    return 0 if all(r.passing for r in results) else 1
