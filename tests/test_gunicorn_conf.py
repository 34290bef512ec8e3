"""gunicorn.conf.py: production defaults load; a server started with it serves /healthz and
/metrics sums the counters of every worker; ProxyFix honours X-Forwarded-* when configured."""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from espomcp.settings import Settings
from fakes.espocrm import DEMO_API_KEY
from fakes.server import free_port

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "gunicorn.conf.py"


def test_config_loads_with_production_defaults(monkeypatch):
    for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_BIND", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    conf = runpy.run_path(str(CONF))
    cores = os.cpu_count() or 1
    assert conf["workers"] == min(2 * cores + 1, 8)
    assert conf["default_workers"](1) == 3 and conf["default_workers"](16) == 8
    assert conf["threads"] >= 2 and conf["worker_class"] == "gthread"
    assert conf["timeout"] > Settings.model_fields["request_timeout_seconds"].default
    assert 0 < conf["graceful_timeout"] <= conf["timeout"]
    assert conf["bind"] == "127.0.0.1:8000"
    assert conf["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert conf["preload_app"] is False
    for hook in ("on_starting", "child_exit", "worker_exit", "on_exit"):
        assert callable(conf[hook])
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.2")
    conf = runpy.run_path(str(CONF))
    assert conf["workers"] == 3 and conf["forwarded_allow_ips"] == "10.0.0.2"


def test_hooks_prepare_metrics_dir_and_stop_the_drainer(monkeypatch, tmp_path):
    conf = runpy.run_path(str(CONF))
    stale = tmp_path / "prom" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(stale.parent))
    conf["on_starting"](None)
    assert not stale.exists()  # counters of a previous run do not add up

    class Outbox:
        stopped = False

        def stop_drainer(self) -> None:
            Outbox.stopped = True

    class Svc:
        extras = {"outbox": Outbox()}

    class App:
        extensions = {"espomcp": Svc()}

    class Worker:
        wsgi = App()
        pid = 999_999

    conf["worker_exit"](None, Worker())
    assert Outbox.stopped
    conf["child_exit"](None, Worker())  # marks a dead pid without failing


def test_child_exit_drops_a_dead_workers_outbox_gauge(tmp_path, monkeypatch):
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    directory = tmp_path / "prom"
    directory.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory))
    script = ("import os; from espomcp.metrics import Metrics; m = Metrics(); "
              "m.outbox_depth.set(7); print(os.getpid())")
    worker_pid = int(subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True,
                                    capture_output=True, text=True).stdout)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))

    def scrape() -> str:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
        return generate_latest(registry).decode()

    assert "espomcp_outbox_depth 7.0" in scrape()

    class Worker:
        pid = worker_pid

    runpy.run_path(str(CONF))["child_exit"](None, Worker())
    assert "espomcp_outbox_depth 7.0" not in scrape()


@pytest.fixture
def gunicorn_with_conf(tmp_path: Path, auth_server: Any, espocrm_server: Any) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({
        "ESPOMCP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ESPOMCP_AUTH_ISSUER": auth_server.issuer,
        "ESPOMCP_ESPOCRM_URL": espocrm_server.url,
        "ESPOMCP_ESPOCRM_API_KEY": DEMO_API_KEY,
        "ESPOMCP_DATA_DIR": str(tmp_path / "data"),
        "ESPOMCP_TRUSTED_PROXIES": "1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "2",
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
    })
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONF), "wsgi:app"],
                                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start: " + log.read_text()[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["path"] for line in lines)  # JSON access log


def _counter(text: str, path: str) -> float:
    pattern = rf'espomcp_http_requests_total\{{path="{re.escape(path)}",status="200"\}} ([0-9.e+]+)'
    return sum(float(m) for m in re.findall(pattern, text))


def test_server_with_conf_serves_health_and_aggregated_metrics(gunicorn_with_conf):
    url = gunicorn_with_conf
    before = _counter(requests.get(url + "/metrics", timeout=5).text, "/healthz")
    assert before >= 1  # the fixture's start-up probe
    for _ in range(20):  # a fresh connection each time: the requests spread over both workers
        response = requests.get(url + "/healthz", headers={"Connection": "close"}, timeout=5)
        assert response.status_code == 200
    # whichever worker answers the scrape, it reports the sum over all workers
    for _ in range(4):
        metrics = requests.get(url + "/metrics", headers={"Connection": "close"}, timeout=5)
        assert metrics.status_code == 200
        assert _counter(metrics.text, "/healthz") == before + 20


def test_proxy_fix_honours_forwarded_headers_only_when_trusted(tmp_path):
    from flask import jsonify, request

    from espomcp import create_app

    seen = {}
    for proxies in (0, 1):
        settings = Settings(_env_file=None, public_url="https://crm-mcp.example.com",  # type: ignore[call-arg]
                            data_dir=tmp_path / str(proxies), trusted_proxies=proxies)
        app = create_app(settings)
        app.add_url_rule("/_probe", "probe", lambda: jsonify(
            scheme=request.scheme, remote=request.remote_addr, host=request.host))
        response = app.test_client().get("/_probe", headers={
            "Host": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Host": "crm-mcp.example.com"})
        seen[proxies] = response.get_json()
        app.extensions["espomcp"].extras["outbox"].stop_drainer()
    assert seen[1] == {"scheme": "https", "remote": "203.0.113.9", "host": "crm-mcp.example.com"}
    assert seen[0]["scheme"] == "http" and seen[0]["remote"] == "127.0.0.1"
