"""Profile the ``tools/call get_record`` hot path in-process: ``python -m bench.profile [N]``.

The app runs in this process behind Flask's test client (no HTTP server in the way) with the
real token validator, the embedded FGA store and the EspoCRM client; the fakes run in their
own processes, so the profile and the CPU time per call are the app's alone. Prints the CPU
milliseconds per call and the functions with the most own time (cProfile).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from bench.load import MCP_HEADERS, backfill, rpc, settings_for
from bench.stack import Stack
from espomcp import create_app
from espomcp.espocrm.client import EspoClient
from fakes.auth0.models import Auth0Backend
from fakes.espocrm.seed import user_id


def main(argv: list[str]) -> int:
    calls = int(argv[1]) if len(argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp)) as stack:
        crm_url, issuer = stack.crm(), stack.auth0()
        settings = settings_for(stack, crm_url, issuer, "http://127.0.0.1:8000")
        backfill(settings)
        app = create_app(settings)
        crm = EspoClient.from_settings(settings)
        contact = crm.list_records("Contact", where=[{"type": "equals", "attribute":
                                                      "assignedUserId", "value": user_id("alice")}],
                                   select=["id"], max_size=1).list[0]["id"]
        token = Auth0Backend(issuer=issuer).mint("alice", aud=settings.mcp_url)
        client = app.test_client()
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        body = rpc("get_record", {"entity_type": "Contact", "id": contact})

        def once() -> None:
            response = client.post("/mcp", json=body, headers=headers)
            assert response.status_code == 200 and not response.get_json()["result"]["isError"]

        for _ in range(50):
            once()
        started = time.process_time()
        for _ in range(calls):
            once()
        cpu = (time.process_time() - started) / calls * 1000
        crm_alone = time.process_time()
        for _ in range(calls):
            crm.get_record("Contact", contact)
        crm_cpu = (time.process_time() - crm_alone) / calls * 1000
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            once()
        profiler.disable()
        app.extensions["espomcp"].extras["outbox"].stop_drainer()
    print(f"CPU per tools/call get_record: {cpu:.3f} ms (test client, whole app); "
          f"the EspoClient.get_record alone: {crm_cpu:.3f} ms")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(r"espomcp|flask/app|prometheus|logging", 40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
