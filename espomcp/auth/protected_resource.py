"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the MCP endpoint.

Served unauthenticated at both the path-suffixed URL (``/.well-known/oauth-protected-resource/mcp``,
the one named in our challenges) and the root URL, with identical JSON.

``scopes_supported`` lists only the read scopes: the mcp reference (§2) asks for "the minimal
set for basic use; extra scopes come by step-up", and the 2.3.0 client requests exactly this
list when a challenge names no scope, so listing writes, deletes or admin would make every
first login ask for everything. Write and delete scopes are requested through 403
``insufficient_scope`` challenges when a tool needs them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, json

from espomcp.auth.scopes import BASIC_SCOPES
from espomcp.settings import Settings

bp = Blueprint("protected_resource", __name__)

PATH = "/.well-known/oauth-protected-resource"


def metadata(settings: Settings) -> dict[str, Any]:
    """The metadata document; ``authorization_servers[0]`` is the issuer byte for byte."""
    return {
        "resource": settings.mcp_url,
        "authorization_servers": [settings.auth_issuer],
        "scopes_supported": list(BASIC_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "EspoCRM MCP",
    }


@bp.route(PATH, methods=["GET", "OPTIONS"])
@bp.route(PATH + "/mcp", methods=["GET", "OPTIONS"])
def protected_resource_metadata() -> Response:
    settings: Settings = current_app.extensions["espomcp"].settings
    response = Response(json.dumps(metadata(settings)), mimetype="application/json")
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "MCP-Protocol-Version"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
