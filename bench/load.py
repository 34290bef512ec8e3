"""Whole-chain HTTP benchmarks under gunicorn: MCP ``get_record`` vs the bare baseline, and
``search_records`` pages, each driven by ``bench.loadgen`` in its own process.

Rounds alternate baseline, MCP and search runs against the same fake EspoCRM, so the ratio
compares runs made side by side; each figure is the median over the rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stack import ROOT, Stack, cpu_seconds
from espomcp.espocrm.client import EspoClient
from espomcp.fga.backend import build_backend
from espomcp.settings import Settings
from espomcp.sync.backfill import Backfill
from espomcp.sync.outbox import Outbox, TupleWriter
from fakes.auth0.models import Auth0Backend
from fakes.espocrm.seed import user_id
from fakes.server import free_port

# Team-less leads per user: readable-set sizes for the search sweep (bench.search).
LEADS = "140:alice,100:dave,250:frank,500:erin,2000:carol"
MCP_HEADERS = {"Accept": "application/json", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2025-11-25"}


def settings_for(stack: Stack, crm_url: str, issuer: str, public_url: str) -> Settings:
    env = stack.env(crm_url, issuer, public_url)
    values = {k.removeprefix("ESPOMCP_").lower(): v for k, v in env.items()}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def backfill(settings: Settings) -> Any:
    """Fill the embedded FGA store of ``settings`` from the CRM (what ``espomcp sync`` does)."""
    crm = EspoClient.from_settings(settings)
    backend = build_backend(settings)
    summary = Backfill(crm, backend, TupleWriter(Outbox.from_settings(settings)),
                       settings.data_dir, entity_types=settings.entity_types).run(fresh=True)
    crm.close()
    if not summary.complete:
        raise RuntimeError(f"backfill incomplete: {summary.message}")
    return summary


def loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``bench.loadgen`` with ``spec`` in a separate process and return its summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    out = subprocess.run([sys.executable, "-m", "bench.loadgen", handle.name], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=600)
    Path(handle.name).unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


def rpc(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


def check_call(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request outside the measurement: the benchmark must measure successes."""
    import requests

    response = requests.post(url, json=body, timeout=60,
                             headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
    response.raise_for_status()
    result = response.json()["result"]
    if result.get("isError"):
        raise RuntimeError(f"benchmark call failed: {result['content'][0]['text']}")
    return result["structuredContent"]


def run(data_dir: Path, *, rounds: int = 3, duration: float = 4.0, concurrency: int = 8,
        log: Any = print) -> dict[str, Any]:
    """Start the stack, run the rounds, return the medians (and the stack's details)."""
    with Stack(data_dir) as stack:
        crm_url = stack.crm(leads=LEADS)
        issuer = stack.auth0()
        mcp_port, base_port = free_port(), free_port()
        public = f"http://127.0.0.1:{mcp_port}"
        settings = settings_for(stack, crm_url, issuer, public)
        log("  backfilling the FGA store …")
        backfill(settings)
        mcp_proc = stack.gunicorn("wsgi:app", stack.env(crm_url, issuer, public), mcp_port)
        base_proc = stack.gunicorn("bench.baseline_app:app", stack.env(crm_url, issuer, public),
                                   base_port, ready_path="/")
        assert stack.crm_proc is not None
        servers = {"baseline": base_proc.pid, "mcp": mcp_proc.pid, "search": mcp_proc.pid,
                   "baseline_serial": base_proc.pid, "mcp_serial": mcp_proc.pid}
        crm_pid = stack.crm_proc.pid
        crm = EspoClient.from_settings(settings)
        alice = user_id("alice")
        contact = crm.list_records("Contact", where=[{"type": "equals", "attribute":
                                                      "assignedUserId", "value": alice}],
                                   select=["id"], max_size=1).list[0]["id"]
        crm.close()
        token = Auth0Backend(issuer=issuer).mint("alice", aud=settings.mcp_url)
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        get_body = rpc("get_record", {"entity_type": "Contact", "id": contact})
        search_body = rpc("search_records", {"entity_type": "Lead", "limit": 200})
        check_call(settings.mcp_url, token, get_body)
        page = check_call(settings.mcp_url, token, search_body)
        if len(page["records"]) != 200:
            raise RuntimeError(f"search page has {len(page['records'])} records, not 200")
        common = {"concurrency": concurrency, "duration": duration, "warmup": 0.5}
        specs = {
            "baseline": {**common, "url": f"http://127.0.0.1:{base_port}/record/Contact/{contact}",
                         "method": "GET", "headers": {"Accept": "application/json"}},
            "mcp": {**common, "url": settings.mcp_url, "headers": headers, "bodies": [get_body]},
            "search": {**common, "url": settings.mcp_url, "headers": headers,
                       "bodies": [search_body], "concurrency": max(2, concurrency // 2)},
        }
        # one client at a time: the latency a request pays, without queueing for the CPUs
        specs["baseline_serial"] = {**specs["baseline"], "concurrency": 1}
        specs["mcp_serial"] = {**specs["mcp"], "concurrency": 1}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
        for n in range(rounds):
            for name, spec in specs.items():
                before = cpu_seconds(servers[name]), cpu_seconds(crm_pid)
                result = loadgen(spec)
                after = cpu_seconds(servers[name]), cpu_seconds(crm_pid)
                calls = max(1, result["sent"])
                result["server_cpu_ms"] = (after[0] - before[0]) / calls * 1000
                result["crm_cpu_ms"] = (after[1] - before[1]) / calls * 1000
                if result["errors"]:
                    raise RuntimeError(f"{name} run had errors: {result['statuses']}")
                runs[name].append(result)
            log(f"  round {n + 1}/{rounds}: baseline {runs['baseline'][-1]['rps']:.0f} rps, "
                f"mcp {runs['mcp'][-1]['rps']:.0f} rps, search {runs['search'][-1]['rps']:.1f} rps"
                f"; one client: baseline {runs['baseline_serial'][-1]['p50_ms']:.2f} ms, "
                f"mcp {runs['mcp_serial'][-1]['p50_ms']:.2f} ms")

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    ratios = [b["rps"] / m["rps"] for b, m in zip(runs["baseline"], runs["mcp"], strict=True)]
    cpu_ratios = [(m["server_cpu_ms"] + m["crm_cpu_ms"]) / (b["server_cpu_ms"] + b["crm_cpu_ms"])
                  for b, m in zip(runs["baseline"], runs["mcp"], strict=True)]
    added = [m["p50_ms"] - b["p50_ms"]
             for b, m in zip(runs["baseline_serial"], runs["mcp_serial"], strict=True)]
    return {
        "mcp_serial_p50_ms": median("mcp_serial", "p50_ms"),
        "baseline_serial_p50_ms": median("baseline_serial", "p50_ms"),
        "latency_overhead_ms": statistics.median(added),
        "mcp_rps": median("mcp", "rps"),
        "mcp_p50_ms": median("mcp", "p50_ms"),
        "mcp_p99_ms": median("mcp", "p99_ms"),
        "baseline_rps": median("baseline", "rps"),
        "overhead_ratio": statistics.median(ratios),
        "search_rps": median("search", "rps"),
        "search_p50_ms": median("search", "p50_ms"),
        "mcp_cpu_ms": median("mcp", "server_cpu_ms"),
        "baseline_cpu_ms": median("baseline", "server_cpu_ms"),
        "crm_cpu_ms": median("baseline", "crm_cpu_ms"),
        "cpu_overhead_ratio": statistics.median(cpu_ratios),
    }

