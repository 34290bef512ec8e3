"""``espomcp reconcile [--fix] [--every SECONDS] [--json]``: find (and fix) FGA drift."""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reconcile", help="compare EspoCRM with the FGA store; report or "
                            "fix missing and stale tuples")
    parser.add_argument("--fix", action="store_true", help="write missing and delete stale tuples")
    parser.add_argument("--every", type=float, default=0, metavar="SECONDS",
                        help="repeat every SECONDS until interrupted (0 = once)")
    parser.add_argument("--json", action="store_true", help="print each report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from espomcp.espocrm.client import EspoClient
    from espomcp.espocrm.errors import EspoError
    from espomcp.fga.backend import build_backend
    from espomcp.fga.errors import FgaError, FgaUnavailable
    from espomcp.settings import load_settings
    from espomcp.sync.outbox import Outbox, TupleWriter
    from espomcp.sync.reconcile import reconcile
    from espomcp.sync.status import SyncStatus

    if args.every < 0:
        print("espomcp reconcile: --every must be >= 0", file=sys.stderr)
        return 2
    settings = load_settings(needs_espocrm=True)
    backend = build_backend(settings)
    if not getattr(backend, "enforcing", True):
        print("espomcp reconcile: the FGA backend is off (ESPOMCP_FGA_BACKEND=off); nothing to "
              "reconcile", file=sys.stderr)
        return 2
    healthy, detail = backend.health()
    if not healthy:
        print(f"espomcp reconcile: FGA backend not available: {detail}", file=sys.stderr)
        return 1
    client = EspoClient.from_settings(settings)
    writer = TupleWriter(Outbox.from_settings(settings))
    status = SyncStatus(settings.data_dir)
    while True:
        try:
            report = reconcile(client, backend, writer, settings.entity_types, fix=args.fix)
        except EspoError as exc:
            print(f"espomcp reconcile: EspoCRM: {exc.message}", file=sys.stderr)
            code = 1
        except (FgaUnavailable, FgaError) as exc:
            print(f"espomcp reconcile: FGA: {exc}", file=sys.stderr)
            code = 1
        else:
            result = report.to_dict()
            status.record_run("reconcile", result)
            _print(result, args.json)
            code = 0 if report.in_sync or report.fixed else 1
        if not args.every:
            return code
        time.sleep(args.every)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2), flush=True)
        return
    state = "in sync" if result["in_sync"] else ("fixed" if result["fixed"] else "DRIFT")
    print(f"reconcile: {state}: {result['records']} records, {result['expected']} tuples implied, "
          f"{result['held']} held; {result['missing']} missing, {result['stale']} stale "
          f"({result['seconds']:.1f} s)", flush=True)
    for kind, counts in result["per_type"].items():
        print(f"  {kind:<12} missing {counts['missing']:>6}  stale {counts['stale']:>6}")
    if result["fixed"] is False and not result["in_sync"] and result["message"]:
        print(f"  {result['message']}")
