"""The ``espomcp sync``, ``reconcile`` and ``webhooks`` commands against the fake EspoCRM and
the embedded FGA store (configuration from ESPOMCP_* variables, as an operator runs them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from espomcp.cli import main
from espomcp.fga.backend import build_backend
from espomcp.fga.tuples import TupleKey
from espomcp.settings import load_settings
from espomcp.sync.status import sync_status
from fakes.espocrm import DEMO_API_KEY


@pytest.fixture
def env(espocrm_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env
    data = tmp_path / "data"
    for name, value in {"ESPOCRM_URL": espocrm_server.url, "ESPOCRM_API_KEY": DEMO_API_KEY,
                        "DATA_DIR": str(data), "FGA_BACKEND": "embedded",
                        "PUBLIC_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(f"ESPOMCP_{name}", value)
    return data


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def test_sync_then_reconcile_finds_and_fixes_drift(env: Path, espocrm_server: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, summary = _run(capsys, "sync", "--json")  # with the progress bar (on stderr)
    assert code == 0 and summary["complete"] and summary["records"] > 600
    assert summary["tuples"] > summary["records"] and summary["tuples_per_second"] > 0
    assert set(summary["per_type"]) >= {"User", "Team", "Contact", "Task"}
    assert summary["outbox_depth"] == 0
    code, text = _run(capsys, "sync", "--no-progress")  # idempotent; human summary
    assert code == 0 and "backfill complete" in text and "tuples/s" in text
    code, report = _run(capsys, "reconcile", "--json")
    assert code == 0 and report["in_sync"] and report["held"] == report["expected"]
    backend = build_backend(load_settings())
    alice = espocrm_server.user_id("alice")
    admin = TupleKey(f"user:{espocrm_server.user_id('admin')}", "admin", "organization:main")
    assert backend.check(admin.user, "can_delete", f"team:{_sales(backend, alice)}")
    backend.write([TupleKey(f"user:{alice}", "assignee", "case:0000000000000dead")], [admin])
    code, report = _run(capsys, "reconcile", "--json")
    assert code == 1 and not report["in_sync"]
    assert report["per_type"] == {"case": {"missing": 0, "stale": 1},
                                  "organization": {"missing": 1, "stale": 0}}
    code, text = _run(capsys, "reconcile", "--fix")
    assert code == 0 and "fixed" in text
    code, report = _run(capsys, "reconcile", "--json")
    assert code == 0 and report["in_sync"]
    status = sync_status(load_settings())
    assert status["last_backfill"]["complete"] and status["last_reconcile"]["in_sync"]


def _sales(backend: Any, user: str) -> str:
    teams = backend.list_objects(f"user:{user}", "member", "team")
    return teams[0].split(":", 1)[1]


def test_webhooks_commands(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(capsys, "webhooks", "register", "--json")
    assert code == 0 and result["url"] == "http://127.0.0.1:9/webhooks/espocrm"
    assert {row["status"] for row in result["webhooks"]} == {"created"}
    code, text = _run(capsys, "webhooks", "list")
    assert code == 0 and "Contact.update" in text and "secret stored" in text
    assert "secretKey" not in text and all(len(line) < 200 for line in text.splitlines())
    code, result = _run(capsys, "webhooks", "unregister", "--json")
    assert code == 0 and len(result["webhooks"]) > 30
    code, result = _run(capsys, "webhooks", "list", "--json")
    assert result["webhooks"] == []


def test_commands_fail_clearly_when_espocrm_is_down(env: Path, espocrm_server: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    espocrm_server.fault("down")
    assert main(["sync", "--no-progress"]) == 1
    assert main(["reconcile"]) == 1
    assert main(["webhooks", "list"]) == 1
    err = capsys.readouterr().err
    assert "EspoCRM" in err and "Traceback" not in err


def test_off_backend_refuses(env: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ESPOMCP_FGA_BACKEND", "off")
    assert main(["sync"]) == 2 and main(["reconcile"]) == 2
    assert "off" in capsys.readouterr().err


def test_unavailable_fga_store_stops_before_any_work(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ESPOMCP_FGA_MODEL_PATH", str(env / "missing-model.json"))
    assert main(["sync", "--no-progress"]) == 1 and main(["reconcile"]) == 1
    err = capsys.readouterr().err
    assert "FGA backend not available" in err and "Traceback" not in err
    assert not (env / "backfill_checkpoint.json").exists()
