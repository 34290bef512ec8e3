"""``espomcp webhooks register|list|unregister``: the EspoCRM webhooks that keep FGA in sync."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("webhooks", help="manage the EspoCRM webhooks that feed permission sync")
    parser.add_argument("action", choices=["register", "list", "unregister"])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from espomcp.espocrm.client import EspoClient
    from espomcp.espocrm.errors import EspoError
    from espomcp.settings import load_settings
    from espomcp.sync import webhooks

    settings = load_settings(needs_espocrm=True)
    client = EspoClient.from_settings(settings)
    action = {"register": webhooks.register_webhooks, "list": webhooks.list_webhooks,
              "unregister": webhooks.unregister_webhooks}[args.action]
    try:
        rows = action(client, settings)
    except EspoError as exc:
        print(f"espomcp webhooks {args.action}: EspoCRM: {exc.message}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.json:
        print(json.dumps({"url": webhooks.receiver_url(settings), "webhooks": rows}, indent=2))
        return 0
    print(f"webhooks for {webhooks.receiver_url(settings)}:")
    for row in rows:
        state = row.get("status") or ("secret stored" if row.get("secret_stored") else
                                      "SECRET MISSING (run register)")
        print(f"  {row['event']:<40} {row['id']}  {state}")
    if not rows:
        print("  (none)")
    return 0
