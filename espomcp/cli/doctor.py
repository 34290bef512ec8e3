"""``espomcp doctor [--offline] [--json]``: check a configuration end to end, with fixes.

Checks the issuer's discovery document and JWKS, the Auth0 tenant (only when the Management
API credentials of ``init auth0`` are in AUTH0_CLIENT_ID/AUTH0_CLIENT_SECRET), the running
server's protected resource metadata (skipped with ``--offline``), the FGA model and backend,
the EspoCRM service account, the webhooks and the outbox. Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("doctor", help="check the configuration end to end (exit 0 = all pass)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", action="store_true",
                        help="skip the running server's protected resource metadata")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from espomcp.provision.doctor import run_checks
    from espomcp.provision.report import render_findings
    from espomcp.settings import load_settings

    findings = run_checks(load_settings(), offline=args.offline)
    ok = all(f.ok for f in findings)
    if args.json:
        print(json.dumps({"ok": ok, "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        print(render_findings(findings))
    return 0 if ok else 1
