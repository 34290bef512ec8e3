"""``espomcp demo`` starts the whole chain, serves a tool call, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

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

            env_token = dict(env, ESPOMCP_PUBLIC_URL=f"http://127.0.0.1:{ports[0]}",
                             ESPOMCP_AUTH_ISSUER=f"http://127.0.0.1:{ports[1]}/")
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
