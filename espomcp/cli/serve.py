"""``espomcp serve``: run the server alone against the configured services."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the MCP server against configured services")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=0,
                        help="gunicorn workers (0 = the development server, one process)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from espomcp import create_app
    from espomcp.settings import load_settings

    settings = load_settings(needs_espocrm=True)
    if args.workers:
        import os
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "gunicorn", "-w", str(args.workers),
               "-b", f"{args.host}:{args.port}", "wsgi:app"]
        return subprocess.call(cmd, env=dict(os.environ))
    app = create_app(settings)
    print(f"espomcp serving MCP at {settings.mcp_url}", flush=True)
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, app, threaded=True)
    return 0
