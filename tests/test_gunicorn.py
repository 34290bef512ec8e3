"""``gunicorn wsgi:app`` serves the same endpoint (2 workers, real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fakes.espocrm import DEMO_API_KEY
from fakes.server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gunicorn_server(tmp_path: Path, auth_server: Any, espocrm_server: Any) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.update({
        "ESPOMCP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ESPOMCP_AUTH_ISSUER": auth_server.issuer,
        "ESPOMCP_ESPOCRM_URL": espocrm_server.url,
        "ESPOMCP_ESPOCRM_API_KEY": DEMO_API_KEY,
        "ESPOMCP_DATA_DIR": str(tmp_path / "data"),
    })
    log_path = tmp_path / "gunicorn.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "5", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start: "
                                   + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
            proc.wait(timeout=10)
        log_file.close()


def test_gunicorn_two_workers_serve_tools(gunicorn_server, mint_token):
    url = gunicorn_server + "/mcp"
    token = mint_token("alice", audience=url)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
               "MCP-Protocol-Version": "2025-11-25"}
    subs = set()
    for i in range(6):
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "whoami", "arguments": {}}}
        response = requests.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == 200
        result = response.json()["result"]
        assert result["isError"] is False
        subs.add(result["structuredContent"]["sub"])
    assert len(subs) == 1
    unauthenticated = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                    headers={"Accept": "application/json"}, timeout=10)
    assert unauthenticated.status_code == 401
    assert "resource_metadata=" in unauthenticated.headers["WWW-Authenticate"]
