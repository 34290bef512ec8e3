"""Settings: environment parsing, validation messages naming the variable, generated docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from espomcp.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_lists_come_comma_separated(monkeypatch):
    monkeypatch.setenv("ESPOMCP_ENTITY_TYPES", "Contact, Account")
    monkeypatch.setenv("ESPOMCP_DISABLED_TOOLS", "delete_record")
    settings = load_settings(_env_file=None)
    assert settings.entity_types == ["Contact", "Account"]
    assert settings.disabled_tools == ["delete_record"]


def test_mcp_url_and_audience_derive_from_public_url(monkeypatch):
    monkeypatch.setenv("ESPOMCP_PUBLIC_URL", "https://crm-mcp.example.com/")
    settings = load_settings(_env_file=None)
    assert settings.mcp_url == "https://crm-mcp.example.com/mcp"
    assert settings.audience == settings.mcp_url


@pytest.mark.parametrize("name,value", [
    ("ESPOMCP_PUBLIC_URL", "crm-mcp.example.com"),
    ("ESPOMCP_MAX_BODY_BYTES", "ten"),
    ("ESPOMCP_FGA_BACKEND", "maybe"),
    ("ESPOMCP_AUTH_ALGORITHMS", "HS256"),
])
def test_bad_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert name in str(info.value)


def test_hmac_needs_a_secret(monkeypatch):
    monkeypatch.setenv("ESPOMCP_ESPOCRM_AUTH", "hmac")
    with pytest.raises(ConfigError, match="ESPOMCP_ESPOCRM_SECRET_KEY"):
        load_settings(_env_file=None)


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ESPOMCP_READ_ONLY=true\n")
    assert load_settings().read_only is True


def test_cli_reports_config_errors_without_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ESPOMCP_FGA_BACKEND": "maybe", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "espomcp", "serve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "ESPOMCP_FGA_BACKEND" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_configuration_reference_is_current():
    proc = subprocess.run([sys.executable, "scripts/gen_config_doc.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_server_refuses_to_start_when_model_lacks_a_relation(tmp_path):
    import json

    from espomcp import create_app
    from espomcp.settings import Settings

    model = json.loads((ROOT / "fga" / "model.json").read_text())
    for td in model["type_definitions"]:
        if td["type"] == "contact":
            del td["relations"]["can_assign"]
            td["metadata"]["relations"].pop("can_assign", None)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    settings = Settings(_env_file=None, data_dir=tmp_path / "d", fga_model_path=path)
    with pytest.raises(ConfigError, match="contact#can_assign"):
        create_app(settings)
    narrowed = Settings(_env_file=None, data_dir=tmp_path / "e", fga_model_path=path,
                        entity_types=["Account", "User"])
    assert create_app(narrowed).extensions["espomcp"].fga.health()[0]


def test_commands_that_talk_to_espocrm_need_its_api_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for command in (["serve"], ["sync"], ["reconcile"], ["webhooks", "list"]):
        proc = subprocess.run([sys.executable, "-m", "espomcp", *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "ESPOMCP_ESPOCRM_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "var").exists()


def test_gunicorn_refuses_to_boot_without_the_api_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "/dev/null", "-b",
                           "127.0.0.1:0", "wsgi:app"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "ESPOMCP_ESPOCRM_API_KEY" in proc.stderr
