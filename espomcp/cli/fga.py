"""``espomcp fga``: run store tests offline and inspect or change the configured FGA backend.

``espomcp fga test FILE…`` runs ``.fga.yaml`` store-test files through the embedded engine with the
semantics, report (stderr) and exit code of ``fga model test`` (0 all pass, 1 any failure or load
error). The operator commands (``check``, ``list-objects``, ``write``, ``delete``, ``read``,
``model``) work on the backend ``ESPOMCP_FGA_BACKEND`` selects. ``check`` exits 0 when allowed and
1 when denied; every command exits 2 on an invalid request or an unavailable backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fga", help="FGA store tests and authorization-tuple operations",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="fga_command", metavar="COMMAND")
    commands.required = True

    test = commands.add_parser("test", help="run .fga.yaml store-test files with the embedded engine")
    test.add_argument("files", nargs="+", metavar="FILE")
    test.add_argument("--allow-external-files", action="store_true",
                      help="let model_file/tuple_file(s) point outside the test file's directory")
    test.set_defaults(func=run_test)

    check = commands.add_parser("check", help="is USER related to OBJECT by RELATION? (exit 0 yes, 1 no)")
    _triple(check)
    check.add_argument("--context", type=_json_object, default=None, metavar="JSON",
                       help="condition parameters, e.g. '{\"now\": \"2026-01-01T00:00:00Z\"}'")
    check.set_defaults(func=run_check)

    objects = commands.add_parser("list-objects", help="objects of TYPE on which USER has RELATION")
    objects.add_argument("user", metavar="USER")
    objects.add_argument("relation", metavar="RELATION")
    objects.add_argument("type", metavar="TYPE")
    objects.set_defaults(func=run_list_objects)

    for name, verb in (("write", "write"), ("delete", "delete")):
        command = commands.add_parser(name, help=f"{verb} the tuple (USER, RELATION, OBJECT)")
        _triple(command)
        command.set_defaults(func=run_write, delete=name == "delete")

    read = commands.add_parser("read", help="list stored tuples (all pages), optionally filtered")
    read.add_argument("--user")
    read.add_argument("--relation")
    read.add_argument("--object", help="type:id, or type: together with --user")
    read.add_argument("--json", action="store_true", help="one JSON tuple key per line")
    read.set_defaults(func=run_read)

    model = commands.add_parser("model", help="print the backend's authorization model")
    model.add_argument("--format", choices=("dsl", "json"), default="dsl")
    model.set_defaults(func=run_model)


def _triple(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", metavar="USER", help="type:id, type:* or type:id#relation")
    parser.add_argument("relation", metavar="RELATION")
    parser.add_argument("object", metavar="OBJECT", help="type:id")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def run_test(args: argparse.Namespace) -> int:
    import glob

    from espomcp.fga.store_test import run_files

    files: list[str] = []
    for name in args.files:  # a quoted glob is expanded here, as fga model test --tests does
        matches = sorted(glob.glob(name)) if glob.has_magic(name) else []
        files.extend(matches or [name])
    return run_files(files, out=sys.stderr, allow_external_files=args.allow_external_files)


def _backend_call(func: Any) -> tuple[Any, int]:
    """Build the configured backend, run ``func(backend)``; errors become exit code 2."""
    from espomcp.fga.backend import build_backend
    from espomcp.fga.errors import FgaError, FgaUnavailable
    from espomcp.settings import load_settings

    backend = build_backend(load_settings())
    try:
        return func(backend), 0
    except FgaUnavailable as exc:
        print(f"espomcp fga: the {backend.name} backend is unavailable: {exc}", file=sys.stderr)
    except FgaError as exc:
        print(f"espomcp fga: {exc.message} (OpenFGA error {exc.code})", file=sys.stderr)
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    return None, 2


def run_check(args: argparse.Namespace) -> int:
    allowed, code = _backend_call(lambda b: b.check(args.user, args.relation, args.object, args.context))
    if code:
        return code
    print("allowed" if allowed else "denied")
    return 0 if allowed else 1


def run_list_objects(args: argparse.Namespace) -> int:
    objects, code = _backend_call(lambda b: b.list_objects(args.user, args.relation, args.type))
    for obj in sorted(objects or []):
        print(obj)
    return code


def run_write(args: argparse.Namespace) -> int:
    key = (args.user, args.relation, args.object)
    if args.delete:
        _, code = _backend_call(lambda b: b.write(deletes=[key]))
    else:
        _, code = _backend_call(lambda b: b.write(writes=[key]))
    if not code:
        print(f"{'deleted' if args.delete else 'written'}: {args.user} {args.relation} {args.object}")
    return code


def run_read(args: argparse.Namespace) -> int:
    def read_all(backend: Any) -> list[Any]:
        keys, token = backend.read(args.user, args.relation, args.object)
        out = list(keys)
        while token:
            keys, token = backend.read(args.user, args.relation, args.object, continuation_token=token)
            out.extend(keys)
        return out

    keys, code = _backend_call(read_all)
    for key in keys or []:
        if args.json:
            print(json.dumps(key.to_dict(), sort_keys=True))
        else:
            condition = f" [with {key.condition.name}]" if key.condition else ""
            print(f"{key.user} {key.relation} {key.object}{condition}")
    return code


def run_model(args: argparse.Namespace) -> int:
    from espomcp.fga.dsl import format_dsl

    model, code = _backend_call(lambda b: b.model())
    if code:
        return code
    print(json.dumps(model, indent=2, sort_keys=True) if args.format == "json" else format_dsl(model), end="")
    if args.format == "json":
        print()
    return 0
