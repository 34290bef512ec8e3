"""``espomcp init auth0|fga|espocrm``: provision a real service for espomcp, idempotently.

Each sub-command prints a plan (create / update / unchanged per item) and the ESPOMCP_*
variables to set; running it again changes nothing. Exit codes: 0 done, 1 a step failed (the
message says what to fix), 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from espomcp.provision.report import PlanItem, ProvisionError, render_env, render_plan


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("init", help="provision Auth0, the FGA store or EspoCRM for espomcp",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    targets = parser.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True

    auth0 = targets.add_parser(
        "auth0", help="create/update the Auth0 API, tenant settings, connection and roles",
        description="Needs a Machine-to-Machine application authorized for the Auth0 Management "
        "API with the scopes read/create/update:resource_servers, read/update:tenant_settings, "
        "read/update:connections, read/create/update:roles.")
    auth0.add_argument("--domain", default=os.environ.get("AUTH0_DOMAIN", ""),
                       help="tenant domain, e.g. TENANT.eu.auth0.com (env AUTH0_DOMAIN; default: "
                       "the host of ESPOMCP_AUTH_ISSUER)")
    auth0.add_argument("--client-id", default=os.environ.get("AUTH0_CLIENT_ID", ""),
                       help="Management API client id (env AUTH0_CLIENT_ID)")
    auth0.add_argument("--client-secret", default=os.environ.get("AUTH0_CLIENT_SECRET", ""),
                       help="Management API client secret (prefer env AUTH0_CLIENT_SECRET)")
    auth0.add_argument("--roles", action="store_true",
                       help="also create roles bundling scopes: sales rep, manager, support, admin")
    auth0.add_argument("--connection", default="Username-Password-Authentication",
                       help="login connection to promote to domain level")
    auth0.add_argument("--set-default-audience", action="store_true",
                       help="make this API the tenant's default audience (affects every app)")
    auth0.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    auth0.add_argument("--json", action="store_true", help="print the plan as JSON")
    auth0.set_defaults(func=run_auth0)

    fga = targets.add_parser(
        "fga", help="create the FGA store, write the model, verify it with the store tests",
        description="Works on OpenFGA (ESPOMCP_FGA_API_TOKEN or no auth) and Auth0 FGA (client "
        "credentials: ESPOMCP_FGA_CLIENT_ID, _CLIENT_SECRET, _API_ISSUER, _API_AUDIENCE). With "
        "ESPOMCP_FGA_BACKEND=embedded and no --api-url it checks the embedded model instead.")
    fga.add_argument("--api-url", default=None, help="OpenFGA API URL (default ESPOMCP_FGA_API_URL)")
    fga.add_argument("--store-id", default=None,
                     help="use this store (default ESPOMCP_FGA_STORE_ID; else find or create "
                     "the store named --store-name)")
    fga.add_argument("--store-name", default="espomcp", help="name of the store to find or create")
    fga.add_argument("--model", type=Path, default=None,
                     help="model JSON (default ESPOMCP_FGA_MODEL_PATH or fga/model.json)")
    fga.add_argument("--tests", type=Path, default=None,
                     help="store-test file to verify with (default fga/store.fga.yaml)")
    fga.add_argument("--no-verify", action="store_true", help="skip the store-test verification")
    fga.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    fga.add_argument("--json", action="store_true", help="print the plan as JSON")
    fga.set_defaults(func=run_fga)

    espocrm = targets.add_parser(
        "espocrm", help="verify the API user, register webhooks, run the first backfill",
        description="Uses ESPOMCP_ESPOCRM_* (URL, auth mode, API key, HMAC secret).")
    espocrm.add_argument("--skip-backfill", action="store_true", help="do not run the backfill")
    espocrm.add_argument("--dry-run", action="store_true",
                         help="only verify the account; register nothing, write no tuples")
    espocrm.add_argument("--json", action="store_true", help="print the plan as JSON")
    espocrm.set_defaults(func=run_espocrm)


def _finish(title: str, items: list[PlanItem], env: dict[str, str], args: argparse.Namespace,
            extra: dict[str, Any] | None = None) -> int:
    if args.json:
        print(json.dumps({"plan": [i.to_dict() for i in items], "env": env, **(extra or {}),
                          "dry_run": bool(getattr(args, "dry_run", False))}, indent=2))
    else:
        print(render_plan(title, items, dry_run=getattr(args, "dry_run", False)))
        if env:
            print()
            print(render_env(env))
    return 0


def _fail(target: str, exc: ProvisionError) -> int:
    print(f"espomcp init {target}: {exc.message}", file=sys.stderr)
    return 1


def run_auth0(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from espomcp.provision.auth0 import (
        Auth0Options,
        Auth0Provisioner,
        ManagementClient,
        environment,
    )
    from espomcp.settings import load_settings

    settings = load_settings()
    domain = args.domain
    if not domain:
        parts = urlsplit(settings.auth_issuer)
        domain = f"{parts.scheme}://{parts.netloc}"
    try:
        client = ManagementClient(domain, args.client_id, args.client_secret)
        options = Auth0Options(roles=args.roles, connection=args.connection,
                               set_default_audience=args.set_default_audience)
        items = Auth0Provisioner(client, settings.mcp_url, options, dry_run=args.dry_run).apply()
    except ProvisionError as exc:
        return _fail("auth0", exc)
    return _finish(f"Auth0 tenant {client.base}", items,
                   environment(client, settings.public_url, settings.auth_audience), args)


def run_fga(args: argparse.Namespace) -> int:
    from espomcp.provision.fga import FgaInit, FgaInitOptions
    from espomcp.settings import load_settings

    settings = load_settings()
    options = FgaInitOptions(api_url=args.api_url, store_id=args.store_id,
                             store_name=args.store_name, model_path=args.model,
                             tests_path=args.tests, verify=not args.no_verify,
                             dry_run=args.dry_run)
    try:
        result = FgaInit(settings, options).run()
    except ProvisionError as exc:
        return _fail("fga", exc)
    code = _finish(result.title, result.items, result.env, args, {"verification": result.report})
    if result.report and not args.json:
        print()
        print(result.report)
    return code if result.verified is not False else 1


def run_espocrm(args: argparse.Namespace) -> int:
    from espomcp.provision.espocrm import EspoInit
    from espomcp.settings import load_settings

    settings = load_settings(needs_espocrm=True)
    try:
        result = EspoInit(settings, dry_run=args.dry_run, backfill=not args.skip_backfill).run()
    except ProvisionError as exc:
        return _fail("espocrm", exc)
    code = _finish(f"EspoCRM {settings.espocrm_url}", result.items, result.env, args)
    return code if result.ok else 1
