"""Instructions per request of a gunicorn worker, counted by valgrind: ``python -m bench.instructions``.

Requests per second on a shared 2-core VM moved ±20 % between runs minutes apart, which hid
changes of a few percent. Instructions are deterministic: the same code, input and
environment execute the same count whatever else the machine does. This starts the MCP server
and the baseline route each under ``valgrind --tool=callgrind`` (one worker, one thread, the
production ``gunicorn.conf.py``), warms them up, zeroes the counters, sends N requests one at a
time, dumps the counters and prints the worker's instructions per request for both, plus their
ratio. It counts user-space instructions only (no kernel time, no cache misses): use it to
compare changes, the load benchmark (``make bench``) for throughput.

Needs valgrind (``apt-get install valgrind``); takes about two minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.load import LEADS, MCP_HEADERS, backfill, rpc, settings_for
from bench.stack import ROOT, Stack
from espomcp.espocrm.client import EspoClient
from fakes.auth0.models import Auth0Backend
from fakes.espocrm.seed import user_id
from fakes.server import free_port

APPS = {"mcp": "wsgi:app", "baseline": "bench.baseline_app:app"}


def count(which: str, stack: Stack, crm_url: str, issuer: str, requests_n: int,
          out_dir: Path) -> int:
    """Worker instructions per request for ``which`` (``mcp`` or ``baseline``)."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = settings_for(stack, crm_url, issuer, public)
    env = {**os.environ, **stack.env(crm_url, issuer, public), "GUNICORN_WORKERS": "1",
           "GUNICORN_THREADS": "1", "GUNICORN_BIND": f"127.0.0.1:{port}",
           "GUNICORN_TIMEOUT": "600", "PYTHONHASHSEED": "0"}
    dumps = out_dir / which
    dumps.mkdir()
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--trace-children=yes",
         f"--callgrind-out-file={dumps}/%p.out", sys.executable, "-m", "gunicorn", "-c",
         str(ROOT / "gunicorn.conf.py"), APPS[which]],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        crm = EspoClient.from_settings(settings)
        contact = crm.list_records("Contact", where=[{"type": "equals", "attribute":
                                                      "assignedUserId", "value": user_id("alice")}],
                                   select=["id"], max_size=1).list[0]["id"]
        crm.close()
        token = Auth0Backend(issuer=issuer).mint("alice", aud=settings.mcp_url)
        session = requests.Session()

        def call() -> None:
            if which == "mcp":
                response = session.post(settings.mcp_url, timeout=600,
                                        json=rpc("get_record", {"entity_type": "Contact",
                                                                "id": contact}),
                                        headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
                ok = response.status_code == 200 and not response.json()["result"]["isError"]
            else:
                response = session.get(f"{public}/record/Contact/{contact}", timeout=600)
                ok = response.status_code == 200
            if not ok:
                raise RuntimeError(f"{which} answered {response.status_code}: {response.text[:200]}")

        deadline = time.monotonic() + 600  # starting under valgrind takes a while
        while True:
            try:
                call()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        for _ in range(100):
            call()
        subprocess.run(["callgrind_control", "--zero"], check=True, capture_output=True)
        for _ in range(requests_n):
            call()
        subprocess.run(["callgrind_control", "--dump"], check=True, capture_output=True)
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    totals = []
    for part in dumps.glob("*.out.1"):  # the explicit dump of each process: the worker's is largest
        found = re.search(r"^summary: (\d+)", part.read_text(errors="replace"), re.M)
        if found:
            totals.append(int(found.group(1)))
    if not totals:
        raise RuntimeError(f"no callgrind dump for {which}")
    return max(totals) // requests_n


def main(argv: list[str]) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    requests_n = int(argv[1]) if len(argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp)) as stack:
        crm_url, issuer = stack.crm(leads=LEADS), stack.auth0()
        backfill(settings_for(stack, crm_url, issuer, "http://127.0.0.1:1"))
        result: dict[str, Any] = {}
        for which in APPS:
            result[f"{which}_instructions_per_request"] = count(which, stack, crm_url, issuer,
                                                                requests_n, Path(tmp))
    result["instructions_ratio"] = round(result["mcp_instructions_per_request"]
                                         / result["baseline_instructions_per_request"], 3)
    for key, value in result.items():
        print(f"{key:40s} {value:>12,}")
    (ROOT / "bench" / "instructions.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
