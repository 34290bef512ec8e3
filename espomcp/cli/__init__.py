"""The ``espomcp`` command: one sub-command per module in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from espomcp import __version__
from espomcp.settings import ConfigError

# Each module defines ``register(subparsers)``; its parser sets ``func(args) -> int``.
COMMANDS = ["serve", "demo", "sync", "webhooks", "reconcile", "token", "fga", "init", "doctor"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="espomcp",
        description="espomcp: a multi-user MCP server for EspoCRM (OAuth scopes + fine-grained "
        "authorization). Settings come from ESPOMCP_* variables and .env; see docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"espomcp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"espomcp.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"espomcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
