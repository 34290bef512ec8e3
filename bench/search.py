"""Search filtering: pushdown (``id in`` the readable set) vs over-fetch, by readable-set size.

For users whose readable leads number from ~100 to ~2,000 (``bench.load.LEADS``), one
200-record page of ``search_records`` is timed in-process, against the benchmark CRM, with
each strategy forced, and compared with the same page unfiltered (what an organization admin
gets). "Filter cost" = strategy time - unfiltered time: the time FGA filtering adds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from espomcp import create_app
from espomcp.auth.principal import Principal
from espomcp.authz import Authorizer
from espomcp.mcp.registry import ToolContext
from espomcp.settings import Settings
from espomcp.tools import search as search_tool

SWEEP_USERS = ("dave", "alice", "frank", "erin", "carol")
PAGE = 200
KWARGS = {"where": None, "text_filter": None, "primary_filter": None, "select": None,
          "order_by": None, "order": None}
# The readable ids travel in the list request's URL (EspoCRM lists are GET requests); common
# web server limits on the request line (Apache 8,190 bytes, nginx 8 KB buffers) cap how many
# 17-character ids fit once JSON-quoted and URL-encoded (~23 bytes each).
URL_SAFE_IDS = 300


class _NoAuth:
    def authenticate(self, authorization: str | None) -> Any:
        raise RuntimeError("not used by the in-process search benchmark")


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def run(settings: Settings, *, repeat: int = 5, log: Any = print) -> dict[str, Any]:
    """The sweep (rows per user) and the crossover where over-fetch starts to win."""
    app = create_app(settings, authenticator=_NoAuth())
    svc = app.extensions["espomcp"]
    svc.extras["outbox"].stop_drainer()
    rows = []
    saved = search_tool.PUSHDOWN_LIMIT
    try:
        for name in SWEEP_USERS:
            principal = Principal(sub=f"bench|{name}", email=f"{name}@example.com")
            ctx = ToolContext(principal=principal, services=svc)
            authz = Authorizer(ctx)
            readable = authz.readable("Lead")

            def page(limit: int, authz: Authorizer = authz, ctx: ToolContext = ctx) -> Any:
                search_tool.PUSHDOWN_LIMIT = limit
                result = search_tool.search_page(ctx, authz, "Lead", dict(KWARGS), 0, PAGE)
                assert len(result["records"]) == min(PAGE, result["total"])
                return result

            plain = median_ms(lambda: svc.crm.list_records("Lead", max_size=PAGE), repeat)
            push = median_ms(lambda: page(10**9), repeat)
            over = median_ms(lambda: page(0), repeat)
            rows.append({"user": name, "readable": len(readable.ids), "plain_ms": plain,
                         "pushdown_ms": push, "overfetch_ms": over,
                         "complete": int(readable.complete)})
            capped = "" if readable.complete else " (ListObjects capped: both over-fetch)"
            log(f"  {name:6s} readable {len(readable.ids):5d}: unfiltered {plain:7.1f} ms, "
                f"pushdown {push:7.1f} ms, over-fetch {over:7.1f} ms{capped}")
    finally:
        search_tool.PUSHDOWN_LIMIT = saved
        svc.crm.close()
    measured = [r for r in rows if r["complete"]]
    wins = [r["readable"] for r in measured if r["pushdown_ms"] <= r["overfetch_ms"]]
    losses = [r["readable"] for r in measured if r["pushdown_ms"] > r["overfetch_ms"]]
    crossover = min(losses) if losses else max(wins) if wins else 0
    return {"rows": rows, "crossover": crossover}
