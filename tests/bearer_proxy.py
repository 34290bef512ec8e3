"""A test-only reverse proxy that adds ``Authorization: Bearer <token>`` to every request.

Tools that cannot send a bearer token (the MCP conformance suite) reach the real, fully
authenticated espomcp server through it; the product itself has no way to switch
authentication off. Everything else passes through unchanged, including the ``Host`` and
``Origin`` headers (so DNS-rebinding checks still see what the client sent) and the
upstream status, headers and body.

Run alone (e.g. against ``make demo``)::

    BEARER_PROXY_TOKEN="$(espomcp token alice)" python -m tests.bearer_proxy --target http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import http.client
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from fakes.server import ServerThread

# RFC 9110 §7.6.1 hop-by-hop headers: never forwarded in either direction.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})

StartResponse = Callable[..., Any]


class BearerProxy:
    """WSGI app forwarding each request to ``target`` with the bearer token set."""

    def __init__(self, target: str, token: str, timeout: float = 30.0) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"target must be an http://host:port URL, not {target!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.token = token
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING") and "?" not in path:
            path += "?" + environ["QUERY_STRING"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = self._request_headers(environ)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest(environ["REQUEST_METHOD"], path, skip_host=True,
                            skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            upstream = conn.getresponse()
            payload = upstream.read()
            status = f"{upstream.status} {upstream.reason}"
            out = [(k, v) for k, v in upstream.getheaders()
                   if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
        finally:
            conn.close()
        out.append(("Content-Length", str(len(payload))))
        start_response(status, out)
        return [payload]

    def _request_headers(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
            elif key == "CONTENT_TYPE" and value:
                name = "Content-Type"
            else:
                continue
            if name.lower() in HOP_BY_HOP or name.lower() in ("authorization", "content-length"):
                continue
            headers.append((name, value))
        headers.append(("Authorization", f"Bearer {self.token}"))
        return headers


def start_proxy(target: str, token: str) -> ServerThread:
    """Serve a ``BearerProxy`` on a free loopback port (call ``.stop()`` when done)."""
    return ServerThread(BearerProxy(target, token)).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", required=True, help="espomcp base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--port", type=int, default=8010)
    args = parser.parse_args(argv)
    token = os.environ.get("BEARER_PROXY_TOKEN", "")
    if not token:
        parser.error("set BEARER_PROXY_TOKEN to the access token (kept out of the process list)")
    server = ServerThread(BearerProxy(args.target, token), port=args.port).start()
    print(f"bearer proxy: {server.url}/mcp -> {args.target}/mcp", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
