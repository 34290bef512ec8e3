"""The authorization model: DSL and JSON agree, the contract relations exist, and the business
rules in fga/store.fga.yaml hold with the real OpenFGA CLI and with our embedded engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from espomcp.fga.backend import PACKAGED_MODEL, REPO_MODEL, load_model

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
