"""``espomcp demo`` starts the whole chain, serves a tool call, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from espomcp.cli.demo import prune_other_webhooks
from espomcp.sync import webhooks
from fakes.espocrm.seed import team_id, user_id
from fakes.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_chain_and_stops_on_sigterm(tmp_path):
    ports = [free_port() for _ in range(3)]
    log_path = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESPOMCP_")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "espomcp", "demo", "--port", str(ports[0]), "--auth-port",
             str(ports[1]), "--crm-port", str(ports[2]), "--data-dir", str(tmp_path / "demo")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "Press Ctrl-C to stop" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "demo did not come up"
                time.sleep(0.2)
            banner = log_path.read_text(errors="replace")
            mcp_url = f"http://127.0.0.1:{ports[0]}/mcp"
            assert mcp_url in banner and "alice" in banner and "password: demo" in banner

            env_token = dict(env, **banner_exports(banner))  # what the banner tells users
            assert env_token["ESPOMCP_ESPOCRM_API_KEY"] == "demo-api-key"
            assert env_token["ESPOMCP_AUTH_ISSUER"] == f"http://127.0.0.1:{ports[1]}/"
            token = subprocess.run([sys.executable, "-m", "espomcp", "token", "alice"],
                                   cwd=tmp_path, env=env_token, capture_output=True, text=True,
                                   timeout=60, check=True).stdout.strip()
            response = requests.post(mcp_url, json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "search_records", "arguments": {"entity_type": "Contact",
                                                                   "limit": 1}}},
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=30)
            result = response.json()["result"]
            assert result["isError"] is False, result
            assert result["structuredContent"]["total"] > 0
            ready = requests.get(f"http://127.0.0.1:{ports[0]}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            check = subprocess.run(  # a CLI command on the demo's store, as the banner says
                [sys.executable, "-m", "espomcp", "fga", "check", f"user:{user_id('alice')}",
                 "member", f"team:{team_id('Sales')}"],
                cwd=tmp_path, env=env_token, capture_output=True, text=True, timeout=60)
            assert check.returncode == 0, check.stdout + check.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert code == 0, log_path.read_text(errors="replace")[-3000:]
    assert "stopping" in log_path.read_text(errors="replace")
    for port in ports:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            stopped = False
        except requests.ConnectionError:
            stopped = True
        assert stopped, f"port {port} still answers after the demo stopped"


def banner_exports(banner: str) -> dict[str, str]:
    """The ``export NAME=value \\`` block of the demo banner as a dict."""
    lines = banner.split("    export ", 1)[1].splitlines()
    block = [lines[0]]
    while block[-1].endswith("\\"):
        block.append(lines[len(block)])
    words = shlex.split(" ".join(line.rstrip("\\") for line in block))
    return dict(word.split("=", 1) for word in words)


def test_webhooks_of_a_run_on_another_port_do_not_block_registration(espocrm_server, tmp_path):
    """A demo restarted with another --port on the same data dir registers its own webhooks
    (EspoCRM allows 50 per API user; the earlier run's 47 would leave no room)."""
    client = espocrm_server.client()
    old = espocrm_server.settings(public_url="http://127.0.0.1:8000", data_dir=tmp_path)
    new = espocrm_server.settings(public_url="http://127.0.0.1:8001", data_dir=tmp_path)
    try:
        webhooks.register_webhooks(client, old)
        assert prune_other_webhooks(client, new) == len(webhooks.planned_events(new.entity_types))
        rows = webhooks.register_webhooks(client, new)
        assert {h["url"] for h in client.list_webhooks()} == {webhooks.receiver_url(new)}
        assert all(r["status"] == "created" for r in rows if r["id"])
        assert set(webhooks.WebhookSecrets(tmp_path).load()) == {r["id"] for r in rows if r["id"]}
        assert prune_other_webhooks(client, new) == 0
    finally:
        client.close()


def test_busy_port_is_named_and_fresh_leaves_the_running_demos_data_alone(tmp_path):
    data = tmp_path / "demo"
    data.mkdir()
    (data / "espocrm.json").write_text("{}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESPOMCP_")}
        proc = subprocess.run(
            [sys.executable, "-m", "espomcp", "demo", "--port", str(free_port()), "--auth-port",
             str(busy), "--crm-port", str(free_port()), "--data-dir", str(data), "--fresh"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"--auth-port {busy} already in use" in proc.stderr
    assert (data / "espocrm.json").exists()
