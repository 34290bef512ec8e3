"""A fake Auth0 tenant for tests and the demo (moto-shaped: models, routes, exceptions, keys).

In-process::

    with FakeAuth0() as auth0:            # a free loopback port
        auth0.url                         # issuer, "http://127.0.0.1:<port>/"
        auth0.backend.mint("alice")       # an Auth0-shaped RS256 access token

On a port: ``python -m fakes.auth0 --port 8100``.
"""

from __future__ import annotations

from fakes.auth0.models import DEMO_USERS, Auth0Backend
from fakes.auth0.routes import create_app
from fakes.server import ServerThread

__all__ = ["DEMO_USERS", "Auth0Backend", "FakeAuth0", "create_app"]


class FakeAuth0:
    """The fake tenant served from a background thread; the issuer follows the real port."""

    def __init__(self, port: int = 0, password: str = "demo",
                 default_audience: str | None = None) -> None:
        self.backend = Auth0Backend(password=password, default_audience=default_audience)
        self.app = create_app(self.backend)
        self._server = ServerThread(self.app, port=port)
        self.backend.issuer = f"http://127.0.0.1:{self._server.port}/"

    @property
    def url(self) -> str:
        """The issuer URL, with Auth0's trailing slash."""
        return self.backend.issuer

    issuer = url

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> FakeAuth0:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        self.backend.reset()

    def __enter__(self) -> FakeAuth0:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
