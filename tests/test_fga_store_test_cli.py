"""``espomcp fga test FILE…``: exit codes and the human report, compared with ``fga model test`` on a
passing and a failing file; tuple files (yaml/json/csv), ``model_file``, load errors, and the
operator commands against an embedded backend in a temporary data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espomcp.cli import main
from tests.fixtures.fga import FGA_CLI

MARK = "\u2179"  # the CLI's failure mark (SMALL ROMAN NUMERAL TEN)

MODEL = """model
  schema 1.1
type user
type group
  relations
    define member: [user]
type doc
  relations
    define owner: [user]
    define viewer: [user, user with office_hours, group#member] or owner
condition office_hours(hour: int) {
  hour >= 9 && hour < 17
}
"""

PASSING = {
    "name": "docs",
    "model": MODEL,
    "tuples": [
        {"user": "user:ann", "relation": "owner", "object": "doc:1"},
        {"user": "group:eng#member", "relation": "viewer", "object": "doc:1"},
        {"user": "user:cat", "relation": "viewer", "object": "doc:2", "condition": {"name": "office_hours"}},
    ],
    "tests": [
        {"name": "owners-and-groups",
         "tuples": [{"user": "user:bob", "relation": "member", "object": "group:eng"}],
         "check": [{"user": "user:ann", "object": "doc:1", "assertions": {"viewer": True, "owner": True}},
                   {"users": ["user:bob", "user:zed"], "objects": ["doc:2"],
                    "assertions": {"viewer": False}}],
         "list_objects": [{"user": "user:bob", "type": "doc", "assertions": {"viewer": ["doc:1"]}}],
         "list_users": [{"object": "doc:1", "user_filter": [{"type": "user"}],
                         "assertions": {"viewer": {"users": ["user:ann", "user:bob"]}}}]},
        {"name": "fresh-store-per-block",
         "check": [{"user": "user:bob", "object": "doc:1", "assertions": {"viewer": False}},
                   {"user": "user:cat", "object": "doc:2", "context": {"hour": 10},
                    "assertions": {"viewer": True}}]},
    ],
}


def _failing() -> dict:
    spec = json.loads(json.dumps(PASSING))
    first = spec["tests"][0]
    first["check"][0]["assertions"]["owner"] = False
    first["list_objects"][0]["assertions"]["viewer"] = ["doc:1", "doc:2"]
    first["list_users"][0]["assertions"]["viewer"]["users"] = ["user:ann"]
    spec["tests"][1]["check"].append({"user": "user:cat", "object": "doc:2", "assertions": {"viewer": True}})
    return spec


def _write(directory: Path, name: str, spec: dict) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _ours(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, str]:
    code = main(["fga", "test", *map(str, files)])
    return code, capsys.readouterr().err


def _cli(*files: Path) -> tuple[int, str]:
    run = subprocess.run([str(FGA_CLI), "model", "test", "--tests", str(files[0])], capture_output=True,
                         text=True, timeout=120)
    return run.returncode, run.stderr


def test_a_passing_file_exits_0_with_the_cli_summary(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "docs.fga.yaml", PASSING)
    code, err = _ours(capsys, path)
    cli_code, cli_err = _cli(path)
    assert (code, cli_code) == (0, 0), err
    assert err.strip() == cli_err.strip()
    assert err.strip().splitlines() == ["# Test Summary #", "Tests 2/2 passing", "Checks 6/6 passing",
                                        "ListObjects 1/1 passing", "ListUsers 1/1 passing"]


def test_a_failing_file_exits_1_with_the_cli_failure_lines(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "bad.fga.yaml", _failing())
    code, err = _ours(capsys, path)
    cli_code, cli_err = _cli(path)
    assert (code, cli_code) == (1, 1)
    ours_lines, cli_lines = err.strip().splitlines(), cli_err.strip().splitlines()
    assert ours_lines[-5:] == cli_lines[-5:] == [
        "# Test Summary #", "Tests 0/2 passing", "Checks 5/7 passing", "ListObjects 0/1 passing",
        "ListUsers 0/1 passing"]
    for expected in (
        "(FAILING) owners-and-groups: Checks (3/4 passing) | ListObjects (0/1 passing) | "
        "ListUsers (0/1 passing)",
        MARK + " Check(user=user:ann,relation=owner,object=doc:1): expected=false, got=true",
        MARK + " ListObjects(user=user:bob,relation=viewer,type=doc): expected=[doc:1 doc:2], got=[doc:1]",
    ):
        assert expected in ours_lines and expected in cli_lines, expected
    # ListUsers answers are unordered: the CLI prints them in engine order, we sort them.
    list_users = (MARK + " ListUsers(object={Type:doc Id:1},relation=viewer,"
                  "user_filter={Type:user Relation:<nil>}): expected={Users:[user:ann]}, got={Users:")
    assert list_users + "[user:ann user:bob]}" in ours_lines
    assert {list_users + "[user:ann user:bob]}", list_users + "[user:bob user:ann]}"} & set(cli_lines)
    # An evaluation error fails the assertion; OpenFGA's message differs, the shape does not.
    prefix = (MARK + " Check(user=user:cat,relation=viewer,object=doc:2): expected=true, got=N/A, "
              "error=rpc error: code = Code(2000)")
    assert any(line.startswith(prefix) for line in ours_lines)
    assert any(line.startswith(prefix) for line in cli_lines)


def test_several_files_make_one_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "a.fga.yaml", PASSING)
    bad = _write(tmp_path, "b.fga.yaml", _failing())
    code, err = _ours(capsys, good, bad)
    assert code == 1
    assert "Tests 2/4 passing" in err and "Checks 11/13 passing" in err


def test_a_quoted_glob_is_expanded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "a.fga.yaml", PASSING)
    _write(tmp_path, "b.fga.yaml", PASSING)
    code, err = _ours(capsys, tmp_path / "*.fga.yaml")
    assert code == 0 and "Tests 4/4 passing" in err


def test_tuple_files_and_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.fga").write_text(MODEL)
    owner = {"user": "user:ann", "relation": "owner", "object": "doc:1"}
    (tmp_path / "t.json").write_text(json.dumps([owner]))
    (tmp_path / "t.csv").write_text(
        "user_type,user_id,user_relation,relation,object_type,object_id,condition_name,condition_context\n"
        "group,eng,member,viewer,doc,1,,\n"
        "user,cat,,viewer,doc,2,office_hours,\"{\"\"hour\"\": 10}\"\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump([{"user": "user:bob", "relation": "member",
                                                      "object": "group:eng"}]))
    spec = {"name": "files", "model_file": "model.fga", "tuple_files": ["t.json", "t.csv"],
            "tests": [{"name": "all", "tuple_file": "t.yaml",
                       "check": [{"user": "user:ann", "object": "doc:1", "assertions": {"viewer": True}},
                                 {"user": "user:bob", "object": "doc:1", "assertions": {"viewer": True}},
                                 {"user": "user:cat", "object": "doc:2", "assertions": {"viewer": True}}]}]}
    path = _write(tmp_path, "files.fga.yaml", spec)
    code, err = _ours(capsys, path)
    cli_code, cli_err = _cli(path)
    assert (code, cli_code) == (0, 0), (err, cli_err)
    assert err.strip() == cli_err.strip()


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda s: s.update(model=MODEL.replace("or owner", "or nobody")), "2056"),
    (lambda s: s["tuples"].append({"user": "user:ann", "relation": "member", "object": "doc:1"}), "2027"),
    (lambda s: s.pop("model"), "neither 'model' nor 'model_file'"),
    (lambda s: s.update(model_file="../outside.fga", model=""), "inside the test file's directory"),
    (lambda s: s.update(model="model\n  schema 1.1\ntype user\ntype doc relations\n"),
     "syntax error at line 4"),
], ids=["invalid-model", "invalid-tuple", "no-model", "external-file", "syntax"])
def test_load_errors_exit_1_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str], change,
                                          fragment: str) -> None:
    spec = json.loads(json.dumps(PASSING))
    change(spec)
    directory = tmp_path / "cases"
    directory.mkdir()
    (tmp_path / "outside.fga").write_text(MODEL)
    path = _write(directory, "broken.fga.yaml", spec)
    code, err = _ours(capsys, path)
    assert code == 1
    assert err.startswith(f"Error: error running tests for {path} due to ")
    assert fragment in err
    assert "Traceback" not in err


def test_the_installed_command_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, "docs.fga.yaml", PASSING)
    run = subprocess.run([sys.executable, "-m", "espomcp", "fga", "test", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Tests 2/2 passing" in run.stderr and run.stdout == ""


@pytest.fixture
def embedded_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ESPOMCP_FGA_BACKEND", "embedded")
    monkeypatch.setenv("ESPOMCP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ESPOMCP_FGA_STORE_PATH", raising=False)
    monkeypatch.delenv("ESPOMCP_FGA_MODEL_PATH", raising=False)
    return tmp_path


def test_operator_commands_on_the_embedded_backend(embedded_env: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["fga", *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("write", "user:u1", "owner", "contact:c1")[:2] == (0, "written: user:u1 owner contact:c1\n")
    assert run("check", "user:u1", "can_read", "contact:c1")[:2] == (0, "allowed\n")
    assert run("check", "user:u2", "can_read", "contact:c1")[:2] == (1, "denied\n")
    assert run("list-objects", "user:u1", "can_read", "contact")[:2] == (0, "contact:c1\n")
    assert run("read")[:2] == (0, "user:u1 owner contact:c1\n")
    code, out, _ = run("read", "--json", "--object", "contact:c1")
    assert json.loads(out) == {"user": "user:u1", "relation": "owner", "object": "contact:c1"}
    code, _, err = run("check", "user:u1", "no_such_relation", "contact:c1")
    assert code == 2 and "2022" in err and "Traceback" not in err
    assert run("delete", "user:u1", "owner", "contact:c1")[0] == 0
    assert run("read")[:2] == (0, "")
    code, out, _ = run("model")
    assert code == 0 and out.startswith("model\n  schema 1.1\n") and "type contact" in out
    code, out, _ = run("model", "--format", "json")
    assert code == 0 and json.loads(out)["schema_version"] == "1.1"
