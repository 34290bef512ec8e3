"""``espomcp demo``: the whole chain on one machine with no external service.

Starts the fake Auth0 issuer and the fake EspoCRM (seeded, persisted in the data dir), seeds the
embedded FGA store from the CRM, registers the CRM webhooks, and serves the MCP server and the
admin console until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

DEMO_API_KEY = "demo-api-key"
DEMO_USERS = (
    ("alice", "sales rep, member of team Sales"),
    ("bob", "sales manager, manager of team Sales"),
    ("carol", "support rep, member of team Support"),
    ("admin", "administrator, every scope incl. espocrm:admin"),
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the local demo: fake Auth0 + fake EspoCRM + server")
    parser.add_argument("--host", default="127.0.0.1", help="interface for all three servers")
    parser.add_argument("--port", type=int, default=8000, help="MCP server port")
    parser.add_argument("--auth-port", type=int, default=8100, help="fake Auth0 port")
    parser.add_argument("--crm-port", type=int, default=8200, help="fake EspoCRM port")
    parser.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                        help="where the demo keeps its CRM data, FGA store and logs")
    parser.add_argument("--fresh", action="store_true", help="start from the seed data again")
    parser.set_defaults(func=run)


def demo_environment(args: argparse.Namespace, auth_url: str, crm_url: str) -> dict[str, str]:
    """The ESPOMCP_* settings the demo server, sync and token commands share."""
    return {
        "ESPOMCP_PUBLIC_URL": f"http://{args.host}:{args.port}",
        "ESPOMCP_AUTH_ISSUER": auth_url,
        "ESPOMCP_ESPOCRM_URL": crm_url,
        "ESPOMCP_ESPOCRM_AUTH": "apikey",
        "ESPOMCP_ESPOCRM_API_KEY": DEMO_API_KEY,
        "ESPOMCP_DATA_DIR": str(args.data_dir.resolve()),
        "ESPOMCP_FGA_BACKEND": "embedded",
    }


def run(args: argparse.Namespace) -> int:
    from espomcp.espocrm.errors import EspoError
    from fakes.auth0 import FakeAuth0
    from fakes.espocrm import FakeEspoCRM
    from fakes.server import ServerThread

    busy = busy_ports(args)
    if busy:
        print(f"espomcp demo: could not start: {', '.join(busy)} already in use (is another demo "
              "running? stop it, or pick free ports with --port/--auth-port/--crm-port)",
              file=sys.stderr)
        return 1
    data_dir: Path = args.data_dir.resolve()
    if args.fresh and data_dir.exists():
        import shutil

        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    mcp_url = f"http://{args.host}:{args.port}/mcp"
    stopping = threading.Event()
    started: list[Any] = []

    def stop(*_: object) -> None:
        stopping.set()

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        auth = FakeAuth0(port=args.auth_port, default_audience=mcp_url).start()
        started.append(auth)
        auth.backend.clients["espomcp-admin"].redirect_uris.append(  # admin console, any --port
            f"http://{args.host}:{args.port}/admin/callback")
        crm = FakeEspoCRM(data_dir / "espocrm.json", api_key=DEMO_API_KEY)
        crm.state.webhook_retry_period = 30.0
        crm.start(args.host, args.crm_port)
        started.append(crm)
        crm.sender.start(2.0)
        started.append(crm.sender)
        env = demo_environment(args, auth.url, crm.url)
        os.environ.update(env)

        from espomcp import create_app
        from espomcp.settings import load_settings

        settings = load_settings()
        _seed_permissions()
        _register_webhooks()
        app = create_app(settings)
        server = ServerThread(app, host=args.host, port=args.port).start()
        started.append(server)
        print_banner(args, settings.mcp_url, auth.url, crm.url, env)
        while not stopping.wait(0.5):
            pass
        print("\nespomcp demo: stopping…", flush=True)
    except OSError as exc:
        print(f"espomcp demo: could not start: {exc} (is another demo running? try other "
              "ports with --port/--auth-port/--crm-port)", file=sys.stderr)
        return 1
    except EspoError as exc:
        print(f"espomcp demo: could not start: fake EspoCRM: {exc.message} (start from the "
              "seed again with --fresh)", file=sys.stderr)
        return 1
    finally:
        for item in reversed(started):
            item.stop()
    return 0


def busy_ports(args: argparse.Namespace) -> list[str]:
    """The demo's ports that something already listens on, as ``"--flag N"``; checked before
    anything (e.g. ``--fresh``) touches the data of a demo that may be running."""
    busy = []
    for flag, port in (("--port", args.port), ("--auth-port", args.auth_port),
                       ("--crm-port", args.crm_port)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((args.host, port))
            except OSError:
                busy.append(f"{flag} {port}")
    return busy


def _seed_permissions() -> None:
    """Backfill the embedded FGA store from the fake CRM (idempotent; resumes)."""
    from espomcp.cli import sync

    sync.run(argparse.Namespace(fresh=False, json=False, no_progress=False))


def _register_webhooks() -> None:
    """Let changes made in the CRM reach the FGA store (idempotent)."""
    from espomcp.espocrm.client import EspoClient
    from espomcp.settings import load_settings
    from espomcp.sync import webhooks

    settings = load_settings()
    client = EspoClient.from_settings(settings)
    try:
        prune_other_webhooks(client, settings)
        rows = webhooks.register_webhooks(client, settings)
    finally:
        client.close()
    print(f"{len(rows)} EspoCRM webhooks point at {webhooks.receiver_url(settings)}", flush=True)


def prune_other_webhooks(client: Any, settings: Any) -> int:
    """Delete the demo CRM's webhooks aimed at another receiver (a run with another --port on
    the same data dir); EspoCRM allows 50 per API user, so they would block registration.
    Returns how many were deleted. Only for the demo's own fake CRM."""
    from espomcp.sync import webhooks

    url, secrets = webhooks.receiver_url(settings), webhooks.WebhookSecrets(settings.data_dir)
    stale = [h for h in client.list_webhooks() if h.get("url") != url]
    for hook in stale:
        client.delete_webhook(hook["id"])
        secrets.drop(hook["id"])
    return len(stale)


def print_banner(args: argparse.Namespace, mcp_url: str, auth_url: str, crm_url: str,
                 env: dict[str, str]) -> None:
    users = "\n".join(f"    {name:<6} {role}" for name, role in DEMO_USERS)
    exports = " \\\n".join(f"    {'export' if i == 0 else '      '} {key}={shlex.quote(value)}"
                            for i, (key, value) in enumerate(env.items()))
    print(f"""
espomcp demo is running.

  MCP server (connect your client here):  {mcp_url}
  Admin console:                           http://{args.host}:{args.port}/admin
  Fake Auth0 issuer:                       {auth_url}
  Fake EspoCRM:                            {crm_url}   (API key {DEMO_API_KEY})
  Data (CRM, FGA store, audit log):        {args.data_dir}

  Demo users (password: demo):
{users}

  Claude Code:    claude mcp add --transport http espocrm {mcp_url}   (then /mcp → Authenticate)
  Any stdio client: npx -y mcp-remote {mcp_url}   (browser login as a demo user)
  MCP Inspector, Cursor, CherryStudio, Claude.ai connectors: docs/clients.md

  espomcp commands (token, sync, reconcile, webhooks, fga, doctor) reach this demo with
  its settings; in another terminal, from this directory:
{exports}

  curl / scripts: TOKEN=$(.venv/bin/espomcp token alice); then
                  curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
                    -H "Accept: application/json" -d '{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}' \\
                    {mcp_url}

Press Ctrl-C to stop.
""", flush=True)
