"""The authorization model: DSL and JSON agree, the contract relations exist, and the business
rules in fga/store.fga.yaml hold with the real OpenFGA CLI and through every FGA backend."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from espomcp.fga.backend import PACKAGED_MODEL, REPO_MODEL, FgaBackend, load_model

REPO = Path(__file__).resolve().parents[1]
FGA_CLI = REPO / ".venv" / "bin" / "fga"
DSL = REPO / "fga" / "model.fga"
STORE_TEST = REPO / "fga" / "store.fga.yaml"

RECORD_TYPES = ["account", "contact", "lead", "opportunity", "case", "meeting", "call", "task"]
PARENTS = {"contact": ["account"], "opportunity": ["account"], "case": ["account"],
           "meeting": ["account", "contact", "lead", "opportunity", "case"],
           "call": ["account", "contact", "lead", "opportunity", "case"],
           "task": ["account", "contact", "lead", "opportunity", "case"]}
PERMISSIONS = {"can_read", "can_write", "can_delete", "can_assign"}


def _types(model: dict) -> dict[str, dict]:
    return {td["type"]: td for td in model["type_definitions"]}


def _direct_types(td: dict, relation: str) -> list[str]:
    meta = td["metadata"]["relations"][relation]
    return [r["type"] + (f"#{r['relation']}" if r.get("relation") else "")
            for r in meta.get("directly_related_user_types", [])]


def test_model_json_matches_the_dsl() -> None:
    out = subprocess.run([str(FGA_CLI), "model", "transform", "--file", str(DSL),
                          "--output-format", "json"], capture_output=True, text=True, check=True,
                         timeout=60)
    assert json.loads(out.stdout) == json.loads(REPO_MODEL.read_text()), \
        "fga/model.json is stale: run scripts/gen_model_json.sh"


def test_packaged_model_is_the_repository_model() -> None:
    assert json.loads(PACKAGED_MODEL.read_text()) == json.loads(REPO_MODEL.read_text()), \
        "espomcp/data/model.json is stale: run scripts/gen_model_json.sh"


def test_model_is_valid_for_the_cli() -> None:
    out = subprocess.run([str(FGA_CLI), "model", "validate", "--file", str(DSL)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["is_valid"] is True


@pytest.mark.parametrize("type_name", RECORD_TYPES)
def test_record_types_carry_the_contract_relations(type_name: str) -> None:
    td = _types(load_model())[type_name]
    relations = set(td["relations"])
    assert {"owner", "assignee", "team", "collaborator", "organization"} | PERMISSIONS <= relations
    for relation, allowed in [("owner", ["user"]), ("assignee", ["user"]), ("collaborator", ["user"]),
                              ("team", ["team"]), ("organization", ["organization"])]:
        assert _direct_types(td, relation) == allowed
    if type_name in PARENTS:
        assert _direct_types(td, "parent") == PARENTS[type_name]
    else:
        assert "parent" not in relations


def test_people_and_organization_types() -> None:
    types = _types(load_model())
    assert _direct_types(types["team"], "member") == ["user"]
    assert _direct_types(types["team"], "manager") == ["user"]
    assert _direct_types(types["organization"], "admin") == ["user"]
    assert _direct_types(types["organization"], "member") == ["user"]
    for name in ("user", "team", "note"):
        assert set(types[name]["relations"]) >= PERMISSIONS, name
    assert _direct_types(types["note"], "parent") == RECORD_TYPES


def test_business_rules_pass_with_the_openfga_cli() -> None:
    out = subprocess.run([str(FGA_CLI), "model", "test", "--tests", str(STORE_TEST)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Tests 12/12 passing" in out.stderr


def test_our_dsl_parser_reads_the_model_like_the_cli() -> None:
    from espomcp.fga.dsl import parse_dsl

    assert parse_dsl(DSL.read_text()) == json.loads(REPO_MODEL.read_text())


def _store_tests() -> list[dict]:
    return yaml.safe_load(STORE_TEST.read_text())["tests"]


@pytest.mark.parametrize("case", _store_tests(), ids=lambda case: case["name"])
def test_business_rules_hold_on_every_backend(fga_backend: FgaBackend, case: dict) -> None:
    """The same store file, loaded through the FgaBackend interface (embedded and OpenFGA)."""
    data = yaml.safe_load(STORE_TEST.read_text())
    fga_backend.write(data["tuples"] + case.get("tuples", []))
    failures = []
    for check in case.get("check", []):
        for user in check.get("users") or [check["user"]]:
            for obj in check.get("objects") or [check["object"]]:
                for relation, expected in check["assertions"].items():
                    got = fga_backend.check(user, relation, obj, check.get("context"))
                    if got is not expected:
                        failures.append(f"check {user} {relation} {obj}: expected {expected}, got {got}")
    for query in case.get("list_objects", []):
        for relation, expected in query["assertions"].items():
            got = sorted(fga_backend.list_objects(query["user"], relation, query["type"]))
            if got != sorted(expected):
                failures.append(f"list_objects {query['user']} {relation} {query['type']}: {got}")
    for query in case.get("list_users", []):
        filters = [(f["type"], f.get("relation")) for f in query["user_filter"]]
        for relation, expected in query["assertions"].items():
            got = sorted(fga_backend.list_users(query["object"], relation, filters))
            if got != sorted(expected["users"]):
                failures.append(f"list_users {query['object']} {relation}: {got}")
    assert not failures, "\n".join(failures)


def test_business_rules_pass_with_our_engine_runner() -> None:
    """The same file through ``espomcp.fga.store_test``; its report matches the CLI's summary."""
    import io

    from espomcp.fga.store_test import run_files, run_store_file

    out = io.StringIO()
    assert run_files([STORE_TEST], out=out) == 0, out.getvalue()
    assert "Tests 12/12 passing" in out.getvalue()
    assert "Checks 305/305 passing" in out.getvalue()
    results = run_store_file(STORE_TEST)
    assert all(result.passing for result in results)
    assert sum(len(r.list_objects) for r in results) == 11 and sum(len(r.list_users) for r in results) == 3


def test_a_wrong_business_rule_fails_in_both_runners(tmp_path: Path) -> None:
    """Guard against vacuous passes: flip one expectation and both the CLI and our runner fail."""
    import io

    from espomcp.fga.store_test import run_files

    spec = yaml.safe_load(STORE_TEST.read_text())
    spec["model_file"] = "model.fga"
    spec["tests"] = spec["tests"][:1]
    spec["tests"][0]["check"][0]["assertions"]["can_delete"] = True
    (tmp_path / "model.fga").write_text(DSL.read_text())
    wrong = tmp_path / "wrong.fga.yaml"
    wrong.write_text(yaml.safe_dump(spec))
    out = io.StringIO()
    assert run_files([wrong], out=out) == 1
    assert "can_delete,object=account:acme): expected=true, got=false" in out.getvalue()
    cli = subprocess.run([str(FGA_CLI), "model", "test", "--tests", str(wrong)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1
    assert "can_delete,object=account:acme): expected=true, got=false" in cli.stderr
