"""``espomcp sync``: backfill the FGA store from EspoCRM (idempotent, resumable)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sync", help="write every tuple EspoCRM implies to the FGA store "
                            "(resumes an interrupted run)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the checkpoint of an interrupted run and start over")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from espomcp.espocrm.client import EspoClient
    from espomcp.espocrm.errors import EspoError
    from espomcp.fga.backend import build_backend
    from espomcp.settings import load_settings
    from espomcp.sync.backfill import RESUME_OVERLAP, Backfill, Checkpoint, count_records
    from espomcp.sync.outbox import Outbox, TupleWriter
    from espomcp.sync.status import SyncStatus

    settings = load_settings(needs_espocrm=True)
    backend = build_backend(settings)
    if not getattr(backend, "enforcing", True):
        print("espomcp sync: the FGA backend is off (ESPOMCP_FGA_BACKEND=off); nothing to sync",
              file=sys.stderr)
        return 2
    healthy, detail = backend.health()
    if not healthy:
        print(f"espomcp sync: FGA backend not available: {detail}", file=sys.stderr)
        return 1
    client = EspoClient.from_settings(settings)
    outbox = Outbox.from_settings(settings)
    total, initial = None, 0
    if not args.no_progress:
        state = None if args.fresh else Checkpoint(settings.data_dir).load()
        todo = [t for t in settings.entity_types if not state or t not in state["done"]]
        if state and state.get("current") in todo:
            initial = max(0, int(state.get("offset") or 0) - RESUME_OVERLAP)
        try:
            total = count_records(client, todo)
        except EspoError as exc:
            print(f"espomcp sync: EspoCRM: {exc.message}", file=sys.stderr)
            return 1
    with tqdm(total=total, initial=initial, unit="rec", desc="sync", disable=args.no_progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        backfill = Backfill(client, backend, TupleWriter(outbox), settings.data_dir,
                            entity_types=settings.entity_types, progress=bar)
        summary = backfill.run(fresh=args.fresh)
    if outbox.depth():
        outbox.drain(backend)
    result = summary.to_dict()
    result["outbox_depth"] = outbox.depth()
    SyncStatus(settings.data_dir).record_run("backfill", result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{summary.message}: {summary.records} records, {summary.tuples} tuples written in "
              f"{summary.seconds:.1f} s ({summary.tuples_per_second} tuples/s); "
              f"{summary.queued} queued, {summary.rejected} rejected, {summary.skipped} skipped")
        for entity_type, counts in summary.per_type.items():
            print(f"  {entity_type:<12} {counts['records']:>7} records {counts['tuples']:>8} tuples")
    return 0 if summary.complete and not summary.rejected else 1
