"""The admin console at ``/admin``: sign-in through the OAuth issuer, relationships, explained
access checks, per-user visibility, the model, the audit log and sync health."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from espomcp.admin.directory import Directory
from espomcp.admin.oauth import AdminOAuthClient
from espomcp.admin.sessions import SessionStore
from espomcp.admin.web import AdminConsole, bp
from espomcp.auth.scopes import ADMIN_SCOPE

if TYPE_CHECKING:
    from flask import Flask

    from espomcp.services import Services


def init_app(app: Flask, svc: Services) -> AdminConsole:
    """Register the console on ``app`` and keep its state in ``svc.extras["admin"]``."""
    from espomcp.admin import model_view, pages, relationships, signin  # noqa: F401  (routes)

    settings = svc.settings
    secret = settings.session_secret.get_secret_value() or secrets.token_urlsafe(32)
    state = AdminConsole(
        svc=svc,
        sessions=SessionStore(settings.data_dir / "admin_sessions.sqlite3", secret),
        oauth=AdminOAuthClient(settings.auth_issuer, settings.admin_client_id,
                               settings.public_url + "/admin/callback", settings.audience,
                               ADMIN_SCOPE),
        directory=Directory(svc.crm, settings.entity_types),
        secure_cookie=settings.public_url.startswith("https://"),
    )
    svc.extras["admin"] = state
    app.register_blueprint(bp)
    return state
