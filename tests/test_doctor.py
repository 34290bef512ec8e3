"""``espomcp doctor`` against a running stack (fake Auth0, fake EspoCRM, the server): a good
configuration passes every check; each deliberately broken one fails the right check with a fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from espomcp import create_app
from espomcp.cli import main
from espomcp.fga.tuples import TupleKey
from espomcp.provision.auth0 import Auth0Options, Auth0Provisioner, ManagementClient
from espomcp.provision.doctor import run_checks
from espomcp.provision.espocrm import EspoInit
from espomcp.provision.report import Finding
from espomcp.settings import Settings
from espomcp.sync.outbox import Outbox
from fakes.auth0 import FakeAuth0
from fakes.auth0.management import MANAGEMENT_CLIENT_ID, MANAGEMENT_CLIENT_SECRET
from fakes.espocrm import DEMO_API_KEY, FakeEspoCRM
from fakes.server import ServerThread, free_port
from tests.fixtures.fga_backends import fga_model_json


@dataclass
class Stack:
    settings: Settings
    auth: FakeAuth0
    crm: FakeEspoCRM
    port: int

    def variant(self, **changes: Any) -> Settings:
        """The good settings with ``changes``, validated like the environment would be."""
        return Settings(_env_file=None, **{**self.settings.model_dump(), **changes})  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    auth = FakeAuth0().start()
    crm = FakeEspoCRM().start()
    port = free_port()
    settings = Settings(_env_file=None, public_url=f"http://127.0.0.1:{port}",  # type: ignore[call-arg]
                        auth_issuer=auth.url, espocrm_url=crm.url, espocrm_api_key=DEMO_API_KEY,
                        data_dir=tmp_path_factory.mktemp("doctor") / "data",
                        rate_limit_per_minute=0)
    assert EspoInit(settings).run().ok  # webhooks + backfill, as an operator would
    app = create_app(settings)
    server = ServerThread(app, port=port).start()
    try:
        yield Stack(settings, auth, crm, port)
    finally:
        app.extensions["espomcp"].extras["outbox"].stop_drainer()
        server.stop()
        crm.stop()
        auth.stop()


def check(settings: Settings, **kwargs: Any) -> list[Finding]:
    """``run_checks`` without Management API credentials from the environment."""
    kwargs.setdefault("env", {})
    return run_checks(settings, **kwargs)


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def failed(findings: list[Finding]) -> list[str]:
    return [f.check for f in findings if not f.ok]


def test_good_configuration_passes_everything(stack):
    findings = check(stack.settings)
    assert failed(findings) == []
    checks = by_check(findings)
    for name in ("issuer discovery", "JWKS", "token audience", "protected resource metadata",
                 "FGA backend", "FGA model", "EspoCRM service account", "EspoCRM webhooks",
                 "outbox"):
        assert name in checks
    assert all(f"EspoCRM read access: {t}" in checks for t in stack.settings.entity_types)
    assert "demo-2026-a" in checks["JWKS"].detail
    assert "protected resource metadata" not in by_check(check(stack.settings, offline=True))


def test_auth0_tenant_checked_with_management_credentials(stack):
    env = {"AUTH0_CLIENT_ID": MANAGEMENT_CLIENT_ID, "AUTH0_CLIENT_SECRET": MANAGEMENT_CLIENT_SECRET}
    before = by_check(check(stack.settings, offline=True, env=env))["Auth0 tenant"]
    assert not before.ok and f"API {stack.settings.mcp_url}" in before.detail
    assert before.fix.startswith("espomcp init auth0")
    client = ManagementClient(stack.auth.url, MANAGEMENT_CLIENT_ID, MANAGEMENT_CLIENT_SECRET)
    Auth0Provisioner(client, stack.settings.mcp_url, Auth0Options()).apply()
    after = check(stack.settings, offline=True, env=env)
    assert failed(after) == [] and by_check(after)["Auth0 tenant"].ok
    wrong = by_check(check(stack.settings, offline=True, env={**env, "AUTH0_CLIENT_SECRET": "x"}))
    assert not wrong["Auth0 tenant"].ok and "refused" in wrong["Auth0 tenant"].detail


def test_wrong_issuer(stack):
    findings = by_check(check(stack.variant(auth_issuer=stack.auth.url.rstrip("/"))))
    issuer = findings["issuer discovery"]
    assert not issuer.ok and "byte-identical" in issuer.detail
    assert issuer.fix == f"set ESPOMCP_AUTH_ISSUER={stack.auth.url}"
    assert not findings["protected resource metadata"].ok  # the server names the real issuer


def test_unreachable_issuer_and_bad_jwks(stack):
    findings = by_check(check(stack.variant(auth_issuer="http://127.0.0.1:9/"), offline=True))
    assert not findings["issuer discovery"].ok and "unreachable" in findings["issuer discovery"].detail
    assert "trailing slash" in findings["issuer discovery"].fix
    jwks = by_check(check(stack.variant(auth_jwks_url=stack.auth.url + "nope.json"),
                               offline=True))["JWKS"]
    assert not jwks.ok and "answered 404" in jwks.detail and "ESPOMCP_AUTH_JWKS_URL" in jwks.fix


def test_wrong_audience(stack):
    findings = by_check(check(stack.variant(auth_audience="https://other.example.com/mcp"),
                                   offline=True))
    audience = findings["token audience"]
    assert not audience.ok and "every token will be refused" in audience.detail
    assert "leave ESPOMCP_AUTH_AUDIENCE empty" in audience.fix


def test_wrong_resource(stack):
    findings = by_check(check(stack.variant(public_url=f"http://localhost:{stack.port}")))
    prm = findings["protected resource metadata"]
    assert not prm.ok
    assert f"announces resource 'http://127.0.0.1:{stack.port}/mcp'" in prm.detail
    assert "same ESPOMCP_PUBLIC_URL" in prm.fix


def test_server_not_running(stack):
    prm = by_check(check(stack.variant(public_url="http://127.0.0.1:9")))[
        "protected resource metadata"]
    assert not prm.ok and "--offline" in prm.fix


def test_model_lacking_a_relation(stack, tmp_path: Path):
    model = fga_model_json()
    contact = next(t for t in model["type_definitions"] if t["type"] == "contact")
    del contact["relations"]["can_assign"]
    del contact["metadata"]["relations"]["can_assign"]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model), encoding="utf-8")
    findings = by_check(check(stack.variant(fga_model_path=path, data_dir=tmp_path / "d"),
                                   offline=True))
    assert not findings["FGA model"].ok
    assert findings["FGA model"].detail == "missing: contact#can_assign"
    assert "Changing the model" in findings["FGA model"].fix


def test_fga_backend_down(stack):
    findings = by_check(check(stack.variant(
        fga_backend="openfga", fga_api_url="http://127.0.0.1:9",
        fga_store_id="01HZZZZZZZZZZZZZZZZZZZZZZZ", fga_timeout_seconds=1.0), offline=True))
    assert not findings["FGA backend"].ok and "init fga" in findings["FGA backend"].fix
    assert not findings["FGA model"].ok


def test_espocrm_bad_key(stack):
    findings = check(stack.variant(espocrm_api_key="wrong"), offline=True)
    account = by_check(findings)["EspoCRM service account"]
    assert not account.ok and "(401)" in account.detail and "API Users" in account.fix
    assert "EspoCRM webhooks" not in by_check(findings)
    assert failed(findings) == ["EspoCRM service account"]


def test_webhooks_missing(stack, tmp_path):
    hooks = by_check(check(stack.variant(data_dir=tmp_path / "fresh"), offline=True))[
        "EspoCRM webhooks"]
    assert not hooks.ok and "not registered" in hooks.detail
    assert hooks.fix == "espomcp webhooks register (or espomcp init espocrm)"


def test_outbox_not_empty(stack, tmp_path):
    data_dir = tmp_path / "queued"
    Outbox(data_dir / "outbox.sqlite3").enqueue([TupleKey("user:x", "owner", "account:y", None)],
                                                error="FGA down")
    outbox = by_check(check(stack.variant(data_dir=data_dir), offline=True))["outbox"]
    assert not outbox.ok and outbox.detail.startswith("1 tuple change(s) waiting")
    assert "reconcile --fix" in outbox.fix


def test_cli_exit_codes_and_json(stack, monkeypatch, capsys):
    s = stack.settings
    monkeypatch.delenv("AUTH0_CLIENT_ID", raising=False)
    for key, value in {"ESPOMCP_PUBLIC_URL": s.public_url, "ESPOMCP_AUTH_ISSUER": s.auth_issuer,
                       "ESPOMCP_ESPOCRM_URL": s.espocrm_url, "ESPOMCP_ESPOCRM_API_KEY": DEMO_API_KEY,
                       "ESPOMCP_DATA_DIR": str(s.data_dir)}.items():
        monkeypatch.setenv(key, value)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[PASS] issuer discovery" in out and "checks passed" in out
    monkeypatch.setenv("ESPOMCP_ESPOCRM_API_KEY", "wrong")
    assert main(["doctor", "--json", "--offline"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    bad = [f for f in report["findings"] if not f["ok"]]
    assert [f["check"] for f in bad] == ["EspoCRM service account"] and bad[0]["fix"]
