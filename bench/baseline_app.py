"""The baseline for ``overhead_ratio``: a bare WSGI route making the same EspoCRM call.

``GET /record/<entity type>/<id>`` → ``EspoClient.get_record`` → JSON, with the same client
(pooled session, same settings) and no MCP, auth or FGA. Served by gunicorn exactly like
espomcp: ``gunicorn bench.baseline_app:app`` with ``ESPOMCP_*`` settings in the environment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from espomcp.espocrm.client import EspoClient
from espomcp.espocrm.errors import EspoError
from espomcp.settings import load_settings

client = EspoClient.from_settings(load_settings())


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    parts = environ.get("PATH_INFO", "").strip("/").split("/")
    if len(parts) != 3 or parts[0] != "record":
        status, body = "404 Not Found", {"error": "not found"}
    else:
        try:
            status, body = "200 OK", {"record": client.get_record(parts[1], parts[2])}
        except EspoError as exc:
            status, body = "502 Bad Gateway", {"error": exc.message}
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
