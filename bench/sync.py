"""Backfill throughput: the demo dataset, and a generated CRM of 100k records.

Each backfill runs in this process against a benchmark CRM served in its own process, into a
fresh SQLite-backed embedded FGA store, exactly as ``espomcp sync`` does.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.load import backfill, settings_for
from bench.stack import Stack

BULK_RECORDS = 100_000


def _rate(stack: Stack, crm_url: str, work: Path) -> tuple[float, int, int]:
    data_dir = Path(tempfile.mkdtemp(dir=work))
    stack.data_dir = data_dir
    settings = settings_for(stack, crm_url, "http://127.0.0.1:9/", "http://127.0.0.1:9")
    summary = backfill(settings)
    return summary.tuples / summary.seconds, summary.tuples, summary.records


def run(work: Path, *, repeat: int = 3, bulk: bool = True, log: Any = print) -> dict[str, float]:
    out: dict[str, float] = {}
    work.mkdir(parents=True, exist_ok=True)
    with Stack(work) as stack:
        crm_url = stack.crm()
        rates = []
        for _ in range(repeat):
            rate, tuples, records = _rate(stack, crm_url, work)
            rates.append(rate)
        out["sync_tuples_per_s"] = statistics.median(rates)
        out["sync_demo_tuples"] = tuples
        log(f"  demo backfill: {records} records, {tuples} tuples, {out['sync_tuples_per_s']:.0f}/s")
    if bulk:
        with Stack(work) as stack:
            log(f"  generating a {BULK_RECORDS:,}-record CRM …")
            crm_url = stack.crm(bulk=BULK_RECORDS)
            rate, tuples, records = _rate(stack, crm_url, work)
            out["sync_100k_tuples_per_s"] = rate
            out["sync_100k_records"] = records
            out["sync_100k_tuples"] = tuples
            log(f"  100k backfill: {records} records, {tuples} tuples, {rate:.0f}/s")
    return out
