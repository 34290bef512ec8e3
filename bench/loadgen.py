"""A small closed-loop HTTP/1.1 load generator, run in its own process.

``python -m bench.loadgen SPEC.json`` reads ``{"url", "method", "headers", "bodies",
"concurrency", "duration", "warmup"}`` and prints ``{"requests", "sent", "errors", "rps",
"p50_ms", "p99_ms", "statuses"}`` (``requests``: measured after the warm-up; ``sent``: all).
Each worker thread keeps one persistent socket and writes pre-built
request bytes, so the generator spends microseconds per request and the server is what is
measured. Responses must carry ``Content-Length`` (gunicorn and Flask set it); a
``Connection: close`` answer makes the worker reconnect.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit


def build_request(url: str, method: str, headers: dict[str, str], body: bytes) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One persistent connection that sends a request and reads the full answer."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def roundtrip(self, data: bytes) -> tuple[int, bytes]:
        """Send ``data``; return (status, body). Reconnects once on a stale connection."""
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = self._connect()
            try:
                self.sock.sendall(data)
                return self._read()
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read(self) -> tuple[int, bytes]:
        assert self.sock is not None
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before headers")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(fields.get("content-length", "0"))
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
        body, self.buffer = rest[:length], rest[length:]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive ``spec`` (see module docstring) and summarise latencies after the warm-up."""
    parts = urlsplit(spec["url"])
    bodies = [json.dumps(b).encode() if not isinstance(b, str) else b.encode()
              for b in spec.get("bodies") or [""]]
    requests = [build_request(spec["url"], spec.get("method", "POST"), spec.get("headers", {}), b)
                for b in bodies]
    concurrency = int(spec.get("concurrency", 8))
    warmup = float(spec.get("warmup", 1.0))
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + float(spec.get("duration", 5.0))
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    sent = [0] * concurrency
    statuses: list[Counter[int]] = [Counter() for _ in range(concurrency)]

    def worker(n: int) -> None:
        conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        i = n
        try:
            while True:
                began = time.perf_counter()
                if began >= stop_at:
                    return
                try:
                    status, _ = conn.roundtrip(requests[i % len(requests)])
                except OSError:
                    status = 599
                ended = time.perf_counter()
                i += 1
                sent[n] += 1
                if began >= measure_from:
                    latencies[n].append((ended - began) * 1000)
                    statuses[n][status] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = stop_at - measure_from
    merged = sorted(x for per in latencies for x in per)
    total: Counter[int] = Counter()
    for per in statuses:
        total.update(per)
    errors = sum(c for s, c in total.items() if s >= 400)
    return {
        "requests": len(merged),
        "sent": sum(sent),
        "errors": errors,
        "rps": len(merged) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": statistics.median(merged) if merged else 0.0,
        "p99_ms": merged[min(len(merged) - 1, int(len(merged) * 0.99))] if merged else 0.0,
        "statuses": {str(k): v for k, v in sorted(total.items())},
    }


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    print(json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
