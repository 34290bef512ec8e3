"""``python -m fakes.auth0 --port N``: run the fake Auth0 tenant in the foreground."""

from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from fakes.auth0.models import DEMO_USERS, Auth0Backend
from fakes.auth0.routes import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakes.auth0", description=__doc__)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--password", default="demo", help="password of every demo user")
    parser.add_argument("--audience", default=None,
                        help="default API audience when a request names none")
    parser.add_argument("--auto-login", default=None, choices=sorted(DEMO_USERS),
                        help="skip the login form and sign in as this user")
    args = parser.parse_args(argv)
    backend = Auth0Backend(issuer=f"http://127.0.0.1:{args.port}/", password=args.password,
                           default_audience=args.audience)
    backend.auto_login = args.auto_login
    print(f"fake Auth0 issuer {backend.issuer} (users: {', '.join(DEMO_USERS)})", flush=True)
    run_simple("127.0.0.1", args.port, create_app(backend), threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
