"""``espomcp init fga`` against the fake OpenFGA (no auth, api token, client credentials) and
the embedded engine: store and model created once, verified with the store tests through the
SDK without writing tuples, nothing written on a second run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from espomcp.cli import main
from espomcp.fga.dsl import parse_dsl
from espomcp.provision.fga import FgaInit, FgaInitOptions, same_model
from espomcp.provision.report import ProvisionError
from espomcp.settings import Settings
from tests.fixtures.fga_backends import REPO, fga_model_json


def actions(result: Any) -> dict[str, str]:
    return {item.kind: item.action for item in result.items}


def broken_model(tmp_path: Path) -> Path:
    """Our model, except that a contact's account editors no longer read it."""
    text = (REPO / "fga" / "model.fga").read_text(encoding="utf-8")
    marker = "define can_read: can_write or collaborator or member from team or can_write from parent\n"
    assert marker in text
    path = tmp_path / "broken.json"
    broken = text.replace(marker, "define can_read: can_write or collaborator or member from team\n", 1)
    path.write_text(json.dumps(parse_dsl(broken)), encoding="utf-8")
    return path


def test_twice_against_openfga(fake_openfga, fga_settings: Callable[..., Settings]):
    settings = fga_settings(fga_api_url=fake_openfga.url)
    first = FgaInit(settings, FgaInitOptions()).run()
    assert actions(first) == {"store": "create", "model": "create", "verification": "passed"}
    assert first.verified is True and "Checks 305/305 passing" in first.report
    (store,) = fake_openfga.state.stores.values()
    assert store.name == "espomcp" and len(store.models) == 1
    assert same_model(store.models[0][1], fga_model_json())
    assert store.engine().tuple_count() == 0  # the store tests used contextual tuples only
    assert first.env == {"ESPOMCP_FGA_BACKEND": "openfga", "ESPOMCP_FGA_API_URL": fake_openfga.url,
                         "ESPOMCP_FGA_STORE_ID": store.id, "ESPOMCP_FGA_MODEL_ID": store.models[0][0]}

    second = FgaInit(settings, FgaInitOptions()).run()
    assert actions(second) == {"store": "unchanged", "model": "unchanged", "verification": "passed"}
    assert len(fake_openfga.state.stores) == 1 and len(store.models) == 1
    assert second.env == first.env


def test_dry_run_creates_nothing(fake_openfga, fga_settings):
    result = FgaInit(fga_settings(fga_api_url=fake_openfga.url), FgaInitOptions(dry_run=True)).run()
    assert actions(result) == {"store": "create"}
    assert fake_openfga.state.stores == {}


def test_client_credentials_existing_store_with_an_older_model(fake_openfga_auth, fga_settings):
    older = fga_model_json()
    older["type_definitions"] = [t for t in older["type_definitions"] if t["type"] != "note"]
    store_id, old_model = fake_openfga_auth.new_store(older, name="prod")
    settings = fga_settings(fga_api_url=fake_openfga_auth.url, fga_client_id="fga-client",
                            fga_client_secret="fga-secret", fga_api_issuer=fake_openfga_auth.url,
                            fga_api_audience="https://fga.example/")
    planned = FgaInit(settings, FgaInitOptions(store_id=store_id, dry_run=True)).run()
    assert actions(planned) == {"store": "unchanged", "model": "create"}  # nothing verified
    assert len(fake_openfga_auth.state.stores[store_id].models) == 1
    first = FgaInit(settings, FgaInitOptions(store_id=store_id, verify=False)).run()
    assert actions(first) == {"store": "unchanged", "model": "create"}
    model_item = next(i for i in first.items if i.kind == "model")
    assert f"latest model {old_model} differs" in model_item.changes
    store = fake_openfga_auth.state.stores[store_id]
    assert len(store.models) == 2 and same_model(store.models[-1][1], fga_model_json())
    assert fake_openfga_auth.state.token_requests >= 1
    assert first.env["ESPOMCP_FGA_CLIENT_SECRET"] == "(the secret used now)"
    second = FgaInit(settings, FgaInitOptions(store_id=store_id, verify=False)).run()
    assert actions(second) == {"store": "unchanged", "model": "unchanged"}
    assert len(store.models) == 2


def test_api_token_and_rejected_credentials(fake_openfga_auth, fga_settings):
    good = fga_settings(fga_api_url=fake_openfga_auth.url, fga_api_token="preshared-token")
    result = FgaInit(good, FgaInitOptions(verify=False, store_name="tok")).run()
    assert actions(result) == {"store": "create", "model": "create"}
    assert "preshared-token" not in json.dumps(result.env)
    bad = fga_settings(fga_api_url=fake_openfga_auth.url, fga_api_token="wrong")
    with pytest.raises(ProvisionError, match="credentials rejected"):
        FgaInit(bad, FgaInitOptions(verify=False)).run()


def test_unknown_store_id_and_unreachable_server(fake_openfga, fga_settings):
    settings = fga_settings(fga_api_url=fake_openfga.url)
    with pytest.raises(ProvisionError, match="GetStore failed: not found"):
        FgaInit(settings, FgaInitOptions(store_id="01HZZZZZZZZZZZZZZZZZZZZZZZ", verify=False)).run()
    with pytest.raises(ProvisionError, match="OpenFGA unreachable during ListStores"):
        FgaInit(fga_settings(fga_api_url="http://127.0.0.1:9"), FgaInitOptions(verify=False)).run()


def test_cli_fails_when_the_store_tests_fail(fake_openfga, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ESPOMCP_FGA_API_URL", fake_openfga.url)
    monkeypatch.setenv("ESPOMCP_DATA_DIR", str(tmp_path / "data"))
    assert main(["init", "fga", "--model", str(broken_model(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "(FAILING) parent-editors-read-children" in out
    assert "ESPOMCP_FGA_STORE_ID=" in out


def test_embedded_backend_is_verified_locally(fga_settings):
    result = FgaInit(fga_settings(), FgaInitOptions()).run()
    assert actions(result) == {"store": "unchanged", "model": "unchanged", "verification": "passed"}
    assert result.env == {"ESPOMCP_FGA_BACKEND": "embedded"}
    with pytest.raises(ProvisionError, match="no OpenFGA API URL"):
        FgaInit(fga_settings(fga_backend="off"), FgaInitOptions()).run()
