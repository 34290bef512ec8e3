"""``espomcp init espocrm`` against the fake EspoCRM: the API user is verified, webhooks are
registered and the FGA store backfilled once; a second run changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from espomcp.cli import main
from espomcp.espocrm.client import ListPage
from espomcp.fga.backend import build_backend
from espomcp.provision.espocrm import EspoInit, check_service_account
from espomcp.provision.report import ProvisionError
from espomcp.sync.webhooks import WebhookSecrets, planned_events
from fakes.espocrm import DEMO_API_KEY

PUBLIC_URL = "http://127.0.0.1:8999"


def by_kind(result: Any, kind: str) -> list[Any]:
    return [item for item in result.items if item.kind == kind]


def test_twice_registers_and_backfills_once(espocrm_server, tmp_path: Path):
    settings = espocrm_server.settings(data_dir=tmp_path / "data", public_url=PUBLIC_URL)
    first = EspoInit(settings).run()
    assert first.ok
    checks = by_kind(first, "check")
    assert {c.action for c in checks} == {"passed"}
    assert checks[0].name == "EspoCRM service account" and "espomcp" in checks[0].changes[0]
    assert len(checks) == 1 + len(settings.entity_types)
    planned = planned_events(settings.entity_types)
    assert [w.action for w in by_kind(first, "webhook")] == ["create"] * len(planned)
    hooks = list(espocrm_server.state.webhooks.values())
    assert sorted(h["event"] for h in hooks) == sorted(planned)
    assert {h["url"] for h in hooks} == {PUBLIC_URL + "/webhooks/espocrm"}
    assert set(WebhookSecrets(settings.data_dir).load()) == {h["id"] for h in hooks}
    (backfill,) = by_kind(first, "backfill")
    assert backfill.action == "update" and "missing tuples written" in backfill.changes[-1]
    backend = build_backend(settings)
    tuples = backend.engine.tuple_count()
    assert tuples > 1000
    admin = espocrm_server.user_id("admin")
    assert backend.check(f"user:{admin}", "admin", "organization:main")

    espocrm_server.clear_requests()
    second = EspoInit(settings).run()
    assert second.ok
    assert {w.action for w in by_kind(second, "webhook")} == {"unchanged"}
    assert by_kind(second, "backfill")[0].action == "unchanged"
    assert len(espocrm_server.state.webhooks) == len(planned)
    assert [r for r in espocrm_server.requests() if r["method"] != "GET"] == []
    assert build_backend(settings).engine.tuple_count() == tuples
    assert second.env["ESPOMCP_ESPOCRM_API_KEY"] == "(the key used now)"


def test_dry_run_registers_and_writes_nothing(espocrm_server, tmp_path):
    settings = espocrm_server.settings(data_dir=tmp_path / "data", public_url=PUBLIC_URL)
    result = EspoInit(settings, dry_run=True).run()
    assert {w.action for w in by_kind(result, "webhook")} == {"create"}
    assert by_kind(result, "backfill")[0].action == "update"
    assert espocrm_server.state.webhooks == {}
    assert build_backend(settings).engine.tuple_count() == 0


def test_wrong_key_stops_before_any_change(espocrm_server, tmp_path, monkeypatch, capsys):
    settings = espocrm_server.settings(data_dir=tmp_path / "data", espocrm_api_key="wrong-key")
    result = EspoInit(settings).run()
    assert not result.ok
    (check,) = by_kind(result, "check")
    assert check.action == "failed" and "refused the apikey credentials (401)" in check.changes[0]
    assert "API Users" in check.changes[1]
    assert espocrm_server.state.webhooks == {}
    monkeypatch.setenv("ESPOMCP_ESPOCRM_URL", espocrm_server.url)
    monkeypatch.setenv("ESPOMCP_ESPOCRM_API_KEY", "wrong-key")
    monkeypatch.setenv("ESPOMCP_DATA_DIR", str(tmp_path / "cli"))
    assert main(["init", "espocrm"]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "wrong-key" not in out
    with pytest.raises(ProvisionError, match="ESPOMCP_ESPOCRM_API_KEY is empty"):
        EspoInit(espocrm_server.settings(espocrm_api_key="")).run()


def test_denied_read_access_is_named(espocrm_server, tmp_path):
    espocrm_server.fake.deny("Lead", "read")
    result = EspoInit(espocrm_server.settings(data_dir=tmp_path / "data"), backfill=False).run()
    failed = [c for c in by_kind(result, "check") if c.action == "failed"]
    assert [c.name for c in failed] == ["EspoCRM read access: Lead"]
    assert "read access to Lead" in failed[0].changes[1]
    assert not result.ok and espocrm_server.state.webhooks == {}


def test_hmac_service_account(espocrm_server):
    client = espocrm_server.client(espocrm_auth="hmac")
    findings = check_service_account(client, espocrm_server.settings(espocrm_auth="hmac"))
    client.close()
    assert all(f.ok for f in findings)
    assert "espomcp-hmac" in findings[0].detail and "hmac" in findings[0].detail


class AclReportingCrm:
    """A CRM whose App/user reports the role's ACL table (real EspoCRM does; the fake does not)."""

    def app_user(self) -> dict[str, Any]:
        return {"user": {"userName": "svc", "type": "api"},
                "acl": {"table": {"Contact": {"read": "all", "create": "all", "edit": "all",
                                              "delete": "all"},
                                  "Lead": {"read": "all", "create": "all", "edit": "no",
                                           "delete": "no"},
                                  "Webhook": False}}}

    def list_records(self, entity_type: str, **kwargs: Any) -> ListPage:
        return ListPage(total=3, list=[])


def test_acl_table_reveals_missing_write_access_and_webhook_scope(espocrm_server):
    settings = espocrm_server.settings(entity_types="Contact,Lead,User")
    findings = {f.check: f for f in check_service_account(AclReportingCrm(), settings)}
    assert findings["EspoCRM read access: Lead"].ok
    assert not findings["EspoCRM write access: Lead"].ok
    assert "edit, delete" in findings["EspoCRM write access: Lead"].detail
    assert "EspoCRM write access: Contact" not in findings
    assert "EspoCRM write access: User" not in findings  # read-only type
    assert not findings["EspoCRM Webhook scope"].ok
    read_only = espocrm_server.settings(entity_types="Contact,Lead", read_only=True)
    names = {f.check for f in check_service_account(AclReportingCrm(), read_only)}
    assert "EspoCRM write access: Lead" not in names


def test_cli_prints_plan_and_env(espocrm_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ESPOMCP_ESPOCRM_URL", espocrm_server.url)
    monkeypatch.setenv("ESPOMCP_ESPOCRM_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("ESPOMCP_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("ESPOMCP_ENTITY_TYPES", "Account,User,Team")
    assert main(["init", "espocrm", "--skip-backfill"]) == 0
    out = capsys.readouterr().out
    assert "create           webhook: Account.create" in out
    assert "ESPOMCP_ESPOCRM_URL=" + espocrm_server.url in out
    assert DEMO_API_KEY not in out


def test_webhook_budget_of_the_api_user_is_explained(espocrm_server, tmp_path):
    first = espocrm_server.settings(data_dir=tmp_path / "a", public_url="http://127.0.0.1:8998")
    assert EspoInit(first, backfill=False).run().ok
    other = espocrm_server.settings(data_dir=tmp_path / "b", public_url=PUBLIC_URL)
    with pytest.raises(ProvisionError, match="at most 50 webhooks: use one API user per espomcp"):
        EspoInit(other, backfill=False).run()
