"""``espomcp token USER``: a demo access token for curl and the MCP Inspector.

The token is signed with the fake Auth0 tenant's checked-in demo key for the configured issuer
and audience, so it is accepted only by a server that trusts the demo issuer (the fake Auth0 of
``python -m fakes.auth0`` / ``espomcp demo``); a real Auth0 tenant's server rejects it.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("token", help="print a demo access token for USER (fake Auth0 key)",
                            description=__doc__)
    parser.add_argument("user", metavar="USER", help="demo user: alice, bob, carol or admin")
    parser.add_argument("--scope", action="append", default=None,
                        help="scope to grant (repeatable or space-separated; default: all of "
                        "the user's scopes); scopes the user may not have are dropped")
    parser.add_argument("--ttl", type=int, default=3600,
                        help="lifetime in seconds (negative = already expired; the server "
                        "allows ESPOMCP_AUTH_LEEWAY_SECONDS of skew, 30 by default, so a "
                        "refused token needs e.g. --ttl -60)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from espomcp.settings import load_settings
    from fakes.auth0.models import Auth0Backend

    settings = load_settings()
    backend = Auth0Backend(issuer=settings.auth_issuer, default_audience=settings.audience)
    user = backend.users.get(args.user.strip().lower())
    if user is None:
        print(f"espomcp token: unknown demo user {args.user!r}; choose one of "
              f"{', '.join(sorted(backend.users))}", file=sys.stderr)
        return 2
    scopes = None
    if args.scope:
        wanted = [s for chunk in args.scope for s in chunk.split()]
        scopes = [s for s in dict.fromkeys(wanted) if s in user.scopes]
        dropped = [s for s in wanted if s not in user.scopes]
        if dropped:
            print(f"espomcp token: {user.username} may not have {' '.join(dropped)}; left out",
                  file=sys.stderr)
    if not settings.auth_issuer.startswith(("http://127.0.0.1", "http://localhost")):
        print(f"espomcp token: warning: {settings.auth_issuer} is not the local demo issuer; "
              "this server will reject the token", file=sys.stderr)
    print(backend.mint(user.username, scopes, ttl=args.ttl, azp="espomcp-cli"))
    return 0
