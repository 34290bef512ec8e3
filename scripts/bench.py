"""``make bench``: run every benchmark on loopback, print a table, write bench/results.json.

Sections (each median over repeated runs; see bench/README.md for what every key means):
HTTP under gunicorn (MCP get_record vs the bare baseline, search pages), search filtering
(pushdown vs over-fetch), the embedded FGA engine, and the backfill. ``--quick`` shortens the
runs (fewer rounds, no 100k-record backfill) for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import fga, load, search, sync  # noqa: E402
from bench.stack import Stack  # noqa: E402

TARGETS = {  # key: (comparison, target)
    "overhead_ratio": ("<=", 1.3),
    "fga_check_p50_us": ("<=", 50.0),
    "fga_list_objects_ms": ("<=", 20.0),
}
ROWS = [
    ("mcp_rps", "MCP tools/call get_record, requests/s", "{:.0f}"),
    ("mcp_p50_ms", "  latency p50 (ms)", "{:.1f}"),
    ("mcp_p99_ms", "  latency p99 (ms)", "{:.1f}"),
    ("baseline_rps", "Bare gunicorn route, same EspoCRM call, requests/s", "{:.0f}"),
    ("overhead_ratio", "baseline_rps / mcp_rps", "{:.2f}"),
    ("mcp_serial_p50_ms", "MCP get_record p50, one client at a time (ms)", "{:.2f}"),
    ("baseline_serial_p50_ms", "Baseline p50, one client at a time (ms)", "{:.2f}"),
    ("latency_overhead_ms", "Latency espomcp adds per call (ms)", "{:.2f}"),
    ("search_rps", "search_records 200-record filtered page, requests/s", "{:.1f}"),
    ("search_p50_ms", "  latency p50 (ms)", "{:.0f}"),
    ("search_filter_ms", "Time FGA filtering adds to a 200-record page (ms)", "{:.1f}"),
    ("search_pushdown_ms", "  pushdown page, ~500 readable (ms)", "{:.1f}"),
    ("search_overfetch_ms", "  over-fetch page, ~500 readable (ms)", "{:.1f}"),
    ("pushdown_limit", "PUSHDOWN_LIMIT in force", "{:.0f}"),
    ("mcp_cpu_ms", "CPU per MCP get_record, espomcp workers (ms)", "{:.2f}"),
    ("baseline_cpu_ms", "CPU per baseline call, baseline workers (ms)", "{:.2f}"),
    ("crm_cpu_ms", "CPU per call, fake EspoCRM (ms)", "{:.2f}"),
    ("cpu_overhead_ratio", "(mcp + crm CPU) / (baseline + crm CPU)", "{:.2f}"),
    ("fga_check_p50_us", "FGA check p50 at 100k tuples (µs)", "{:.1f}"),
    ("fga_check_p99_us", "  p99 (µs)", "{:.1f}"),
    ("fga_list_objects_ms", "FGA list_objects, 10k readable objects (ms)", "{:.2f}"),
    ("fga_check_vs_cli_speedup", "Check speed-up vs `fga model test` (2k tuples)", "{:.0f}x"),
    ("sync_tuples_per_s", "Backfill, demo dataset (tuples/s)", "{:.0f}"),
    ("sync_100k_tuples_per_s", "Backfill, 100k-record CRM (tuples/s)", "{:.0f}"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, skip the 100k backfill")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="espomcp-bench-") as tmp:
        work = Path(tmp)
        print("HTTP under gunicorn (2 workers x 4 threads) …", flush=True)
        results.update(load.run(work / "http", rounds=2 if args.quick else 9,
                                duration=2.0 if args.quick else 2.5))
        print("Search filtering, in-process …", flush=True)
        results.update(_search(work / "search", repeat=3 if args.quick else 7))
        print("Embedded FGA engine …", flush=True)
        results.update(fga.run(work / "fga"))
        print("Backfill …", flush=True)
        results.update(sync.run(work / "sync", repeat=1 if args.quick else 3, bulk=not args.quick))
    results = {k: round(float(v), 3) for k, v in sorted(results.items())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _table(results)
    print(f"\nwrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


def _search(work: Path, repeat: int) -> dict[str, float]:
    from espomcp.authz import PUSHDOWN_LIMIT

    work.mkdir(parents=True, exist_ok=True)
    with Stack(work) as stack:
        crm_url = stack.crm(leads=load.LEADS)
        settings = load.settings_for(stack, crm_url, "http://127.0.0.1:9/", "http://127.0.0.1:9")
        load.backfill(settings)
        sweep = search.run(settings, repeat=repeat)
    rows = {r["user"]: r for r in sweep["rows"]}
    chosen = rows["alice"]  # the search_rps user: ~240 readable, within PUSHDOWN_LIMIT
    strategy = "pushdown_ms" if chosen["readable"] <= PUSHDOWN_LIMIT else "overfetch_ms"
    mid = rows["erin"]
    out = {"search_filter_ms": chosen[strategy] - chosen["plain_ms"],
           "search_pushdown_ms": mid["pushdown_ms"], "search_overfetch_ms": mid["overfetch_ms"],
           "search_readable_ids": chosen["readable"], "pushdown_limit": PUSHDOWN_LIMIT}
    for row in sweep["rows"]:
        out[f"search_sweep_{row['user']}_readable"] = row["readable"]
        out[f"search_sweep_{row['user']}_pushdown_ms"] = row["pushdown_ms"]
        out[f"search_sweep_{row['user']}_overfetch_ms"] = row["overfetch_ms"]
        out[f"search_sweep_{row['user']}_complete"] = row["complete"]
    return out


def _table(results: dict[str, float]) -> None:
    print(f"\n{'Figure':58s} {'Value':>10s}  Target")
    print("-" * 80)
    for key, label, fmt in ROWS:
        if key not in results:
            continue
        target = ""
        if key in TARGETS:
            op, goal = TARGETS[key]
            ok = results[key] <= goal if op == "<=" else results[key] >= goal
            target = f"{op} {goal:g}  {'ok' if ok else 'MISSED'}"
        print(f"{label:58s} {fmt.format(results[key]):>10s}  {target}")


if __name__ == "__main__":
    raise SystemExit(main())
