"""Processes a benchmark runs: the fakes and gunicorn, each on a free loopback port.

``Stack`` starts them, waits until they answer, and terminates them (SIGTERM, then kill) on
``close()``; it is a context manager so a failing benchmark never leaves processes behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from fakes.espocrm import DEMO_API_KEY
from fakes.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and all its descendants, live or reaped (``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime + stime, plus cutime + cstime: workers gunicorn recycled and reaped
        cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
        stats[int(entry.name)] = (int(fields[1]), cpu)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers below 500, or raise with the process's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:g} s")


class Stack:
    """Owns the benchmark's child processes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.procs: list[subprocess.Popen[Any]] = []
        self.crm_proc: subprocess.Popen[Any] | None = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    # --- the pieces -----------------------------------------------------------------------
    def crm(self, leads: str = "", bulk: int = 0) -> str:
        """The benchmark fake EspoCRM (``bench.crm``) under gunicorn; returns its URL."""
        port = free_port()
        env = {"BENCH_CRM_LEADS": leads, "BENCH_CRM_BULK": str(bulk)}
        # -c /dev/null: not the project's gunicorn.conf.py (gunicorn reads it from the working
        # directory), whose worker recycling would reseed the fake's in-memory data mid-run.
        proc = self.spawn([sys.executable, "-m", "gunicorn", "-c", "/dev/null", "-w", "1",
                           "-k", "gthread",
                           "--threads", "8", "-b", f"127.0.0.1:{port}", "--keep-alive", "30",
                           "--timeout", "600", "--limit-request-line", "0",  # search sweep
                           "bench.crm:app()"], env)
        self.crm_proc = proc
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/_fake/users", proc, timeout=300)
        return url

    def auth0(self) -> str:
        """The fake Auth0 tenant; returns its issuer (trailing slash)."""
        port = free_port()
        proc = self.spawn([sys.executable, "-m", "fakes.auth0", "--port", str(port)])
        issuer = f"http://127.0.0.1:{port}/"
        wait_http(issuer + ".well-known/jwks.json", proc)
        return issuer

    def env(self, crm_url: str, issuer: str, public_url: str, **extra: str) -> dict[str, str]:
        """``ESPOMCP_*`` settings for a server of this stack."""
        values = {
            "ESPOMCP_PUBLIC_URL": public_url,
            "ESPOMCP_AUTH_ISSUER": issuer,
            "ESPOMCP_ESPOCRM_URL": crm_url,
            "ESPOMCP_ESPOCRM_API_KEY": DEMO_API_KEY,
            "ESPOMCP_DATA_DIR": str(self.data_dir),
            "ESPOMCP_RATE_LIMIT_PER_MINUTE": "0",
            "ESPOMCP_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),  # default: a line per call
        }
        values.update({f"ESPOMCP_{k.upper()}": v for k, v in extra.items()})
        return values

    def gunicorn(self, app: str, env: dict[str, str], port: int, *, workers: int = 2,
                 threads: int = 4, ready_path: str = "/healthz") -> subprocess.Popen[Any]:
        """``app`` under gunicorn with the production ``gunicorn.conf.py`` (gthread workers,
        JSON access log, worker recycling), ``workers`` x ``threads``, on ``port``."""
        env = {**env, "GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": str(threads),
               "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_GRACEFUL_TIMEOUT": "5"}
        proc = self.spawn([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                           "--keep-alive", "30", app], env)
        wait_http(f"http://127.0.0.1:{port}{ready_path}", proc)
        return proc
